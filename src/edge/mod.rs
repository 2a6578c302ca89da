//! The Workers glue: entry points and routing. Each handler is thin and delegates to
//! the pure core.

mod admin;
mod auth;
mod client;
mod clock;
mod config;
mod counter;
mod counter_admit;
mod counter_alarm;
mod counter_expiry;
mod counter_keys;
mod counter_lease;
mod counter_push;
mod counter_resources;
mod counter_store;
mod counter_store_access;
mod counter_store_reservations;
mod delivery;
mod fast;
mod fast_js;
mod faults;
mod flush_shard;
mod flush_shard_dead;
mod flush_shard_reconcile;
mod flush_shard_run;
mod flush_shard_store;
mod http;
mod invoice_numbers;
mod js_headers;
mod leases;
mod ledger;
mod ledger_account;
mod ledger_final;
mod ledger_grants;
mod ledger_rated;
mod ledger_reconcile;
mod ledger_store;
mod metrics;
mod observe;
mod outbox_store;
mod params;
mod proxy;
mod rating_api;
mod resources;
mod signing;
mod sql;
mod stream;
mod stream_tap;
mod ticket;
mod upstream;

use crate::error::ApiError;
use crate::protocol::CounterCall;
use worker::{
    event, Context, Env, Method, Request, Response, Result, ScheduleContext, ScheduledEvent,
};

#[event(fetch, respond_with_errors)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let path = req.path();
    if let Err(e) = clock::guard(&req, &env) {
        return http::error_response(&e, &[]);
    }
    match path.as_str() {
        "/v1/usage" => usage(req, &env).await,
        p if p.starts_with("/v1/") => proxy::handle(req, &env, &ctx).await,
        p if p.starts_with("/admin/v1/") => admin::handle(req, &env).await,
        p if p.starts_with("/rating/v1/") => rating_api::handle(req, &env).await,
        "/healthz" => health(&env),
        "/bare/v1/chat/completions" => bare(req, &env).await,
        _ => http::error_response(&ApiError::not_found(format!("Unknown path {path}.")), &[]),
    }
}

/// `GET /healthz`: ok, or 503 with every setting combination that cannot work.
fn health(env: &Env) -> Result<Response> {
    use crate::settings_check::{problems, Stage};
    let catalog = config::catalog(env).ok();
    let book = config::price_book(env).ok();
    let bundled = (catalog.as_deref(), book.as_deref());
    let found = problems(|name| config::setting(env, name), Stage::Running, bundled);
    if found.is_empty() {
        return Response::ok("ok");
    }
    let body = serde_json::json!({"status": "unhealthy", "problems": found});
    Ok(Response::from_json(&body)?.with_status(503))
}

/// The cron trigger: every registry shard sends the records its counters pushed.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    for (shard, result) in flush_shard::run_all(&env).await.iter().enumerate() {
        if result.get("error").is_some_and(|e| !e.is_null()) {
            worker::console_error!("flush shard {shard}: {result}");
        }
    }
}

/// `GET /v1/usage`: the caller's own current-period usage, remaining quota and cost.
async fn usage(req: Request, env: &Env) -> Result<Response> {
    let result = async {
        if req.method() != Method::Get {
            return Err(ApiError::bad_request(
                "method_not_allowed",
                "Use GET /v1/usage.",
            ));
        }
        let headers = http::NamedHeaders::read(req.headers(), http::KEY_HEADERS);
        let caller = auth::authenticate(&headers, env)?;
        let hash = Some(caller.key_hash);
        client::call(env, &caller.counter, &CounterCall::Usage(hash)).await
    };
    http::respond(result.await)
}

/// An unmetered pass-through to the upstream, for benchmarks only: it is enabled by the
/// `BENCH_BARE_ROUTE` setting so production never exposes an unmetered path.
async fn bare(mut req: Request, env: &Env) -> Result<Response> {
    let enabled = config::setting(env, "BENCH_BARE_ROUTE").is_some_and(|v| v == "1");
    let upstream = config::upstream(env, "/v1/chat/completions");
    let (true, Some(upstream)) = (enabled, upstream) else {
        return http::error_response(&ApiError::not_found("Unknown path."), &[]);
    };
    // The same glue as the metered path's: the body read into the wasm, sent with the
    // runtime's fetch, the answer handed back as it came.
    let body = req.bytes().await?;
    let init = worker::web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&worker::js_sys::Uint8Array::from(body.as_slice()));
    let url = format!("{}/v1/chat/completions", upstream.base_url);
    match upstream::fetch(&url, &init).await {
        Ok(answer) => Ok(Response::from(answer)),
        Err(e) => http::error_response(&e, &[]),
    }
}
