//! `FlushShard`: one of N registry Durable Objects. Counters register here when they
//! change; each cron run takes the dirty counters' snapshots, sends them in signed
//! batches, and acknowledges to each counter only what the receiver accepted.
//! Refused batches are kept aside (dead letters), never dropped.

use super::client::{call, call_object, SHARD_BINDING};
use super::delivery::{deliver, render_batch, Outcome, Receiver, Rendered};
use super::sql::{integer, text, Row};
use super::{config, http};
use crate::error::ApiError;
use crate::flush::{backoff_ms, pack, UsageRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::Cell;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Method, Request, Response, Result,
    SqlStorage, SqlStorageValue, State,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dirty (customer TEXT PRIMARY KEY, mark INTEGER NOT NULL, since_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead (batch_id TEXT PRIMARY KEY, customers TEXT NOT NULL, records INTEGER NOT NULL,
  content_type TEXT NOT NULL, body TEXT NOT NULL, error TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
";

/// Customers taken per run and shard; the rest wait for the next run.
const MAX_CUSTOMERS_PER_RUN: i64 = 400;

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
    pub oldest_unflushed_ms: Option<i64>,
    #[serde(default)]
    pub dead_letters: u64,
}

#[durable_object]
pub struct FlushShard {
    env: Env,
    sql: SqlStorage,
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
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let now_ms = worker::Date::now().as_millis() as i64;
        match req.path().as_str() {
            "/dirty" => {
                let customer = v["customer"].as_str().unwrap_or_default();
                let q = "INSERT INTO dirty (customer, mark, since_ms) VALUES (?, 1, ?)
                         ON CONFLICT(customer) DO UPDATE SET mark = mark + 1";
                self.sql.exec(q, vec![customer.into(), now_ms.into()])?;
                Response::empty()
            }
            "/run" => {
                let summary = self.run(now_ms).await;
                Response::from_json(&summary)
            }
            "/stats" => Response::from_json(&self.stats(now_ms)?),
            "/requeue" => Response::from_json(&self.requeue(now_ms).await?),
            other => {
                http::error_response(&ApiError::not_found(format!("no shard route {other}")), &[])
            }
        }
    }
}

impl FlushShard {
    fn rows(&self, q: &str, binds: Vec<SqlStorageValue>) -> Result<Vec<Row>> {
        super::sql::rows(&self.sql, q, binds)
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

    /// Stats with the live counts: dirty customers, oldest unflushed change, dead letters.
    fn stats(&self, now_ms: i64) -> Result<ShardStats> {
        let mut s = self.load_stats()?;
        let dirty = self.rows("SELECT COUNT(*), MIN(since_ms) FROM dirty", vec![])?;
        s.pending_customers = dirty.first().map_or(0, |r| int(r, 0)) as u64;
        s.oldest_unflushed_ms = dirty
            .first()
            .filter(|r| int(r, 0) > 0)
            .map(|r| now_ms - int(r, 1));
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
        let q = "SELECT customer, mark FROM dirty ORDER BY since_ms LIMIT ?";
        let dirty: Vec<(String, i64)> = self
            .rows(q, vec![MAX_CUSTOMERS_PER_RUN.into()])?
            .iter()
            .map(|r| (text(r, 0), int(r, 1)))
            .collect();
        let mut taken = Vec::with_capacity(dirty.len());
        let mut failed: Vec<String> = Vec::new();
        let mut error = None;
        for (customer, _) in &dirty {
            match self.take(customer).await {
                Ok(records) => taken.push((customer.clone(), records)),
                Err(e) => {
                    failed.push(customer.clone());
                    error.get_or_insert(e);
                }
            }
        }
        let ids_of = |c: &str| -> Vec<String> {
            taken
                .iter()
                .filter(|(n, _)| n == c)
                .flat_map(|(_, r)| r.iter().map(|r| r.id.clone()))
                .collect()
        };
        let all_ids: Vec<(String, Vec<String>)> =
            dirty.iter().map(|(c, _)| (c.clone(), ids_of(c))).collect();
        let mut undelivered = None;
        let (mut batches, mut records) = (0u64, 0u64);
        for (batch, customers) in pack(taken, receiver.batch_records) {
            if undelivered.is_some() {
                failed.extend(customers);
                continue;
            }
            let rendered = render_batch(&receiver, &batch, now_ms);
            match deliver(&self.env, &receiver, &rendered, now_ms).await {
                Outcome::Delivered => {
                    batches += 1;
                    records += batch.records.len() as u64;
                }
                Outcome::Rejected(_, detail) => {
                    self.keep_aside(&rendered, &batch.records, &customers, &detail, now_ms)?
                }
                Outcome::Retry(detail) => {
                    undelivered = Some(detail);
                    failed.extend(customers);
                }
            }
        }
        let mut cleaned = 0;
        for ((customer, ids), (_, mark)) in all_ids.iter().zip(&dirty) {
            if failed.contains(customer) {
                continue;
            }
            match self.ack(customer, ids).await {
                Ok(true) => {
                    let q = "DELETE FROM dirty WHERE customer = ? AND mark = ?";
                    self.sql
                        .exec(q, vec![customer.as_str().into(), (*mark).into()])?;
                    cleaned += 1;
                }
                Ok(false) => {}
                // Unacknowledged: the counter keeps the records and hands out the same
                // ones next run; the receiver dedupes them.
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        stats.batches_sent += batches;
        stats.records_sent += records;
        let summary = json!({"customers": dirty.len(), "batches": batches, "records": records,
            "cleaned": cleaned, "error": undelivered.as_ref().or(error.as_ref())});
        if let Some(e) = undelivered {
            // The receiver failed: back off before the next try.
            return self.fail(stats, now_ms, e).map(|_| summary);
        }
        stats.failures = 0;
        stats.retry_at_ms = 0;
        if let Some(e) = error {
            // Some counters did not answer: they are simply tried again next run.
            stats.last_error = Some(e);
            stats.last_error_ms = Some(now_ms);
        }
        self.save_stats(&stats)?;
        Ok(summary)
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

    /// Waits at most `FLUSH_TIMEOUT_MS` for a counter, so one stuck counter cannot hold
    /// up the run: it is skipped and tried again on the next run.
    async fn counter(
        &self,
        customer: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> std::result::Result<serde_json::Value, String> {
        let timeout_ms = config::setting(&self.env, "FLUSH_TIMEOUT_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        let answer = async {
            let mut resp = call(&self.env, customer, Method::Post, path, Some(body))
                .await
                .map_err(|e| e.message)?;
            if resp.status_code() >= 300 {
                return Err(format!(
                    "counter {customer} answered {}",
                    resp.status_code()
                ));
            }
            resp.json::<serde_json::Value>()
                .await
                .map_err(|e| e.to_string())
        };
        let timeout = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
        match futures_util::future::select(Box::pin(answer), timeout).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(_) => Err(format!(
                "counter {customer}: no answer within {timeout_ms} ms"
            )),
        }
    }

    async fn take(&self, customer: &str) -> std::result::Result<Vec<UsageRecord>, String> {
        let v = self
            .counter(customer, "/flush/take", &serde_json::Value::Null)
            .await?;
        serde_json::from_value(v["records"].clone()).map_err(|e| e.to_string())
    }

    async fn ack(&self, customer: &str, ids: &[String]) -> std::result::Result<bool, String> {
        let v = self.counter(customer, "/flush/ack", &json!(ids)).await?;
        Ok(v["clean"] == true)
    }

    /// A batch the receiver refused for good: kept with its exact body, to be requeued.
    fn keep_aside(
        &self,
        r: &Rendered,
        records: &[UsageRecord],
        customers: &[String],
        error: &str,
        now_ms: i64,
    ) -> Result<()> {
        let q = "INSERT OR REPLACE INTO dead (batch_id, customers, records, content_type, body, error, created_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?)";
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let binds: Vec<SqlStorageValue> = vec![
            r.batch_id.as_str().into(),
            customers.join(",").into(),
            (records.len() as i64).into(),
            r.content_type.as_str().into(),
            body.into(),
            error.into(),
            now_ms.into(),
        ];
        self.sql.exec(q, binds)?;
        Ok(())
    }

    /// Sends the dead letters again, exactly as first rendered; delivered ones are removed.
    async fn requeue(&self, now_ms: i64) -> Result<serde_json::Value> {
        let receiver = Receiver::from_env(&self.env).map_err(worker::Error::RustError)?;
        let rows = self.rows("SELECT batch_id, content_type, body FROM dead", vec![])?;
        let mut delivered = 0;
        for row in &rows {
            let rendered = Rendered {
                batch_id: text(row, 0),
                content_type: text(row, 1),
                body: text(row, 2).into_bytes(),
            };
            match deliver(&self.env, &receiver, &rendered, now_ms).await {
                Outcome::Delivered => {
                    self.sql.exec(
                        "DELETE FROM dead WHERE batch_id = ?",
                        vec![rendered.batch_id.as_str().into()],
                    )?;
                    delivered += 1;
                }
                Outcome::Rejected(_, e) | Outcome::Retry(e) => {
                    self.sql.exec(
                        "UPDATE dead SET error = ? WHERE batch_id = ?",
                        vec![e.into(), rendered.batch_id.as_str().into()],
                    )?;
                }
            }
        }
        Ok(json!({"dead_letters": rows.len(), "delivered": delivered}))
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
