//! A shard's delivery rules, from the shard to the receiver: how an answer ends a
//! delivery ([`outcome_of`]), what that does to the batch's records ([`verdict`]) or to
//! a dead letter sent again ([`requeued`]), and when a shard runs after failures
//! ([`ShardStats`]). The FlushShard object sends, stores, and asks these.

use super::{backoff_ms, Batch, UsageRecord};
use crate::ledger::{refused_in, Refused};
use serde::{Deserialize, Serialize};

/// Records sent per run and shard; the rest wait for the next run.
pub const MAX_RECORDS_PER_RUN: i64 = 20_000;

/// An acknowledged record whose counter never asked about it again (an idle customer)
/// is forgotten after this long; should it come again, the receiver dedupes it.
pub const ACKNOWLEDGED_RETENTION_MS: i64 = 45 * 86_400_000;

/// The wait after a shard's first failed run, unless `FLUSH_BACKOFF_MS` sets another.
pub const BACKOFF_BASE_MS: i64 = 60_000;

/// How long a delivery waits for the receiver's answer unless `FLUSH_TIMEOUT_MS` says.
pub const TIMEOUT_MS: u64 = 10_000;

/// Records per batch: `FLUSH_BATCH_RECORDS` (at least one), within what the format
/// takes.
pub fn batch_records(setting: Option<&str>, format: super::Format) -> usize {
    let asked = setting.and_then(|v| v.trim().parse::<u64>().ok());
    let n = asked.map_or(super::DEFAULT_BATCH_RECORDS, |n| n.max(1) as usize);
    n.min(format.max_batch())
}

/// `FLUSH_TIMEOUT_MS`, or [`TIMEOUT_MS`].
pub fn timeout_ms(setting: Option<&str>) -> u64 {
    setting
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(TIMEOUT_MS)
}

/// How one delivery of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken, but for the records the receiver refused one by one (listed in its 2xx
    /// answer as `refused: [{id, reason}]`): those are kept aside.
    Delivered(Vec<Refused>),
    /// A timeout, network error, 408, 429 or 5xx: the same batch goes again later.
    Retry(String),
    /// Any other 4xx: it will never succeed as it is, so it is kept aside.
    Rejected(u16, String),
}

/// How a 2xx answer ends a delivery: the records it refused one by one, if it lists
/// any. A `refused` list that cannot be read leaves the whole batch unacknowledged
/// (kept aside): acknowledging it could lose exactly the records it meant to refuse.
pub fn delivered(answer: &str) -> Outcome {
    match refused_in(answer) {
        Ok(refused) => Outcome::Delivered(refused),
        Err(e) => Outcome::Rejected(200, e),
    }
}

/// How a delivery to the built-in rating endpoint ends: its answer, or its error's
/// status and message; a failure of the endpoint itself (5xx) is tried again.
pub fn internal_outcome(answer: Result<String, (u16, String)>) -> Outcome {
    match answer {
        Ok(body) => delivered(&body),
        Err((status, why)) if status >= 500 => Outcome::Retry(why),
        Err((status, why)) => Outcome::Rejected(status, why),
    }
}

/// The records of customers Lago has no subscription for, set apart from the rest:
/// they are never sent under a wrong id (answers `(mapped, unmapped)`).
pub fn split_unmapped(
    waiting: super::Waiting,
    subscriptions: &super::Subscriptions,
) -> (super::Waiting, super::Waiting) {
    waiting.into_iter().partition(|(_, records)| {
        let customer = records.first().map(|r| r.customer.as_str());
        customer.is_some_and(|c| subscriptions.contains_key(c))
    })
}

/// How a receiver's HTTP answer ends a delivery.
pub fn outcome_of(status: u16, body: &str) -> Outcome {
    let detail = || {
        let head: String = body.chars().take(200).collect();
        format!("receiver answered {status}: {head}")
    };
    match status {
        200..=299 => delivered(body),
        408 | 429 | 500..=599 => Outcome::Retry(detail()),
        _ => Outcome::Rejected(status, detail()),
    }
}

/// What one batch's outcome does to its records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Ids the receiver took.
    pub acknowledged: Vec<String>,
    /// Records it refused one by one, each to be kept aside alone with its reason.
    /// Refused ids that were not in the batch are none of ours and are ignored.
    pub refused: Vec<(UsageRecord, String)>,
    /// Why the whole batch is kept aside, when it is.
    pub aside: Option<String>,
    /// Why the run stops here, the rest waiting with this batch: the receiver is
    /// struggling.
    pub stop: Option<String>,
}

pub fn verdict(batch: &Batch, outcome: Outcome) -> Verdict {
    match outcome {
        Outcome::Delivered(refused) => {
            let reason = |id: &str| refused.iter().find(|r| r.id == id).map(|r| &r.reason);
            let mut v = Verdict::default();
            for record in &batch.records {
                match reason(&record.id) {
                    Some(why) => v.refused.push((record.clone(), why.clone())),
                    None => v.acknowledged.push(record.id.clone()),
                }
            }
            v
        }
        Outcome::Rejected(_, why) => Verdict {
            aside: Some(why),
            ..Verdict::default()
        },
        Outcome::Retry(why) => Verdict {
            stop: Some(why),
            ..Verdict::default()
        },
    }
}

/// What sending a dead letter again did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    /// All taken: the letter goes, its records are acknowledged.
    Delivered { acknowledged: Vec<String> },
    /// Partly taken: those are acknowledged, the letter keeps only the refused ids
    /// (its body is sent whole again next time; the receiver dedupes).
    Shrunk {
        acknowledged: Vec<String>,
        kept: Vec<String>,
        why: String,
    },
    /// Not taken: the letter stays, with the new reason.
    Failed(String),
}

/// A dead letter holding `ids` was sent again and ended with `outcome`.
pub fn requeued(ids: &[String], outcome: Outcome) -> Requeued {
    let refused = match outcome {
        Outcome::Delivered(refused) => refused,
        Outcome::Rejected(_, why) | Outcome::Retry(why) => return Requeued::Failed(why),
    };
    let (kept, acknowledged): (Vec<String>, Vec<String>) = ids
        .iter()
        .cloned()
        .partition(|id| refused.iter().any(|r| &r.id == id));
    if kept.is_empty() {
        // It refused only ids this letter does not hold: all was taken.
        return Requeued::Delivered { acknowledged };
    }
    let why: Vec<String> = refused.into_iter().map(|r| r.reason).collect();
    Requeued::Shrunk {
        acknowledged,
        kept,
        why: why.join("; "),
    }
}

/// A shard's runs, as the admin API shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    pub last_run_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub failures: u32,
    pub retry_at_ms: i64,
    pub batches_sent: u64,
    pub records_sent: u64,
    #[serde(default)]
    pub pending_customers: u64,
    #[serde(default)]
    pub pending_records: u64,
    #[serde(default)]
    pub oldest_unflushed_ms: Option<i64>,
    #[serde(default)]
    pub dead_letters: u64,
}

impl ShardStats {
    /// Whether a run now must wait for the back-off after failures.
    pub fn backing_off(&self, now_ms: i64) -> bool {
        now_ms < self.retry_at_ms
    }

    /// A run failed: the next waits `base_ms`, doubling with each failure in a row.
    pub fn failed(&mut self, now_ms: i64, base_ms: i64, error: String) {
        self.failures += 1;
        self.retry_at_ms = now_ms + backoff_ms(self.failures, base_ms);
        self.last_error = Some(error);
        self.last_error_ms = Some(now_ms);
    }

    /// A run delivered all it could: the next one need not wait.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at_ms = 0;
    }
}

/// The fleet's flush health from each shard's stats (as the shards answered, an error
/// object for a shard that could not report). A shard that could not report makes
/// every sum unknown (null), never silently low; the latest error is the fleet's.
pub fn fleet_stats(shards: &[serde_json::Value]) -> serde_json::Value {
    let unreachable = shards
        .iter()
        .filter(|s| s.get("pending_customers").is_none())
        .count();
    let sum = |field: &str| {
        let total = || shards.iter().filter_map(|s| s[field].as_u64()).sum::<u64>();
        (unreachable == 0).then(total)
    };
    let max = |field: &str| shards.iter().filter_map(|s| s[field].as_i64()).max();
    let last_error = shards
        .iter()
        .filter(|s| s["last_error"].is_string())
        .max_by_key(|s| s["last_error_ms"].as_i64())
        .map(|s| s["last_error"].clone());
    serde_json::json!({
        "shards_unreachable": unreachable,
        "pending_customers": sum("pending_customers"),
        "pending_records": sum("pending_records"),
        "oldest_unflushed_ms": max("oldest_unflushed_ms"),
        "last_run_ms": max("last_run_ms"),
        "last_error": last_error,
        "dead_letters": sum("dead_letters"),
        "batches_sent": sum("batches_sent"),
        "records_sent": sum("records_sent"),
    })
}

/// The back-off base from the `FLUSH_BACKOFF_MS` setting.
pub fn backoff_base_ms(setting: Option<&str>) -> i64 {
    setting
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(BACKOFF_BASE_MS)
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
