//! A flush shard's outbox rule: a counter's push stores each of its records once (by
//! id), and is answered with those of them the receiver has acknowledged; an
//! acknowledged record the counter no longer lists is one it has been told of already,
//! so it is forgotten. The decision is [`accept`]; where the outbox lives is an
//! [`OutboxStore`]: SQLite in the FlushShard Durable Object, memory in tests and models.

use super::{owner_key, UsageRecord};
use std::collections::BTreeMap;

/// Where an outbox record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    Waiting,
    Acknowledged,
    KeptAside,
}

/// Where a shard keeps its outbox.
pub trait OutboxStore {
    type Error;
    /// Stores the records not stored before, under their owner.
    fn insert_new(&mut self, owner: &str, records: &[&UsageRecord]) -> Result<(), Self::Error>;
    /// The ids of an owner's acknowledged records.
    fn acknowledged(&self, owner: &str) -> Result<Vec<String>, Self::Error>;
    fn forget(&mut self, id: &str) -> Result<(), Self::Error>;
}

/// A counter's push of `records` (of `customer`, in one mode): stores them and answers
/// the ids among them the receiver has acknowledged. Records of anyone else are
/// ignored.
pub fn accept<S: OutboxStore>(
    store: &mut S,
    customer: &str,
    livemode: bool,
    records: &[UsageRecord],
) -> Result<Vec<String>, S::Error> {
    let owner = owner_key(customer, livemode);
    let own: Vec<&UsageRecord> = records
        .iter()
        .filter(|r| r.customer == customer && r.livemode == livemode)
        .collect();
    store.insert_new(&owner, &own)?;
    let mut acknowledged = Vec::new();
    for id in store.acknowledged(&owner)? {
        if own.iter().any(|r| r.id == id) {
            acknowledged.push(id);
        } else {
            store.forget(&id)?;
        }
    }
    Ok(acknowledged)
}

/// When a record counts as recorded in the outbox (its age in the shard's stats): as it
/// says, but never later than its arrival.
pub fn recorded_at(r: &UsageRecord, now_ms: i64) -> i64 {
    r.recorded_at_ms.min(now_ms)
}

/// An outbox in memory: record id → (owner, record, place).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemoryOutbox {
    pub rows: BTreeMap<String, (String, UsageRecord, Place)>,
}

impl MemoryOutbox {
    /// The waiting records, in id order.
    pub fn waiting(&self) -> Vec<UsageRecord> {
        let waiting = self.rows.values().filter(|r| r.2 == Place::Waiting);
        waiting.map(|r| r.1.clone()).collect()
    }

    pub fn mark(&mut self, ids: &[String], place: Place) {
        for id in ids {
            if let Some(row) = self.rows.get_mut(id) {
                row.2 = place;
            }
        }
    }
}

impl OutboxStore for MemoryOutbox {
    type Error = std::convert::Infallible;

    fn insert_new(&mut self, owner: &str, records: &[&UsageRecord]) -> Result<(), Self::Error> {
        for r in records {
            let row = (owner.to_string(), (*r).clone(), Place::Waiting);
            self.rows.entry(r.id.clone()).or_insert(row);
        }
        Ok(())
    }

    fn acknowledged(&self, owner: &str) -> Result<Vec<String>, Self::Error> {
        let mine = self
            .rows
            .iter()
            .filter(|(_, r)| r.0 == owner && r.2 == Place::Acknowledged);
        Ok(mine.map(|(id, _)| id.clone()).collect())
    }

    fn forget(&mut self, id: &str) -> Result<(), Self::Error> {
        self.rows.remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(customer: &str, seq: u64) -> UsageRecord {
        let mut r = UsageRecord {
            customer: customer.into(),
            seq_from: seq,
            seq_to: seq,
            requests: 1,
            ..UsageRecord::default()
        };
        r.id = r.content_id();
        r
    }

    #[test]
    fn a_push_is_stored_once_and_told_what_was_acknowledged_then_forgets_it() {
        let mut outbox = MemoryOutbox::default();
        let (a, b) = (record("c", 1), record("c", 2));
        let pushed = [a.clone(), b.clone(), record("intruder", 3)];
        assert!(accept(&mut outbox, "c", true, &pushed).unwrap().is_empty());
        assert_eq!(outbox.rows.len(), 2, "another customer's record is ignored");
        outbox.mark(std::slice::from_ref(&a.id), Place::Acknowledged);
        // pushed again: a is acknowledged, b still waits
        let acked = accept(&mut outbox, "c", true, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(acked, vec![a.id.clone()]);
        // the counter no longer lists a: it was told, so a is forgotten
        assert!(accept(&mut outbox, "c", true, std::slice::from_ref(&b))
            .unwrap()
            .is_empty());
        assert!(!outbox.rows.contains_key(&a.id));
        assert_eq!(outbox.waiting(), vec![b]);
    }

    #[test]
    fn a_record_from_the_future_counts_as_recorded_on_arrival() {
        let mut r = record("c", 1);
        r.recorded_at_ms = 500;
        assert_eq!(recorded_at(&r, 1_000), 500);
        r.recorded_at_ms = 5_000;
        assert_eq!(recorded_at(&r, 1_000), 1_000);
    }
}
