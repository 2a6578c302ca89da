//! The metered proxy's common case, driven by the Worker's JavaScript entry
//! (`src/entry.mjs`): a request admitted under the isolate's quota lease.
//! The entry does the I/O (the body, the provider's fetch, its answer) with the
//! runtime's own awaits, and calls in here between them, synchronously, for every
//! decision; these are the proxy's own phases (route, authenticate, prepare, admit,
//! observe, respond). Each await a Rust future makes costs a promise, two closures
//! and a microtask round through wasm-bindgen, which made up much of what metering
//! cost per request.
//!
//! Anything else is declined before the upstream is asked, and the Worker's fetch
//! handler takes the request from the start: no lease to admit under, an idempotency
//! key, a stored resource, a test key, a key this isolate has not checked yet, or any
//! error (which that handler then answers).

use super::auth::verified;
use super::fast_js::{fetch_plan, reply_of, stream_reply};
use super::js_headers::lines_of;
use super::leases;
use super::metrics::{bump, Metric};
use super::observe::{observe, respond_buffered, tap_phase, Buffered, Head};
use super::proxy::{self, admitted_locally, prepare_phase, Admitted, Asked, Read};
use super::ticket::Ticket;
use super::upstream::Answer;
use super::{clock, config, http, upstream};
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::request::Prepared;
use crate::surface::headers::{refused_by_provider, too_large_answer};
use crate::surface::Handling;
use crate::usage::settle_buffered;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use worker::wasm_bindgen_futures::future_to_promise;
use worker::{web_sys, AbortController, Context, Env};

/// A request between two calls from the entry.
enum Pending {
    /// Routed and authenticated; its body is being read.
    Routed(Box<Asked>),
    /// Admitted and sent upstream.
    Sent(Box<InFlight>),
}

struct InFlight {
    prepared: Prepared,
    admitted: Admitted,
    limit: usize,
    /// A stream's: cancels its fetch once its client left and its drain budget is spent.
    cancel: Option<AbortController>,
}

struct Entry {
    /// When the entry was kept (wall clock), to forget requests the runtime dropped.
    kept_ms: i64,
    env: Env,
    ctx: Context,
    catalog: Rc<Catalog>,
    pending: Pending,
}

thread_local! {
    static PENDING: RefCell<(u32, HashMap<u32, Entry>)> = RefCell::new((0, HashMap::new()));
}

/// Requests this many at once in one isolate are far past any real load; past it,
/// entries older than [`ABANDONED_MS`] are forgotten.
const CROWDED: usize = 1024;
/// Older than any request the runtime still runs: it dropped them (its client left).
/// A dropped request's lease admission is accounted for as the fetch handler's is
/// when its future is dropped: the lease's report holds it open until the counter
/// closes the lease.
const ABANDONED_MS: i64 = 15 * 60_000;

fn keep(entry: Entry) -> u32 {
    PENDING.with(|p| {
        let (next, map) = &mut *p.borrow_mut();
        if map.len() >= CROWDED {
            let now = entry.kept_ms;
            map.retain(|_, e| now - e.kept_ms < ABANDONED_MS);
        }
        *next = next.checked_add(1).unwrap_or(1);
        map.insert(*next, entry);
        *next
    })
}

fn take(id: u32) -> Option<Entry> {
    PENDING.with(|p| p.borrow_mut().1.remove(&id))
}

/// The request `id` names, sent upstream: its context, catalog and state.
fn take_sent(id: u32) -> Result<(Context, Rc<Catalog>, InFlight), ApiError> {
    let entry = take(id).ok_or_else(|| ApiError::internal("no request in flight with this id"))?;
    match entry.pending {
        Pending::Sent(flight) => Ok((entry.ctx, entry.catalog, *flight)),
        Pending::Routed(_) => Err(ApiError::internal("the request was never sent")),
    }
}

/// The response a reply's JavaScript builds (`make`) from its header lines; headers
/// that cannot cross, or that the runtime refuses, are an internal error.
fn built(
    headers: &[(String, String)],
    make: impl FnOnce(&str) -> Result<web_sys::Response, JsValue>,
) -> web_sys::Response {
    match lines_of(headers)
        .map_err(JsValue::from)
        .and_then(|l| make(&l))
    {
        Ok(r) => r,
        Err(e) => web_response(Err(http::internal(worker::Error::from(e)))),
    }
}

/// The entry point's side of the common case. Its methods are static: a request is
/// named by the id [`MeteredFast::route`] gives.
#[wasm_bindgen]
pub struct MeteredFast;

#[wasm_bindgen]
impl MeteredFast {
    /// The route and authenticate phases of a `POST`: an id when the request may take
    /// the common case, 0 when the fetch handler is to take it.
    pub fn route(
        env: Env,
        ctx: worker::worker_sys::Context,
        url: &str,
        h: web_sys::Headers,
    ) -> u32 {
        let asked = (|| {
            clock::guard_url(url, &env).ok()?;
            let routed = proxy::route_url("POST", url, &env).ok()?;
            let Handling::Metered(meter) = routed.handling else {
                return None;
            };
            let catalog = config::catalog(&env).ok()?;
            let headers = proxy::read_headers(&worker::Headers(h), &catalog, &routed);
            let within = headers.declared_length()? <= config::max_body_bytes(&env);
            if !within || headers.get("idempotency-key").is_some() {
                return None;
            }
            let caller = verified(&headers)?;
            let target = routed.upstream_target();
            let asked = Asked {
                caller,
                meter,
                target,
                headers,
            };
            Some((asked, catalog))
        })();
        let Some((asked, catalog)) = asked else {
            return 0;
        };
        let ctx = Context::new(ctx);
        let pending = Pending::Routed(Box::new(asked));
        keep(Entry {
            kept_ms: clock::wall_ms(),
            env,
            ctx,
            catalog,
            pending,
        })
    }

    /// The prepare and admit phases: what to fetch upstream (`{url, init, limit, stream}`),
    /// `undefined` when the fetch handler is to take the request after all, or the
    /// answer itself.
    pub fn begin(id: u32, body: Vec<u8>) -> JsValue {
        let Some(mut entry) = take(id) else {
            return JsValue::UNDEFINED;
        };
        let Pending::Routed(asked) = entry.pending else {
            return JsValue::UNDEFINED;
        };
        let (env, ctx, catalog) = (&entry.env, &entry.ctx, &*entry.catalog);
        let read = Read {
            now_ms: clock::now_ms(),
            body,
            idempotency: None,
        };
        let caller = &asked.caller;
        let Ok(ready) = prepare_phase(env, catalog, caller, asked.meter, &read.body) else {
            return JsValue::UNDEFINED;
        };
        let mut prepared = ready.prepared;
        let path = asked.target.split('?').next().unwrap_or("");
        let provider = config::upstream(env, path);
        let sandboxed = crate::limits::sandboxed(caller.mode, provider.is_some());
        let plain = ready.owns.is_empty() && !ready.stores;
        let Some(provider) = provider.filter(|_| plain && !sandboxed) else {
            return JsValue::UNDEFINED;
        };
        let ask = prepared.ask();
        let Some(leased) = leases::admit(caller, catalog, &ask, read.now_ms) else {
            return JsValue::UNDEFINED;
        };
        let local = admitted_locally(env, ctx, leased, &ask, &mut prepared, &read, catalog);
        let admitted = match local {
            Ok(a) => a,
            Err(e) => return web(Err(e)),
        };
        bump(Metric::FastPath);
        let client = asked.headers.pairs().to_vec();
        let (url, headers) = upstream::outgoing(&provider, catalog, &asked.target, client);
        let lines = match lines_of(&headers) {
            Ok(lines) => lines,
            Err(e) => {
                admitted.ticket.close_after(ctx, None, None);
                return web(Err(http::internal(e)));
            }
        };
        let limit = config::max_response_bytes(env);
        let body = prepared.upstream_body.as_deref().unwrap_or(&read.body);
        let cancel = prepared.stream.then(AbortController::default);
        let signal = cancel.as_ref().map(|c| c.signal());
        let signal = signal.as_deref();
        let plan = match fetch_plan(&url, &lines, body, limit, signal) {
            Ok(plan) => plan,
            Err(e) => {
                // As the fetch handler answers a request it cannot build.
                admitted.ticket.close_after(ctx, None, None);
                return web(Err(upstream::fail(worker::Error::from(e))));
            }
        };
        entry.pending = Pending::Sent(Box::new(InFlight {
            prepared,
            admitted,
            limit,
            cancel,
        }));
        PENDING.with(|p| p.borrow_mut().1.insert(id, entry));
        plan
    }

    /// The observe and respond phases, from the provider's answer: `resp` is `None`
    /// when the fetch failed (`failure` says why), and `bytes` its body, `None` when
    /// it passed the limit or broke off (then `failure` says how).
    pub fn finish(
        id: u32,
        resp: Option<web_sys::Response>,
        bytes: Option<Vec<u8>>,
        failure: Option<String>,
    ) -> web_sys::Response {
        let (ctx, catalog, flight) = match take_sent(id) {
            Ok(sent) => sent,
            Err(e) => return web_response(Err(e)),
        };
        let InFlight {
            prepared,
            admitted,
            limit,
            cancel: _,
        } = flight;
        let Admitted {
            ticket,
            cost,
            mut headers,
        } = admitted;
        let (ctx, catalog) = (&ctx, &*catalog);
        let up = match resp.ok_or(failure.clone()).map(upstream::upstreamed) {
            Err(why) => {
                ticket.close_after(ctx, None, None);
                let msg = format!(
                    "The upstream provider could not be reached: {}",
                    why.unwrap_or_default()
                );
                return web_response(Err(ApiError::upstream(502, msg)));
            }
            Ok(Err(e)) => {
                ticket.close_after(ctx, None, None);
                return web_response(Err(e));
            }
            Ok(Ok(up)) => up,
        };
        if refused_by_provider(up.status) {
            // The provider refused the request itself: it costs nothing.
            ticket.close_after(ctx, None, None);
            let body = bytes.unwrap_or_default();
            let e = upstream::refused_with(up.status, up.retry_after.as_deref(), &body);
            return web_response(Err(e));
        }
        let adapter = prepared.meter.adapter();
        let estimate = prepared.input_estimate;
        let metered = settle_buffered(&*adapter, bytes.as_deref(), estimate, ticket.reserved);
        let Some(bytes) = bytes else {
            // The provider did the work but its answer cannot be read: billed the bound.
            ticket.close_after(ctx, Some(metered), None);
            let e = match failure {
                Some(why) => {
                    ApiError::upstream(502, format!("The upstream response broke off: {why}"))
                }
                None => {
                    bump(Metric::ResponseCapHits);
                    too_large_answer(limit)
                }
            };
            return web_response(Err(e));
        };
        headers.extend(up.headers.iter().cloned());
        let answer = Buffered {
            status: up.status,
            content_type: &up.content_type,
            bytes,
            metered,
        };
        let reply = respond_buffered(answer, &prepared, ticket, headers, cost, catalog, ctx);
        built(&reply.headers, |l| reply_of(reply.status, l, &reply.bytes))
    }

    /// The observe and respond phases of a stream, from the provider's answer with its
    /// body unread: the response (the provider's own stream, metered as it passes), or
    /// a promise of it when the answer is not a stream (the fetch handler's phases read
    /// it then, as they would have).
    pub fn stream(id: u32, resp: web_sys::Response) -> JsValue {
        let (ctx, catalog, flight) = match take_sent(id) {
            Ok(sent) => sent,
            Err(e) => return web(Err(e)),
        };
        let InFlight {
            prepared,
            admitted,
            cancel,
            ..
        } = flight;
        let Admitted {
            ticket,
            cost,
            mut headers,
        } = admitted;
        let mut up = match upstream::upstreamed(resp) {
            Ok(up) => up,
            Err(e) => {
                ticket.close_after(&ctx, None, None);
                return web(Err(e));
            }
        };
        let sse = up.content_type.starts_with("text/event-stream");
        let source = match &up.body {
            Answer::Web(resp, _) if sse && !refused_by_provider(up.status) => resp.body(),
            _ => None,
        };
        headers.extend(up.headers.iter().cloned());
        if let Some(source) = source {
            let head = Head {
                status: up.status,
                content_type: up.content_type.clone(),
                headers,
                cost,
            };
            let tapped = tap_phase(&source, head, cancel, &prepared, ticket, &ctx);
            return built(&tapped.headers, |l| {
                stream_reply(tapped.status, l, &tapped.body)
            })
            .into();
        }
        // Refused by the provider, or not a stream after all: read as the fetch
        // handler reads it.
        up.cancel = cancel;
        let answered = async move {
            if refused_by_provider(up.status) {
                ticket.close(None, None).await;
                return Ok(web(Err(upstream::refused(up).await)));
            }
            let observed = observe(up, prepared, ticket, headers, cost, false, &catalog, &ctx);
            Ok(web(observed.await))
        };
        future_to_promise(answered).into()
    }

    /// Forgets a request the entry gave up on (its client left while its body was
    /// read): one already admitted is released.
    pub fn forget(id: u32) {
        let Some(entry) = take(id) else { return };
        if let Pending::Sent(flight) = entry.pending {
            let ticket: Ticket = flight.admitted.ticket;
            ticket.close_after(&entry.ctx, None, None);
        }
    }
}

fn web_response(result: Result<worker::Response, ApiError>) -> web_sys::Response {
    let resp = http::respond(result).map(web_sys::Response::from);
    resp.unwrap_or_else(|_| web_sys::Response::new_with_opt_str(None).expect("an empty response"))
}

fn web(result: Result<worker::Response, ApiError>) -> JsValue {
    web_response(result).into()
}
