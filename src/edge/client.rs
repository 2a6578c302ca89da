//! Calls from the Worker to a customer's `UsageCounter` Durable Object.

use crate::error::ApiError;
use crate::protocol::{AdmitRequest, AdmitResponse, OwnedChange, SettleRequest};
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit, Response};

/// The Durable Object binding name in wrangler.toml.
pub const COUNTER_BINDING: &str = "USAGE_COUNTER";

/// The flush registry shards' binding name.
pub const SHARD_BINDING: &str = "FLUSH_SHARD";

/// Sends one request to the counter of `customer`.
pub async fn call<T: Serialize>(
    env: &Env,
    customer: &str,
    method: Method,
    path: &str,
    body: Option<&T>,
) -> Result<Response, ApiError> {
    super::metrics::bump(super::metrics::Metric::CounterCalls);
    call_object(env, COUNTER_BINDING, customer, method, path, body).await
}

/// Sends one request to the Durable Object `name` of namespace `binding`.
pub async fn call_object<T: Serialize>(
    env: &Env,
    binding: &str,
    name: &str,
    method: Method,
    path: &str,
    body: Option<&T>,
) -> Result<Response, ApiError> {
    let fail = |e: worker::Error| ApiError::internal(format!("{binding} unavailable: {e}"));
    let stub = env
        .durable_object(binding)
        .and_then(|ns| ns.id_from_name(name)?.get_stub())
        .map_err(fail)?;
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(b) = body {
        let text = serde_json::to_string(b).map_err(|e| ApiError::internal(e.to_string()))?;
        init.with_body(Some(JsValue::from_str(&text)));
    }
    let req = Request::new_with_init(&format!("https://object{path}"), &init).map_err(fail)?;
    stub.fetch_with_request(req).await.map_err(fail)
}

/// Records or forgets a resource on its owner's counter, trying twice: without the
/// record its owner cannot reach it, and with a stale one it would look owned.
pub async fn change_owned(env: &Env, counter: &str, change: &OwnedChange) -> bool {
    for _ in 0..2 {
        match call(env, counter, Method::Post, "/owned", Some(change)).await {
            Ok(r) if r.status_code() < 300 => return true,
            Ok(r) => worker::console_error!("owned {counter}: status {}", r.status_code()),
            Err(e) => worker::console_error!("owned {counter}: {e}"),
        }
    }
    false
}

/// Authenticates and reserves in one round trip.
pub async fn admit(
    env: &Env,
    customer: &str,
    req: &AdmitRequest,
) -> Result<AdmitResponse, ApiError> {
    let mut resp = call(env, customer, Method::Post, "/admit", Some(req)).await?;
    resp.json()
        .await
        .map_err(|e| ApiError::internal(format!("usage counter answered badly: {e}")))
}

/// Settles (or, with no usage, releases) a reservation. Failures are logged: the counter
/// expires reservations that are never settled, so nothing stays held forever.
pub async fn settle(env: &Env, customer: &str, req: &SettleRequest) {
    match call(env, customer, Method::Post, "/settle", Some(req)).await {
        Ok(r) if r.status_code() < 300 => {}
        Ok(r) => worker::console_error!(
            "settle {customer}/{}: status {}",
            req.reservation,
            r.status_code()
        ),
        Err(e) => worker::console_error!("settle {customer}/{}: {e}", req.reservation),
    }
}
