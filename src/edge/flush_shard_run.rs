//! A shard's run (the cron): what waits is sent in signed batches, and each batch's
//! outcome is applied as `crate::flush::delivery` decides; a failed run backs off.

use super::config;
use super::delivery::{deliver, render_batch, Receiver};
use super::flush_shard::FlushShard;
use super::outbox_store::ACKNOWLEDGED;
use crate::flush::delivery::{backoff_base_ms, verdict, ShardStats, ACKNOWLEDGED_RETENTION_MS};
use crate::flush::{pack, split_test_usage, Waiting};
use serde_json::json;
use worker::Result;

impl FlushShard {
    /// One run at a time per shard: a second one meanwhile is skipped.
    pub(super) async fn run(&self, now_ms: i64) -> serde_json::Value {
        if self.running.replace(true) {
            return json!({"skipped": "a run is already in progress"});
        }
        let result = self.run_once(now_ms).await;
        self.running.set(false);
        result.unwrap_or_else(|e| json!({"error": e.to_string()}))
    }

    async fn run_once(&self, now_ms: i64) -> Result<serde_json::Value> {
        let mut stats = self.load_stats()?;
        if stats.backing_off(now_ms) {
            return Ok(json!({"skipped": "backing off", "retry_at_ms": stats.retry_at_ms}));
        }
        stats.last_run_ms = Some(now_ms);
        let receiver = match Receiver::from_env(&self.env) {
            Ok(r) => r,
            Err(e) => return self.fail(stats, now_ms, e),
        };
        let waiting = self.waiting(now_ms)?;
        let route = config::test_usage_route(&self.env);
        let (waiting, test_usage) =
            split_test_usage(waiting, route.receiver_is_internal, route.export_test);
        let waiting = self.set_aside_unmapped(&receiver, waiting, now_ms)?;
        let customers = waiting.len() + test_usage.len();
        let mut sent = self.send(&receiver, waiting, now_ms).await?;
        if !test_usage.is_empty() {
            // Test usage of an external receiver: the built-in ledger's test invoices.
            let home = Receiver::internal(receiver.secret.clone());
            let more = self.send(&home, test_usage, now_ms).await?;
            sent.add(more);
        }
        let Sent {
            batches,
            records,
            kept_aside,
            undelivered,
        } = sent;
        let q = "DELETE FROM outbox WHERE state = ? AND done_ms < ?";
        let forget_before = now_ms - ACKNOWLEDGED_RETENTION_MS;
        self.sql
            .exec(q, vec![ACKNOWLEDGED.into(), forget_before.into()])?;
        stats.batches_sent += batches;
        stats.records_sent += records;
        let summary = json!({"customers": customers, "batches": batches, "records": records,
            "kept_aside": kept_aside, "error": undelivered});
        if let Some(e) = undelivered {
            // The receiver failed: back off before the next try.
            return self.fail(stats, now_ms, e).map(|_| summary);
        }
        stats.succeeded();
        self.save_stats(&stats)?;
        Ok(summary)
    }

    /// Sends `waiting` to `receiver` in batches: acknowledged, kept aside, or (on a
    /// retryable failure) left waiting with the rest.
    async fn send(&self, receiver: &Receiver, waiting: Waiting, now_ms: i64) -> Result<Sent> {
        let mut sent = Sent::default();
        for (batch, names) in pack(waiting, receiver.batch_records) {
            let rendered = render_batch(receiver, &batch, now_ms);
            let v = verdict(&batch, deliver(&self.env, receiver, &rendered).await);
            if let Some(why) = v.stop {
                // The rest waits too: the receiver is struggling.
                sent.undelivered = Some(why);
                break;
            }
            let ids: Vec<&str> = batch.records.iter().map(|r| r.id.as_str()).collect();
            if let Some(why) = v.aside {
                self.keep_aside(&rendered, &ids, &names, &why, now_ms)?;
                sent.kept_aside += 1;
                continue;
            }
            let acknowledged: Vec<&str> = v.acknowledged.iter().map(String::as_str).collect();
            self.mark_ids(&acknowledged, ACKNOWLEDGED, now_ms)?;
            self.set_aside_refused(receiver, &v.refused, now_ms)?;
            sent.batches += 1;
            sent.records += acknowledged.len() as u64;
            sent.kept_aside += v.refused.len() as u64;
        }
        Ok(sent)
    }

    fn fail(&self, mut stats: ShardStats, now_ms: i64, error: String) -> Result<serde_json::Value> {
        let base = backoff_base_ms(config::setting(&self.env, "FLUSH_BACKOFF_MS").as_deref());
        stats.failed(now_ms, base, error.clone());
        self.save_stats(&stats)?;
        Ok(json!({"error": error, "retry_at_ms": stats.retry_at_ms}))
    }
}

/// What one run sent.
#[derive(Default)]
struct Sent {
    batches: u64,
    records: u64,
    kept_aside: u64,
    undelivered: Option<String>,
}

impl Sent {
    fn add(&mut self, o: Sent) {
        self.batches += o.batches;
        self.records += o.records;
        self.kept_aside += o.kept_aside;
        self.undelivered = self.undelivered.take().or(o.undelivered);
    }
}
