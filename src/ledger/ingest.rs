//! Taking a batch of records into a customer's ledger: each record once (by id), added
//! to its period's running total per meter and model, with the plan and the mode it
//! carries and when its period's final records first came; a record for a final
//! period is taken as late usage inside the backdating window and refused after it.
//! The decision is [`ingest`]; where it is kept is a [`LedgerStore`]: SQLite in the
//! Ledger Durable Object, memory in tests ([`MemoryStore`]).

use super::{tally_of, Refused};
use crate::finality::{Finality, Late};
use crate::flush::UsageRecord;
use crate::tally::Tally;
use std::collections::{BTreeMap, BTreeSet};

/// A running total's key: period start, meter, model.
pub type TotalKey = (i64, String, String);

/// What the ledger keeps of one period besides its totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PeriodBook {
    /// Its invoice is final (set by finalization, never here).
    pub invoiced: bool,
    /// When its final records first came.
    pub final_arrived_ms: Option<i64>,
    /// The plan of its latest record by sequence, and that sequence number.
    pub plan: Option<(String, u64)>,
    /// Records taken after its invoice was final.
    pub late_records: u64,
}

/// Where a ledger keeps its records, totals and periods. `insert_new` takes many
/// records at once where a store can; [`ingest`] gives it one at a time, so a failure
/// part-way never leaves ids marked seen whose usage is not in the totals.
pub trait LedgerStore {
    type Error;
    /// Stores the ids not stored before; says for each whether it was new.
    fn insert_new(&mut self, records: &[&UsageRecord]) -> Result<Vec<bool>, Self::Error>;
    fn seen(&self, id: &str) -> Result<bool, Self::Error>;
    fn period(&self, start: i64) -> Result<PeriodBook, Self::Error>;
    fn put_period(&mut self, start: i64, book: &PeriodBook) -> Result<(), Self::Error>;
    fn total(&self, key: &TotalKey) -> Result<Tally, Self::Error>;
    fn put_total(&mut self, key: &TotalKey, total: &Total) -> Result<(), Self::Error>;
    /// Keeps a refused record once, with why.
    fn keep_refused(&mut self, r: &UsageRecord, reason: &str) -> Result<(), Self::Error>;
    /// The ledger holds test-mode usage.
    fn mark_test_mode(&mut self) -> Result<(), Self::Error>;
}

/// A running total as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Total {
    pub period_end: i64,
    pub tally: Tally,
    /// The period's final record is in it (once set, stays set).
    pub is_final: bool,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    pub stored: u64,
    pub duplicates: u64,
    pub refused: Vec<Refused>,
    /// The periods new records came for, in the order they came.
    pub periods: Vec<i64>,
}

/// Takes `records` into `store` at `now_ms`.
pub fn ingest<S: LedgerStore>(
    store: &mut S,
    records: &[UsageRecord],
    finality: &Finality,
    now_ms: i64,
) -> Result<Ingested, S::Error> {
    let mut out = Ingested::default();
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    // Each period's book is read once a batch and written through as it changes.
    let mut books: BTreeMap<i64, PeriodBook> = BTreeMap::new();
    // Each record is marked seen and added to its totals before the next one: storage
    // is not transactional here, so a failure part-way must not leave a whole batch
    // marked seen with its totals unwritten (its retry would find only duplicates).
    for r in records {
        if !ids.insert(&r.id) {
            out.duplicates += 1; // twice in one batch
            continue;
        }
        let book = match books.entry(r.period_start_ms) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(store.period(r.period_start_ms)?)
            }
        };
        let before = book.clone();
        if book.invoiced && !store.seen(&r.id)? {
            match finality.late(r.period_end_ms, now_ms) {
                Late::Refuse(reason) => {
                    store.keep_refused(r, &reason)?;
                    let id = r.id.clone();
                    out.refused.push(Refused { id, reason });
                    continue;
                }
                Late::Adjust => book.late_records += 1,
            }
        }
        if !store.insert_new(&[r])?.first().copied().unwrap_or(false) {
            out.duplicates += 1;
            continue;
        }
        out.stored += 1;
        if !out.periods.contains(&r.period_start_ms) {
            out.periods.push(r.period_start_ms);
        }
        if r.is_final && book.final_arrived_ms.is_none() {
            book.final_arrived_ms = Some(now_ms);
        }
        // The counter's plan assignment: the period is rated under the plan of its
        // latest record by sequence, so a late or requeued older record never brings
        // an earlier plan back.
        let newer = book.plan.as_ref().is_none_or(|(_, seq)| *seq <= r.seq_to);
        if !r.plan.is_empty() && newer {
            book.plan = Some((r.plan.clone(), r.seq_to));
        }
        if *book != before {
            store.put_period(r.period_start_ms, book)?;
        }
        let key = (r.period_start_ms, r.meter.clone(), r.model.clone());
        let total = Total {
            period_end: r.period_end_ms,
            tally: store.total(&key)?.plus(&tally_of(r)),
            is_final: r.is_final,
        };
        store.put_total(&key, &total)?;
        if !r.livemode {
            store.mark_test_mode()?;
        }
    }
    Ok(out)
}

/// A ledger kept in memory, for tests and models.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemoryStore {
    pub seen: BTreeSet<String>,
    pub totals: BTreeMap<TotalKey, Total>,
    pub periods: BTreeMap<i64, PeriodBook>,
    pub refused: BTreeMap<String, String>,
    pub test_mode: bool,
}

impl LedgerStore for MemoryStore {
    type Error = std::convert::Infallible;

    fn insert_new(&mut self, records: &[&UsageRecord]) -> Result<Vec<bool>, Self::Error> {
        Ok(records
            .iter()
            .map(|r| self.seen.insert(r.id.clone()))
            .collect())
    }

    fn seen(&self, id: &str) -> Result<bool, Self::Error> {
        Ok(self.seen.contains(id))
    }

    fn period(&self, start: i64) -> Result<PeriodBook, Self::Error> {
        Ok(self.periods.get(&start).cloned().unwrap_or_default())
    }

    fn put_period(&mut self, start: i64, book: &PeriodBook) -> Result<(), Self::Error> {
        self.periods.insert(start, book.clone());
        Ok(())
    }

    fn total(&self, key: &TotalKey) -> Result<Tally, Self::Error> {
        Ok(self.totals.get(key).map(|t| t.tally).unwrap_or_default())
    }

    fn put_total(&mut self, key: &TotalKey, total: &Total) -> Result<(), Self::Error> {
        let was_final = self.totals.get(key).is_some_and(|t| t.is_final);
        let is_final = total.is_final || was_final;
        self.totals
            .insert(key.clone(), Total { is_final, ..*total });
        Ok(())
    }

    fn keep_refused(&mut self, r: &UsageRecord, reason: &str) -> Result<(), Self::Error> {
        self.refused.entry(r.id.clone()).or_insert(reason.into());
        Ok(())
    }

    fn mark_test_mode(&mut self) -> Result<(), Self::Error> {
        self.test_mode = true;
        Ok(())
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
