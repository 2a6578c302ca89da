//! The built-in rating endpoint, `/rating/v1/...`: signed batch ingestion (what the
//! flush delivers to), billing accounts and credit grants, invoices, reconciliation,
//! and the preview under a draft price book. Each customer's data lives in its
//! `Ledger` Durable Object.

use super::client::{call_object, call_object_text};
use super::params::{customer_id, instant, period_start};
use super::{auth, config, http, signing};
use crate::error::ApiError;
use crate::flush::signature_fresh;
use crate::ledger::{account, ledger_shard, parse_batch};
use crate::limits;
use crate::protocol::{LedgerAsk, LedgerCall};
use futures_util::StreamExt;
use serde_json::Value;
use worker::{Env, Method, Request, Response};

pub const LEDGER_BINDING: &str = "LEDGER";

pub async fn handle(mut req: Request, env: &Env) -> worker::Result<Response> {
    let path = req.path();
    let method = req.method();
    let result = async {
        if (method.clone(), path.as_str()) == (Method::Post, "/rating/v1/ingest") {
            // The body is signed, so only the size cap and the signature's age can be
            // checked before it is read.
            let signature = req.headers().get("x-edgemeter-signature").ok().flatten();
            let signature = signature.unwrap_or_default();
            let now_s = super::clock::wall_ms() / 1000;
            if !signature_fresh(&signature, now_s, limits::SIGNATURE_TOLERANCE_S) {
                let msg = "Missing, stale or invalid X-Edgemeter-Signature.";
                return Err(ApiError::unauthorized(msg));
            }
            let bytes = http::read_capped(&mut req, limits::INGEST_BODY_BYTES).await?;
            ingest(env, &signature, &bytes).await
        } else {
            auth::authorize(&req, env)?;
            let bytes = http::read_capped(&mut req, limits::MANAGE_BODY_BYTES).await?;
            let livemode = livemode_of(&req.inner().url())?;
            manage(env, method, &path, &bytes, livemode).await
        }
    };
    http::respond(result.await)
}

/// Asks `owner`'s ledger (`crate::flush::owner_key`), in its shard.
pub(super) async fn ledger(env: &Env, owner: &str, ask: LedgerAsk) -> Result<Response, ApiError> {
    let call = LedgerCall::Customer {
        owner: owner.to_string(),
        ask,
    };
    let shard = ledger_shard(owner);
    call_object(env, LEDGER_BINDING, &shard, Method::Post, "/", Some(&call)).await
}

/// Ledger shard calls one ingestion has in flight at most.
const LEDGER_CALLS_AT_ONCE: usize = 16;

/// Verifies and stores a flush batch. 401 for a bad signature, 400 for a malformed
/// batch (nothing of it stored); records seen before are counted, not stored again.
pub async fn ingest(env: &Env, signature: &str, body: &[u8]) -> Result<Response, ApiError> {
    let secret = config::setting(env, "RATING_SECRET")
        .ok_or_else(|| ApiError::internal("RATING_SECRET is not set"))?;
    let now_s = super::clock::wall_ms() / 1000;
    if !signing::verified(
        &secret,
        signature,
        body,
        now_s,
        limits::SIGNATURE_TOLERANCE_S,
    )
    .await
    {
        return Err(ApiError::unauthorized(
            "Missing or invalid X-Edgemeter-Signature.",
        ));
    }
    let batch = parse_batch(body).map_err(|e| ApiError::bad_request("invalid_batch", e))?;
    // One call per Ledger shard the batch's customers live in, side by side; the
    // records go as they came (`{"ingest": [...]}`, a LedgerCall).
    let shards = batch.by_shard().map_err(ApiError::internal)?;
    let calls = shards.into_iter().map(|(shard, records)| async move {
        let call = format!(r#"{{"ingest":{records}}}"#);
        let mut resp = call_object_text(env, LEDGER_BINDING, &shard, call).await?;
        if resp.status_code() >= 300 {
            // The sender retries the whole batch; what was stored dedupes.
            return Err(ApiError::internal(format!(
                "{shard} answered {}",
                resp.status_code()
            )));
        }
        resp.json::<Value>().await.map_err(http::internal)
    });
    let answers: Vec<Result<Value, ApiError>> = futures_util::stream::iter(calls)
        .buffer_unordered(LEDGER_CALLS_AT_ONCE)
        .collect()
        .await;
    let answers: Vec<Value> = answers.into_iter().collect::<Result<_, _>>()?;
    let answer = batch.answer(&answers);
    http::json_response(&answer, 200).map_err(http::internal)
}

/// The mode a management call addresses (`crate::ledger::account::livemode_of`).
fn livemode_of(url: &str) -> Result<bool, ApiError> {
    account::livemode_of(url.split_once('?').map_or("", |(_, q)| q))
}

async fn manage(
    env: &Env,
    method: Method,
    path: &str,
    bytes: &[u8],
    livemode: bool,
) -> Result<Response, ApiError> {
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?
    };
    let parts: Vec<&str> = path.trim_start_matches("/rating/v1/").split('/').collect();
    // A test-mode customer's billing lives in its own Ledger, as its usage does.
    let customer = |id: &str| customer_id(id).map(|id| crate::flush::owner_key(id, livemode));
    match (method, parts.as_slice()) {
        (Method::Put, ["customers", id, "account"]) => {
            let body = account::for_customer(id, body, livemode)?;
            ledger(env, &customer(id)?, LedgerAsk::SetAccount(body)).await
        }
        (Method::Post, ["customers", id, "grants"]) => {
            ledger(env, &customer(id)?, LedgerAsk::AddGrant(body)).await
        }
        (Method::Get, ["customers", id, "reconciliation", at]) => {
            let ask = LedgerAsk::Reconcile {
                customer: customer_id(id)?.to_string(),
                livemode,
                at_ms: instant(at)?,
            };
            ledger(env, &customer(id)?, ask).await
        }
        (Method::Get, ["customers", id, "grants"]) => {
            ledger(env, &customer(id)?, LedgerAsk::ListGrants).await
        }
        (Method::Post, ["customers", id, "grants", grant, "void"]) => {
            let ask = LedgerAsk::VoidGrant(grant.to_string());
            ledger(env, &customer(id)?, ask).await
        }
        (Method::Get, ["customers", id, "invoices", period]) => {
            let ask = LedgerAsk::Invoice {
                period_start_ms: period_start(period)?,
            };
            ledger(env, &customer(id)?, ask).await
        }
        (Method::Post, ["preview"]) => {
            let id = customer(body["customer"].as_str().unwrap_or_default())?;
            let period = period_start(body["period"].as_str().unwrap_or_default())?;
            let ask = LedgerAsk::Preview {
                period_start_ms: period,
                price_book: body["price_book"].to_string(),
            };
            ledger(env, &id, ask).await
        }
        _ => Err(ApiError::not_found(format!("No rating route {path}."))),
    }
}
