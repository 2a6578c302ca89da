//! `FlushShard`: one of N registry Durable Objects. Counters push their unacknowledged
//! records here (an outbox, keyed by record id); each cron run sends what is waiting in
//! signed batches and marks what the receiver accepted, which the counters learn on
//! their next push. Refused batches are kept aside (dead letters), never dropped.

use super::client::{call_object, SHARD_BINDING};
use super::outbox_store::{SqlOutbox, SCHEMA};
use super::{config, http};
use crate::error::ApiError;
use crate::flush::outbox::accept;
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
    pub(super) running: Cell<bool>,
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
