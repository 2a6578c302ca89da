//! Taking a batch of records into a customer's ledger: each record once (by id), added
//! to its period's running total per meter and model, with the plan and the mode it
//! carries and when its period's final records first came; a record for a final
//! period is taken as late usage inside the backdating window and refused after it.
//! The decision is [`take`], from what the ledger already holds ([`Known`]) to what it
//! writes ([`Changes`]); a store reads the one and writes the other in a few queries
//! for a whole batch: SQLite in a Ledger shard, memory in tests ([`MemoryStore`]).

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

/// What a ledger already holds that a batch touches, read before the batch is taken:
/// a store reads it in a few queries however many records the batch has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The ids among the batch's that were stored before.
    pub seen: BTreeSet<String>,
    /// The books of the batch's periods that exist.
    pub books: BTreeMap<i64, PeriodBook>,
    /// The running totals of the batch's keys that exist.
    pub totals: BTreeMap<TotalKey, Total>,
}

/// What taking a batch writes. A store writes it all or nothing, so a failure never
/// leaves ids marked seen whose usage is not in the totals (a retry would find only
/// duplicates), nor usage in the totals whose ids are not seen (a retry would count it
/// again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The ids stored now, with their period.
    pub stored: Vec<(String, i64)>,
    /// The records refused now: id, period and why.
    pub refused: Vec<(String, i64, String)>,
    /// The period books that changed, as they are now.
    pub books: BTreeMap<i64, PeriodBook>,
    /// The running totals that changed, as they are now.
    pub totals: BTreeMap<TotalKey, Total>,
    /// The ledger holds test-mode usage.
    pub test_mode: bool,
    /// A period's final records arrived for the first time: its finalization may now
    /// be due.
    pub final_arrived: bool,
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

/// The keys a batch's records read: ids, periods and running totals.
pub fn keys_of(records: &[UsageRecord]) -> (BTreeSet<&str>, BTreeSet<i64>, BTreeSet<TotalKey>) {
    let ids = records.iter().map(|r| r.id.as_str()).collect();
    let periods = records.iter().map(|r| r.period_start_ms).collect();
    let totals = records.iter().map(total_key).collect();
    (ids, periods, totals)
}

fn total_key(r: &UsageRecord) -> TotalKey {
    (r.period_start_ms, r.meter.clone(), r.model.clone())
}

/// Takes one ledger's `records` at `now_ms`, given what it `known`s: what the batch did
/// and what to write. Records are taken in order, each once (by id).
pub fn take(
    known: &Known,
    records: &[UsageRecord],
    finality: &Finality,
    now_ms: i64,
) -> (Ingested, Changes) {
    let mut out = Ingested::default();
    let mut changes = Changes::default();
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    let mut books: BTreeMap<i64, PeriodBook> = BTreeMap::new();
    for r in records {
        if !ids.insert(&r.id) {
            out.duplicates += 1; // twice in one batch
            continue;
        }
        let book = books.entry(r.period_start_ms).or_insert_with(|| {
            let known_book = known.books.get(&r.period_start_ms);
            known_book.cloned().unwrap_or_default()
        });
        let stored_before = known.seen.contains(&r.id);
        if book.invoiced && !stored_before {
            match finality.late(r.period_end_ms, now_ms) {
                Late::Refuse(reason) => {
                    let refused = (r.id.clone(), r.period_start_ms, reason.clone());
                    changes.refused.push(refused);
                    let id = r.id.clone();
                    out.refused.push(Refused { id, reason });
                    continue;
                }
                Late::Adjust => book.late_records += 1,
            }
        }
        if stored_before {
            out.duplicates += 1;
            continue;
        }
        out.stored += 1;
        changes.stored.push((r.id.clone(), r.period_start_ms));
        if !out.periods.contains(&r.period_start_ms) {
            out.periods.push(r.period_start_ms);
        }
        if r.is_final && book.final_arrived_ms.is_none() {
            book.final_arrived_ms = Some(now_ms);
            changes.final_arrived = true;
        }
        // The counter's plan assignment: the period is rated under the plan of its
        // latest record by sequence, so a late or requeued older record never brings
        // an earlier plan back.
        let newer = book.plan.as_ref().is_none_or(|(_, seq)| *seq <= r.seq_to);
        if !r.plan.is_empty() && newer {
            book.plan = Some((r.plan.clone(), r.seq_to));
        }
        let key = total_key(r);
        let total = changes.totals.entry(key).or_insert_with_key(|key| {
            let known_total = known.totals.get(key);
            known_total.copied().unwrap_or_default()
        });
        total.tally = total.tally.plus(&tally_of(r));
        total.period_end = r.period_end_ms;
        total.is_final |= r.is_final;
        changes.test_mode |= !r.livemode;
    }
    changes.books = books
        .into_iter()
        .filter(|(start, book)| known.books.get(start).cloned().unwrap_or_default() != *book)
        .collect();
    (out, changes)
}

/// Takes `records` into a ledger kept in memory at `now_ms`.
pub fn ingest(
    store: &mut MemoryStore,
    records: &[UsageRecord],
    finality: &Finality,
    now_ms: i64,
) -> Ingested {
    let (out, changes) = take(&store.known(records), records, finality, now_ms);
    store.apply(changes);
    out
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

impl MemoryStore {
    /// What it holds that `records` touch.
    pub fn known(&self, records: &[UsageRecord]) -> Known {
        let (ids, periods, keys) = keys_of(records);
        Known {
            seen: ids
                .into_iter()
                .filter(|id| self.seen.contains(*id))
                .map(String::from)
                .collect(),
            books: periods
                .into_iter()
                .filter_map(|p| Some((p, self.periods.get(&p)?.clone())))
                .collect(),
            totals: keys
                .into_iter()
                .filter_map(|k| Some((k.clone(), *self.totals.get(&k)?)))
                .collect(),
        }
    }

    pub fn apply(&mut self, changes: Changes) {
        self.seen
            .extend(changes.stored.into_iter().map(|(id, _)| id));
        for (id, _, reason) in changes.refused {
            self.refused.entry(id).or_insert(reason);
        }
        self.periods.extend(changes.books);
        self.totals.extend(changes.totals);
        self.test_mode |= changes.test_mode;
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
