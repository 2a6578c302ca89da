//! `FlushShard`: one of N registry Durable Objects. Counters push their unacknowledged
//! records here (an outbox, keyed by record id); each cron run sends what is waiting in
//! signed batches and marks what the receiver accepted, which the counters learn on
//! their next push. Refused batches are kept aside (dead letters), never dropped.

use super::client::{call_object, SHARD_BINDING};
use super::delivery::{deliver, render_batch, Outcome, Receiver, Rendered};
use super::outbox_store::SqlOutbox;
use super::sql::{integer, text, Row};
use super::{config, http};
use crate::error::ApiError;
use crate::flush::outbox::accept;
use crate::flush::{backoff_ms, pack, split_test_usage, UsageRecord, Waiting};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::Cell;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result,
    SqlStorage, SqlStorageValue, State,
};

// outbox.state: 0 waiting to be sent, 1 acknowledged by the receiver, 2 kept aside.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, customer TEXT NOT NULL, record TEXT NOT NULL,
  recorded_ms INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0, done_ms INTEGER);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (state, customer);
CREATE INDEX IF NOT EXISTS outbox_customer ON outbox (customer, state);
CREATE TABLE IF NOT EXISTS dead (batch_id TEXT PRIMARY KEY, customers TEXT NOT NULL, record_ids TEXT NOT NULL,
  records INTEGER NOT NULL, content_type TEXT NOT NULL, body TEXT NOT NULL, error TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (owner TEXT PRIMARY KEY, customer TEXT NOT NULL, livemode INTEGER NOT NULL,
  last_ms INTEGER NOT NULL);
";

pub(super) const WAITING: i64 = 0;
pub(super) const ACKNOWLEDGED: i64 = 1;
pub(super) const KEPT_ASIDE: i64 = 2;

/// The content type a dead letter of an unreadable outbox row is kept under.
pub(super) const UNREADABLE: &str = "application/x-edgemeter-unreadable-row";

/// Records sent per run and shard; the rest wait for the next run.
const MAX_RECORDS_PER_RUN: i64 = 20_000;

/// An acknowledged record whose counter never asked about it again (an idle customer)
/// is forgotten after this long; should it come again, the receiver dedupes it.
const ACKNOWLEDGED_RETENTION_MS: i64 = 45 * 86_400_000;

/// What the admin API shows of a shard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// A counter's push: its records not yet acknowledged. A test-mode counter's are kept
/// under their own owner key, so neither counter's push forgets the other's.
#[derive(Deserialize)]
struct Push {
    customer: String,
    #[serde(default = "live")]
    livemode: bool,
    records: Vec<UsageRecord>,
}

fn live() -> bool {
    true
}

#[durable_object]
pub struct FlushShard {
    pub(super) env: Env,
    pub(super) sql: SqlStorage,
    running: Cell<bool>,
    ready: Cell<bool>,
}

fn int(row: &Row, i: usize) -> i64 {
    integer(row, i).unwrap_or(0)
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
        match req.path().as_str() {
            "/push" => match serde_json::from_slice::<Push>(&bytes) {
                Ok(push) => Response::from_json(&self.accept(&push, now_ms)?),
                Err(e) => http::error_response(&ApiError::invalid_json(e), &[]),
            },
            "/run" => {
                let summary = self.run(now_ms).await;
                Response::from_json(&summary)
            }
            "/stats" => Response::from_json(&self.stats(now_ms)?),
            "/reconcile" => match serde_json::from_slice(&bytes) {
                Ok(page) => Response::from_json(&self.reconcile(&page).await?),
                Err(e) => http::error_response(&ApiError::invalid_json(e), &[]),
            },
            "/requeue" => Response::from_json(&self.requeue(now_ms).await?),
            other => {
                http::error_response(&ApiError::not_found(format!("no shard route {other}")), &[])
            }
        }
    }
}

impl FlushShard {
    pub(super) fn rows(&self, q: &str, binds: Vec<SqlStorageValue>) -> Result<Vec<Row>> {
        super::sql::rows(&self.sql, q, binds)
    }

    /// A counter's push: `crate::flush::outbox::accept` decides, on the SQLite outbox.
    fn accept(&self, push: &Push, now_ms: i64) -> Result<serde_json::Value> {
        let mut store = SqlOutbox {
            sql: &self.sql,
            now_ms,
        };
        let acknowledged = accept(&mut store, &push.customer, push.livemode, &push.records)?;
        self.remember(&push.customer, push.livemode, now_ms)?;
        Ok(json!({ "acknowledged": acknowledged }))
    }

    fn load_stats(&self) -> Result<ShardStats> {
        let rows = self.rows("SELECT v FROM meta WHERE k = 'stats'", vec![])?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&text(r, 0)).ok())
            .unwrap_or_default())
    }

    fn save_stats(&self, s: &ShardStats) -> Result<()> {
        let q = "INSERT INTO meta (k, v) VALUES ('stats', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v";
        self.sql
            .exec(q, vec![serde_json::to_string(s).unwrap_or_default().into()])?;
        Ok(())
    }

    /// Stats with the live counts: records waiting and their customers, the oldest
    /// waiting record, dead letters.
    fn stats(&self, now_ms: i64) -> Result<ShardStats> {
        let mut s = self.load_stats()?;
        let q = "SELECT COUNT(DISTINCT customer), COUNT(*), MIN(recorded_ms) FROM outbox WHERE state = ?";
        let waiting = self.rows(q, vec![WAITING.into()])?;
        let w = waiting.first();
        s.pending_customers = w.map_or(0, |r| int(r, 0)) as u64;
        s.pending_records = w.map_or(0, |r| int(r, 1)) as u64;
        s.oldest_unflushed_ms = w.filter(|r| int(r, 1) > 0).map(|r| now_ms - int(r, 2));
        let dead = self.rows("SELECT COUNT(*) FROM dead", vec![])?;
        s.dead_letters = dead.first().map_or(0, |r| int(r, 0)) as u64;
        Ok(s)
    }

    async fn run(&self, now_ms: i64) -> serde_json::Value {
        if self.running.replace(true) {
            return json!({"skipped": "a run is already in progress"});
        }
        let result = self.run_once(now_ms).await;
        self.running.set(false);
        result.unwrap_or_else(|e| json!({"error": e.to_string()}))
    }

    /// The waiting records, grouped by customer, at most `MAX_RECORDS_PER_RUN`. A row
    /// that no longer parses is set aside as a dead letter, never skipped in place.
    fn waiting(&self, now_ms: i64) -> Result<Vec<(String, Vec<UsageRecord>)>> {
        let q = "SELECT customer, record, id FROM outbox WHERE state = ? ORDER BY customer LIMIT ?";
        let rows = self.rows(q, vec![WAITING.into(), MAX_RECORDS_PER_RUN.into()])?;
        let mut out: Vec<(String, Vec<UsageRecord>)> = Vec::new();
        for row in &rows {
            let record = match serde_json::from_str::<UsageRecord>(&text(row, 1)) {
                Ok(record) => record,
                Err(e) => {
                    let (customer, raw, id) = (text(row, 0), text(row, 1), text(row, 2));
                    let rendered = Rendered {
                        batch_id: format!("unreadable-{id}"),
                        content_type: UNREADABLE.to_string(),
                        body: raw.into_bytes(),
                    };
                    let why = format!("unreadable outbox row: {e}");
                    let ids = [id.as_str()];
                    self.keep_aside(&rendered, &ids, &[customer], &why, now_ms)?;
                    continue;
                }
            };
            // Grouped by owner: a customer's test usage is a group of its own.
            let owner = text(row, 0);
            match out.last_mut() {
                Some((o, recs)) if *o == owner => recs.push(record),
                _ => out.push((owner, vec![record])),
            }
        }
        Ok(out)
    }

    pub(super) fn mark_ids(&self, ids: &[&str], state: i64, now_ms: i64) -> Result<()> {
        let q = "UPDATE outbox SET state = ?, done_ms = ? WHERE id = ?";
        for id in ids {
            self.sql
                .exec(q, vec![state.into(), now_ms.into(), (*id).into()])?;
        }
        Ok(())
    }

    async fn run_once(&self, now_ms: i64) -> Result<serde_json::Value> {
        let mut stats = self.load_stats()?;
        if now_ms < stats.retry_at_ms {
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
        stats.failures = 0;
        stats.retry_at_ms = 0;
        self.save_stats(&stats)?;
        Ok(summary)
    }

    /// Sends `waiting` to `receiver` in batches: acknowledged, kept aside, or (on a
    /// retryable failure) left waiting with the rest.
    async fn send(&self, receiver: &Receiver, waiting: Waiting, now_ms: i64) -> Result<Sent> {
        let mut sent = Sent::default();
        for (batch, names) in pack(waiting, receiver.batch_records) {
            let rendered = render_batch(receiver, &batch, now_ms);
            match deliver(&self.env, receiver, &rendered).await {
                Outcome::Delivered(refused) => {
                    let taken = |id: &&str| !refused.iter().any(|r| r.id == *id);
                    let ids: Vec<&str> = batch.records.iter().map(|r| r.id.as_str()).collect();
                    let ids: Vec<&str> = ids.into_iter().filter(taken).collect();
                    self.mark_ids(&ids, ACKNOWLEDGED, now_ms)?;
                    self.set_aside_refused(receiver, &batch, &refused, now_ms)?;
                    sent.batches += 1;
                    sent.records += ids.len() as u64;
                    sent.kept_aside += refused.len() as u64;
                }
                Outcome::Rejected(_, detail) => {
                    let ids: Vec<&str> = batch.records.iter().map(|r| r.id.as_str()).collect();
                    self.keep_aside(&rendered, &ids, &names, &detail, now_ms)?;
                    sent.kept_aside += 1;
                }
                Outcome::Retry(detail) => {
                    // The rest waits too: the receiver is struggling.
                    sent.undelivered = Some(detail);
                    break;
                }
            }
        }
        Ok(sent)
    }

    fn fail(&self, mut stats: ShardStats, now_ms: i64, error: String) -> Result<serde_json::Value> {
        stats.failures += 1;
        let base = config::setting(&self.env, "FLUSH_BACKOFF_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(60_000);
        stats.retry_at_ms = now_ms + backoff_ms(stats.failures, base);
        stats.last_error = Some(error.clone());
        stats.last_error_ms = Some(now_ms);
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
    let runs = (0..shards).map(|i| shard_call(env, i, "/run"));
    futures_util::future::join_all(runs).await
}

/// Calls one shard and returns its JSON answer (or the error).
pub async fn shard_call(env: &Env, shard: u32, path: &str) -> serde_json::Value {
    let none: Option<&()> = None;
    match call_object(
        env,
        SHARD_BINDING,
        &format!("shard-{shard}"),
        Method::Post,
        path,
        none,
    )
    .await
    {
        Ok(mut r) => r
            .json()
            .await
            .unwrap_or_else(|e| json!({"error": e.to_string()})),
        Err(e) => json!({"error": e.message}),
    }
}
