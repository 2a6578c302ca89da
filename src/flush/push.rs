//! The counter's push bookkeeping: what settled usage it has taken as records, which
//! of those the shard holds, and which the receiver acknowledged. A push takes what is
//! new ([`PushState::take_new`]), sends every record still unacknowledged, and applies
//! the shard's answer ([`PushState::acknowledged`]); only acknowledgements move the
//! flushed watermark, so a lost answer only means the same ids are pushed again.

use super::snapshot::{apply_acks, take, FlushRow, Stamp};
use super::wake::AfterPush;
use super::UsageRecord;
use serde::{Deserialize, Serialize};

/// Where a counter's pushes stand. Stored whole after each step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PushState {
    /// Highest sequence number of the acknowledged records.
    pub flushed_seq: u64,
    /// Sequence number covered by the last records taken (in flight or acknowledged).
    #[serde(default)]
    pub taken_seq: u64,
    /// Records taken and not yet acknowledged by the receiver. They are pushed again
    /// (same ids) until the shard reports them acknowledged.
    pub pending: Vec<UsageRecord>,
    /// Sequence number covered by the records the shard has stored.
    #[serde(default)]
    pub pushed_seq: u64,
    /// When the last push was tried.
    #[serde(default)]
    pub last_push_ms: Option<i64>,
    /// The alarm set, if any.
    #[serde(default)]
    pub alarm_ms: Option<i64>,
    /// Pushes that failed in a row.
    #[serde(default)]
    pub failures: u32,
}

/// What a push sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// New records among them.
    pub new: usize,
    /// Every record not yet acknowledged, the new ones included.
    pub records: Vec<UsageRecord>,
    /// The counter sequence number they cover.
    pub seq: u64,
}

/// The shard's answer, applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Rows whose flushed totals changed, to store.
    pub rows: Vec<FlushRow>,
    pub acked: usize,
}

impl PushState {
    /// Takes what settled up to `seq` and is not yet taken as new records, beside
    /// those still unacknowledged. Rows of periods starting before `complete_before`
    /// are complete and get their final records.
    pub fn take_new(
        &mut self,
        stamp: &Stamp,
        rows: &[FlushRow],
        seq: u64,
        complete_before: i64,
        now_ms: i64,
    ) -> Taken {
        let range = (self.taken_seq.max(self.flushed_seq), seq);
        let new = take(stamp, rows, &self.pending, complete_before, range, now_ms);
        let count = new.len();
        // Sequence numbers that changed nothing left to take are covered too.
        self.taken_seq = self.taken_seq.max(seq);
        self.pending.extend(new);
        Taken {
            new: count,
            records: self.pending.clone(),
            seq: self.taken_seq,
        }
    }

    /// The shard stored the records of `taken` and answered the ids the receiver has
    /// acknowledged (ids this counter does not hold change nothing).
    pub fn acknowledged(
        &mut self,
        rows: &[FlushRow],
        acked_ids: &[String],
        taken: &Taken,
        now_ms: i64,
    ) -> Applied {
        let pending = std::mem::take(&mut self.pending);
        let done = apply_acks(rows, pending, acked_ids, self.flushed_seq);
        (self.pending, self.flushed_seq) = (done.pending, done.flushed_seq);
        self.pushed_seq = self.pushed_seq.max(taken.seq);
        self.failures = 0;
        self.last_push_ms = Some(now_ms);
        Applied {
            rows: done.rows,
            acked: done.acked,
        }
    }

    /// A push did not reach the shard: the next one waits longer.
    pub fn failed(&mut self, now_ms: i64) {
        self.failures += 1;
        self.last_push_ms = Some(now_ms);
    }

    /// What the next alarm depends on after a push: `seq` is the counter's sequence
    /// number now; the current period's end counts when it has `rows`, which will need
    /// a final record.
    pub fn after(
        &self,
        seq: u64,
        rows: &[FlushRow],
        period_end_ms: i64,
        deadline_ms: Option<i64>,
        now_ms: i64,
    ) -> AfterPush {
        AfterPush {
            now_ms,
            failures: self.failures,
            changed_since: seq > self.taken_seq,
            period_end_ms: (!rows.is_empty()).then_some(period_end_ms),
            deadline_ms,
        }
    }
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
