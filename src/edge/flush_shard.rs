//! `FlushShard`: one of N registry Durable Objects. Counters push their unacknowledged
//! records here (an outbox, keyed by record id); each cron run sends what is waiting in
//! signed batches and marks what the receiver accepted, which the counters learn on
//! their next push. Refused batches are kept aside (dead letters), never dropped.

use super::client::{call_object, SHARD_BINDING};
use super::delivery::{deliver, render_batch, Receiver};
use super::outbox_store::{SqlOutbox, ACKNOWLEDGED, SCHEMA};
use super::{config, http};
use crate::error::ApiError;
use crate::flush::delivery::ACKNOWLEDGED_RETENTION_MS;
use crate::flush::delivery::{backoff_base_ms, verdict, ShardStats};
use crate::flush::outbox::accept;
use crate::flush::{pack, split_test_usage, Waiting};
use crate::protocol::{ShardCall, ShardPush};
use serde_json::json;
use std::cell::Cell;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result,
    SqlStorage, State,
};

#[durable_object]
pub struct FlushShard {
    pub(super) env: Env,
    pub(super) sql: SqlStorage,
    running: Cell<bool>,
    ready: Cell<bool>,
}

impl DurableObject for FlushShard {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        FlushShard {
            env,
            sql,
            running: Cell::new(false),
            ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if let Err(e) = super::sql::ensure_schema(&self.sql, SCHEMA, &self.ready) {
            return http::error_response(
                &ApiError::unavailable(format!("shard storage: {e}")),
                &[],
            );
        }
        let bytes = req.bytes().await.unwrap_or_default();
        let now_ms = super::clock::now_ms();
        let call = match serde_json::from_slice::<ShardCall>(&bytes) {
            Ok(call) => call,
            Err(e) => return http::error_response(&ApiError::invalid_json(e), &[]),
        };
        match call {
            ShardCall::Push(push) => Response::from_json(&self.accept(&push, now_ms)?),
            ShardCall::Run => Response::from_json(&self.run(now_ms).await),
            ShardCall::Stats => Response::from_json(&self.stats(now_ms)?),
            ShardCall::Reconcile(page) => Response::from_json(&self.reconcile(&page).await?),
            ShardCall::Requeue => Response::from_json(&self.requeue(now_ms).await?),
        }
    }
}

impl FlushShard {
    /// A counter's push: `crate::flush::outbox::accept` decides, on the SQLite outbox.
    fn accept(&self, push: &ShardPush, now_ms: i64) -> Result<serde_json::Value> {
        let mut store = SqlOutbox {
            sql: &self.sql,
            now_ms,
        };
        let acknowledged = accept(&mut store, &push.customer, push.livemode, &push.records)?;
        self.remember(&push.customer, push.livemode, now_ms)?;
        Ok(json!({ "acknowledged": acknowledged }))
    }

    async fn run(&self, now_ms: i64) -> serde_json::Value {
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
        let export_test =
            config::setting(&self.env, "EXPORT_TEST_USAGE").as_deref() == Some("true");
        let (waiting, test_usage) =
            split_test_usage(waiting, receiver.url == "internal", export_test);
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

/// Runs every shard (the cron handler), all at once.
pub async fn run_all(env: &Env) -> Vec<serde_json::Value> {
    let Some(shards) = config::flush_shards(env) else {
        return Vec::new();
    };
    let runs = (0..shards).map(|i| shard_call(env, i, ShardCall::Run));
    futures_util::future::join_all(runs).await
}

/// Calls one shard and returns its JSON answer (or the error).
pub async fn shard_call(env: &Env, shard: u32, call: ShardCall) -> serde_json::Value {
    let name = format!("shard-{shard}");
    match call_object(env, SHARD_BINDING, &name, Method::Post, "/", Some(&call)).await {
        Ok(mut r) => r
            .json()
            .await
            .unwrap_or_else(|e| json!({"error": e.to_string()})),
        Err(e) => json!({"error": e.message}),
    }
}
