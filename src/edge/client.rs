//! Calls from the Worker to a customer's `UsageCounter` Durable Object.

use crate::error::ApiError;
use crate::lease::{LeaseAnswer, LeaseAsk, Report};
use crate::protocol::{
    AdmitRequest, AdmitResponse, CounterCall, ExtendRequest, OwnedChange, SettleRequest,
};
use crate::reservation::{SETTLE_BACKOFF_MS, SETTLE_TRY_MS};
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::{Env, Method, Request, RequestInit, Response};

/// The Durable Object binding name in wrangler.toml.
pub const COUNTER_BINDING: &str = "USAGE_COUNTER";

/// The flush registry shards' binding name.
pub const SHARD_BINDING: &str = "FLUSH_SHARD";

/// Sends one call to the counter of `customer`.
pub async fn call(env: &Env, customer: &str, call: &CounterCall) -> Result<Response, ApiError> {
    if changes_access(call) {
        super::leases::retire_counter(customer);
    }
    if reads_usage(call) || changes_access(call) {
        super::leases::send_once(env, customer).await;
    }
    super::metrics::bump(super::metrics::Metric::CounterCalls);
    call_object(
        env,
        COUNTER_BINDING,
        customer,
        Method::Post,
        "/",
        Some(call),
    )
    .await
}

/// A call that reads or sends the counter's usage: what this isolate has not reported
/// yet goes first, so its own requests are in what it reads.
fn reads_usage(call: &CounterCall) -> bool {
    matches!(
        call,
        CounterCall::Usage(_)
            | CounterCall::Push
            | CounterCall::PushView
            | CounterCall::Reconcile(_)
            | CounterCall::ClosePeriod
    )
}

/// A call that changes what the counter admits: this isolate's leases for it end now
/// (other isolates' at their window's end, the documented bound).
fn changes_access(call: &CounterCall) -> bool {
    matches!(
        call,
        CounterCall::RevokeKey(_)
            | CounterCall::Credit(_)
            | CounterCall::ClosePeriod
            | CounterCall::CreateCustomer { .. }
    )
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
    let text = match body {
        Some(b) => Some(serde_json::to_string(b).map_err(ApiError::unexpected)?),
        None => None,
    };
    send(env, binding, name, method, path, text).await
}

/// POSTs `body`, JSON text already, to the Durable Object `name` of namespace
/// `binding`.
pub async fn call_object_text(
    env: &Env,
    binding: &str,
    name: &str,
    body: String,
) -> Result<Response, ApiError> {
    send(env, binding, name, Method::Post, "/", Some(body)).await
}

async fn send(
    env: &Env,
    binding: &str,
    name: &str,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Response, ApiError> {
    super::metrics::bump(super::metrics::Metric::ObjectCalls);
    let fail =
        |e: worker::Error| ApiError::internal(format!("{binding} unavailable: {e}")).caused_by(e);
    let stub = env
        .durable_object(binding)
        .and_then(|ns| ns.id_from_name(name)?.get_stub())
        .map_err(fail)?;
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(text) = body {
        init.with_body(Some(JsValue::from_str(&text)));
    }
    let req = Request::new_with_init(&format!("https://object{path}"), &init).map_err(fail)?;
    stub.fetch_with_request(req).await.map_err(fail)
}

/// Records or forgets a resource on its owner's counter, trying twice: without the
/// record its owner cannot reach it, and with a stale one it would look owned.
pub async fn change_owned(env: &Env, counter: &str, change: &OwnedChange) -> bool {
    for _ in 0..crate::limits::OWNERSHIP_TRIES {
        match call(env, counter, &CounterCall::Owned(change.clone())).await {
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
    req: AdmitRequest,
) -> Result<AdmitResponse, ApiError> {
    let resp = call(env, customer, &CounterCall::Admit(req)).await?;
    answer(resp).await
}

/// The counter's answer, read as `T`.
async fn answer<T: serde::de::DeserializeOwned>(mut resp: Response) -> Result<T, ApiError> {
    resp.json()
        .await
        .map_err(|e| ApiError::internal(format!("usage counter answered badly: {e}")).caused_by(e))
}

/// Asks for a lease (or the request decided on its own).
pub async fn lease(env: &Env, customer: &str, ask: LeaseAsk) -> Result<LeaseAnswer, ApiError> {
    // A deadline far inside the lease grace: a grant that comes later than this is not
    // used, so an isolate never admits under a lease the counter may have closed.
    let lease = CounterCall::Lease(ask);
    let resp = within(SETTLE_TRY_MS, call(env, customer, &lease)).await?;
    answer(resp).await
}

/// Sends lease reports in one try, with a deadline; false when they did not land.
pub async fn report(env: &Env, customer: &str, reports: Vec<Report>) -> bool {
    if super::faults::report_fails() {
        return false;
    }
    let report = CounterCall::Report(reports);
    let sent = within(SETTLE_TRY_MS, call(env, customer, &report)).await;
    matches!(sent, Ok(r) if r.status_code() < 300)
}

/// `call` with a deadline.
async fn within(
    ms: u64,
    call: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let timeout = worker::Delay::from(std::time::Duration::from_millis(ms));
    match futures_util::future::select(Box::pin(call), timeout).await {
        futures_util::future::Either::Left((r, _)) => r,
        futures_util::future::Either::Right(_) => Err(ApiError::unavailable("timed out")),
    }
}

/// Settles (or, with no usage, releases) a reservation in at most three tries: a
/// settlement is idempotent on the counter. If every try fails the reservation stays
/// in the counter, which bills its bound when it expires: never zero. Each try carries
/// its own time; the counter puts the usage in the request's period whatever it is.
pub async fn settle(env: &Env, customer: &str, mut req: SettleRequest) -> bool {
    for (i, wait) in SETTLE_BACKOFF_MS.into_iter().enumerate() {
        if i > 0 {
            super::metrics::bump(super::metrics::Metric::SettleRetries);
            worker::Delay::from(std::time::Duration::from_millis(wait)).await;
        }
        req.now_ms = super::clock::now_ms();
        let outcome = match super::faults::settle_fails() {
            true => Err(ApiError::unavailable("test fault: settlement dropped")),
            false => {
                within(
                    SETTLE_TRY_MS,
                    call(env, customer, &CounterCall::Settle(req.clone())),
                )
                .await
            }
        };
        match outcome {
            Ok(r) if r.status_code() < 300 => return true,
            Ok(r) => worker::console_error!(
                "settle {customer}/{}: status {}",
                req.reservation,
                r.status_code()
            ),
            Err(e) => worker::console_error!("settle {customer}/{}: {e}", req.reservation),
        }
    }
    super::metrics::bump(super::metrics::Metric::SettleFailures);
    false
}

/// A running stream's heartbeat; false when its reservation is gone or the call failed.
pub async fn extend(env: &Env, customer: &str, req: &ExtendRequest) -> bool {
    match call(env, customer, &CounterCall::Extend(req.clone())).await {
        Ok(r) if r.status_code() < 300 => true,
        _ => {
            super::metrics::bump(super::metrics::Metric::HeartbeatFailures);
            false
        }
    }
}
