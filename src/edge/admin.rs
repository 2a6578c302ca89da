//! The admin API, behind the `ADMIN_TOKEN` secret (compared in constant time):
//! customers, keys and usage. Each call is forwarded to the customer's counter.

use super::auth::authorize;
use super::params::customer_id;
use super::{client, config, flush_shard, http};
use crate::customer::{creation_goes_on, CREATION_ORDER, REVOCATION_ORDER};
use crate::error::ApiError;
use crate::flush::delivery::fleet_stats;
use crate::keys::{self, Mode};
use crate::protocol::{CounterCall, CreateCustomer, IssueKey, KeyInfo, ShardCall};
use worker::{Env, Method, Request, Response};

pub async fn handle(req: Request, env: &Env) -> worker::Result<Response> {
    http::respond(admin(req, env).await)
}

/// Flush health per shard and overall: last run, records pending, oldest unflushed
/// change, last error and dead letters.
async fn flush_stats(env: &Env) -> Result<Response, ApiError> {
    let Some(shards) = config::flush_shards(env) else {
        return http::json_response(&serde_json::json!({"enabled": false}), 200)
            .map_err(http::internal);
    };
    let stats = futures_util::future::join_all(
        (0..shards).map(|i| flush_shard::shard_call(env, i, ShardCall::Stats)),
    )
    .await;
    let overall = fleet_stats(&stats);
    // The remaining loss windows (README, *No usage lost*), as this isolate counted them.
    let windows = super::metrics::loss_windows();
    let body = serde_json::json!({"enabled": true, "overall": overall, "shards": stats,
        "loss_windows": windows});
    http::json_response(&body, 200).map_err(http::internal)
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let body = if bytes.is_empty() {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(body).map_err(ApiError::invalid_json)
}

/// A customer's keys of both modes, live first.
async fn list_keys(env: &Env, id: &str) -> Result<Response, ApiError> {
    let mut all: Vec<KeyInfo> = Vec::new();
    for mode in [Mode::Live, Mode::Test] {
        let counter = keys::counter_name(mode, id);
        let mut r = client::call(env, &counter, &CounterCall::ListKeys).await?;
        if r.status_code() != 200 {
            return Ok(r);
        }
        let listed: Vec<KeyInfo> = r.json().await.map_err(http::internal)?;
        all.extend(listed);
    }
    http::json_response(&all, 200).map_err(http::internal)
}

async fn admin(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    authorize(&req, env)?;
    let path = req.path();
    let method = req.method();
    let bytes = http::read_capped(&mut req, crate::limits::MANAGE_BODY_BYTES).await?;
    let parts: Vec<&str> = path.trim_start_matches("/admin/v1/").split('/').collect();
    match (method, parts.as_slice()) {
        (Method::Get, ["catalog"]) => {
            http::json_response(config::catalog(env)?.as_ref(), 200).map_err(http::internal)
        }
        (Method::Post, ["customers"]) => {
            let c: CreateCustomer = parse(&bytes)?;
            let id = customer_id(&c.id)?.to_string();
            // In `customer::CREATION_ORDER`: a failed step can simply be repeated.
            let mut made = None;
            for mode in CREATION_ORDER {
                let create = CounterCall::CreateCustomer {
                    customer: c.clone(),
                    live: mode == Mode::Live,
                };
                let r = client::call(env, &keys::counter_name(mode, &id), &create).await?;
                if mode == Mode::Test && !creation_goes_on(r.status_code()) {
                    return Ok(r);
                }
                made = Some(r);
            }
            Ok(made.expect("both counters were asked"))
        }
        (Method::Get, ["customers", id, "usage"]) => {
            client::call(env, customer_id(id)?, &CounterCall::Usage(None)).await
        }
        (Method::Get, ["customers", id, "keys"]) => list_keys(env, customer_id(id)?).await,
        (Method::Post, ["customers", id, "keys"]) => {
            let k: IssueKey = parse(&bytes)?;
            let counter = keys::counter_name(k.mode()?, customer_id(id)?);
            client::call(env, &counter, &CounterCall::IssueKey(k)).await
        }
        (Method::Delete, ["customers", id, "keys", key_id]) => {
            let key_id = key_id.to_string();
            let id = customer_id(id)?;
            let mut last = None;
            for mode in REVOCATION_ORDER {
                let counter = keys::counter_name(mode, id);
                let revoke = CounterCall::RevokeKey(key_id.clone());
                let r = client::call(env, &counter, &revoke);
                let r = r.await?;
                if r.status_code() != 404 {
                    return Ok(r);
                }
                last = Some(r);
            }
            Ok(last.expect("two modes were tried"))
        }
        (Method::Get, ["metrics"]) => {
            http::json_response(&super::metrics::snapshot(), 200).map_err(http::internal)
        }
        (Method::Get, ["customers", id, "flush"]) => {
            client::call(env, customer_id(id)?, &CounterCall::PushView).await
        }
        (Method::Post, ["customers", id, "flush"]) => {
            // Push this counter's new usage to its shard now, without waiting for its alarm.
            client::call(env, customer_id(id)?, &CounterCall::Push).await
        }
        (Method::Post, ["customers", id, "close-period"]) => {
            client::call(env, customer_id(id)?, &CounterCall::ClosePeriod).await
        }
        (Method::Get, ["flush"]) => flush_stats(env).await,
        (Method::Get, ["reconciliation", at]) => {
            // Every customer's period containing that day, added up through the shards.
            let at_ms = super::params::instant(at)?;
            let shards = crate::limits::flushing_on(config::flush_shards(env))?;
            let fleet = super::flush_shard_reconcile::fleet(env, shards, at_ms).await;
            http::json_response(&fleet, 200).map_err(http::internal)
        }
        (Method::Post, ["test", "faults"]) => {
            http::json_response(&super::faults::set(env, &bytes)?, 200).map_err(http::internal)
        }
        (Method::Post, ["test", "clock"]) => {
            let now_ms = super::clock::advance(env, &bytes)?;
            http::json_response(&serde_json::json!({ "now_ms": now_ms }), 200)
                .map_err(http::internal)
        }
        (Method::Post, ["flush", "run"]) => {
            // What the cron does, on demand (operations, benchmarks).
            let results = flush_shard::run_all(env).await;
            http::json_response(&serde_json::json!({"shards": results}), 200)
                .map_err(http::internal)
        }
        (Method::Post, ["flush", "requeue"]) => {
            let shards = config::flush_shards(env).unwrap_or(0);
            let runs = (0..shards).map(|i| flush_shard::shard_call(env, i, ShardCall::Requeue));
            let results = futures_util::future::join_all(runs).await;
            http::json_response(&serde_json::json!({"shards": results}), 200)
                .map_err(http::internal)
        }
        _ => Err(ApiError::not_found(format!("No admin route {path}."))),
    }
}
