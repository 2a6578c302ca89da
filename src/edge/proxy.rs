//! The metered proxy, as named phases:
//! route → authenticate → read → prepare → admit (reserve) → forward → observe →
//! respond, with settlement after the response (`wait_until`, or at the end of a
//! stream). A request that needs only quota is admitted under the isolate's lease,
//! with no Durable Object call; any other makes one round trip at admission, which
//! also checks the key's revocation state. A forged key is refused before either.

use super::auth::{authenticate, Caller};
use super::http::NamedHeaders;
use super::leases::{self, Leased};
use super::metrics::{bump, Metric};
use super::observe::{observe, CostBasis};
use super::ticket::{not_admitted, Ticket};
use super::upstream::{self, OutBody, Outgoing};
use super::{client, config, http, resources};
use crate::admission::output_cap;
use crate::catalog::{cost_of, Catalog};
use crate::counter_state::reserve_of;
use crate::error::ApiError;
use crate::lease::LeaseAnswer;
use crate::prepare::{idempotency_digest, idempotency_key, prepare, Owns, Ready, Sender};
use crate::protocol::{AdmitRequest, AdmitResponse};
use crate::quota::{rate_headers, Totals};
use crate::request::AdmitAsk;
use crate::request::{self, Meter, Prepared};
use crate::surface::headers::{refused_by_provider, request_names, HeaderPolicy};
use crate::surface::{self, Handling, Routed};
use std::rc::Rc;
use worker::{Context, Env, Method, Request, Response};

pub async fn handle(req: Request, env: &Env, ctx: &Context) -> worker::Result<Response> {
    http::respond(proxy(req, env, ctx).await)
}

/// The route phase: the exact route, or 404 before anything else is read.
pub fn route(req: &Request, env: &Env) -> Result<Routed, ApiError> {
    route_url(req.method().as_ref(), &req.inner().url(), env).inspect_err(|e| {
        if e.status == 404 {
            bump(Metric::RefusedRoutes);
        }
    })
}

/// [`route`] from the method and the URL, counting nothing.
pub(super) fn route_url(method: &str, url: &str, env: &Env) -> Result<Routed, ApiError> {
    let (path, query) = surface::split_url(url);
    let proxy = &config::catalog(env)?.proxy;
    surface::route_with(method, path, query, proxy)
}

async fn proxy(req: Request, env: &Env, ctx: &Context) -> Result<Response, ApiError> {
    let routed = route(&req, env)?;
    let catalog = config::catalog(env)?;
    let headers = read_headers(req.headers(), &catalog, &routed);
    let caller = authenticate(&headers, env)?;
    match &routed.handling {
        Handling::Metered(meter) => {
            let target = routed.upstream_target();
            let asked = Asked {
                caller,
                meter: *meter,
                target,
                headers,
            };
            metered(req, env, ctx, asked, &catalog).await
        }
        Handling::ListModels => {
            http::json_response(&surface::model_list(&catalog), 200).map_err(http::internal)
        }
        Handling::GetModel(id) => {
            let model = surface::model(&catalog, id)?;
            http::json_response(&model, 200).map_err(http::internal)
        }
        _ => resources::handle(req, env, ctx, caller, &headers, routed).await,
    }
}

/// The request headers the routed path needs: the key, the idempotency key, the
/// declared length and the ones the catalog lets through, read in one call.
pub(super) fn read_headers(
    h: &worker::Headers,
    catalog: &Catalog,
    routed: &Routed,
) -> NamedHeaders {
    let policy = HeaderPolicy::for_path(&catalog.proxy, &routed.upstream_path);
    let own = ["idempotency-key", "content-length"];
    let names = http::KEY_HEADERS.into_iter().chain(own);
    NamedHeaders::read(h, names.chain(request_names(&policy)))
}

/// The prepare phase (`crate::prepare::prepare` decides): the body parsed, reduced to
/// the route's allowed fields with per-customer identities, and measured for the
/// reservation.
pub(super) fn prepare_phase(
    env: &Env,
    catalog: &Catalog,
    caller: &Caller,
    meter: Meter,
    body: &[u8],
) -> Result<Ready, ApiError> {
    let secret = config::key_secret(env)?;
    let sender = Sender {
        mode: caller.mode,
        customer: &caller.customer,
        key_secret: &secret,
        anonymous: &caller.anonymous,
    };
    prepare(catalog, &sender, meter, body)
}

/// A metered request as routed and authenticated.
pub(super) struct Asked {
    pub caller: Caller,
    pub meter: Meter,
    /// The canonical upstream path and allowlisted query.
    pub target: String,
    pub headers: NamedHeaders,
}

/// What the read phase gives: the body, and the idempotency key with the digest of
/// what it names.
pub(super) struct Read {
    /// When the request arrived: the period and minute window it is admitted in.
    pub now_ms: i64,
    pub body: Vec<u8>,
    pub idempotency: Option<(String, String)>,
}

/// The read phase: the idempotency key checked, the body read within its cap.
async fn read(req: &mut Request, env: &Env, asked: &Asked) -> Result<Read, ApiError> {
    let now_ms = super::clock::now_ms();
    let header = asked.headers.get("idempotency-key").map(str::to_string);
    let key = idempotency_key(header)?;
    let (limit, declared) = (config::max_body_bytes(env), asked.headers.declared_length());
    let body = http::read_declared(req, limit, declared).await?;
    let target = asked.target.as_str();
    let idempotency = key.map(|k| (k, idempotency_digest(target, &body)));
    Ok(Read {
        now_ms,
        body,
        idempotency,
    })
}

/// What admission gave a request: its reservation, how its cost is reported, and the
/// headers the counter adds. Or the answer to send instead (a replay or a refusal).
pub(super) struct Admitted {
    pub ticket: Ticket,
    pub cost: CostBasis,
    pub headers: Vec<(String, String)>,
}

/// The output cap the plan's limits need, written into the body sent upstream.
fn cap_output(prepared: &mut Prepared, read: &Read, catalog: &Catalog, cap: Option<u64>) {
    if let Some(cap) = cap {
        let chat_cap = catalog.proxy.chat_cap();
        let current = prepared.upstream_body.as_deref().unwrap_or(&read.body);
        if let Some(capped) = request::with_output_cap(prepared.meter, current, cap, chat_cap) {
            prepared.upstream_body = Some(capped);
        }
    }
}

/// Admitted under the isolate's lease: no counter call. Its report goes out soon.
pub(super) fn admitted_locally(
    env: &Env,
    ctx: &Context,
    leased: Leased,
    ask: &AdmitAsk,
    prepared: &mut Prepared,
    read: &Read,
    catalog: &Catalog,
) -> Result<Admitted, ApiError> {
    let a = &leased.admission;
    let plan = catalog
        .plan(&a.plan)
        .ok_or_else(|| ApiError::internal(format!("plan `{}` is not in the catalog", a.plan)))?;
    cap_output(prepared, read, catalog, output_cap(plan, ask));
    let reserved = reserve_of(plan, ask);
    let minute = Totals {
        minute_requests: a.minute.0,
        minute_tokens: a.minute.1,
        ..Totals::default()
    };
    let headers = rate_headers(plan, &minute, read.now_ms);
    let headers = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let cost = CostBasis {
        reserved: cost_of(catalog, &ask.model, &reserved, 1)
            .normalize()
            .to_string(),
        plan: a.plan.clone(),
        spend: None,
    };
    leases::reported_soon(ctx, env, a);
    let ticket = Ticket {
        env: env.clone(),
        counter: a.counter.clone(),
        reservation: 0,
        keep: false,
        stored_response: None,
        reserved,
        leased: Some(Rc::new(leased)),
    };
    Ok(Admitted {
        ticket,
        cost,
        headers,
    })
}

/// The admit phase. A request that needs nothing of the counter but quota is admitted
/// under the isolate's lease, asking for one when it has none; otherwise (or when the
/// counter grants none) one counter round trip reserves the request's bound, refuses
/// it, or replays a kept answer. Either way the output is capped as the plan needs.
async fn admit(
    env: &Env,
    ctx: &Context,
    caller: &Caller,
    prepared: &mut Prepared,
    (owns, stores): (Owns, bool),
    read: &Read,
    catalog: &Catalog,
) -> Result<Result<Admitted, Response>, ApiError> {
    let ask = prepared.ask();
    let now = read.now_ms;
    let leasable = read.idempotency.is_none() && owns.is_empty() && !stores;
    let mut answer = None;
    if leasable {
        if let Some(l) = leases::admit(caller, catalog, &ask, now) {
            return admitted_locally(env, ctx, l, &ask, prepared, read, catalog).map(Ok);
        }
        if let LeaseAnswer::Alone { admit } =
            leases::ask(env, ctx, caller, ask.clone(), now).await?
        {
            answer = Some(admit);
        } else if let Some(l) = leases::admit(caller, catalog, &ask, now) {
            return admitted_locally(env, ctx, l, &ask, prepared, read, catalog).map(Ok);
        }
    }
    let answer = match answer {
        Some(answer) => answer,
        None => {
            let req = AdmitRequest {
                key_hash: caller.key_hash.clone(),
                ask,
                idempotency: read.idempotency.clone(),
                owns,
                now_ms: now,
            };
            client::admit(env, &caller.counter, req).await?
        }
    };
    let AdmitResponse::Admitted {
        reservation,
        reserved_cost,
        output_cap,
        headers,
        plan,
        spend_basis,
        reserved,
    } = answer
    else {
        return not_admitted(answer).map(Err);
    };
    cap_output(prepared, read, catalog, output_cap);
    let ticket = Ticket {
        env: env.clone(),
        counter: caller.counter.clone(),
        reservation,
        keep: read.idempotency.is_some(),
        stored_response: None,
        reserved,
        leased: None,
    };
    let cost = CostBasis {
        reserved: reserved_cost,
        plan,
        spend: spend_basis,
    };
    Ok(Ok(Admitted {
        ticket,
        cost,
        headers,
    }))
}

/// The forward phase: the request goes to the provider (test keys to the sandbox);
/// a failure or a refusal by the provider releases the reservation, costing nothing.
async fn forward(
    env: &Env,
    asked: &Asked,
    prepared: &Prepared,
    ticket: Ticket,
    catalog: &Catalog,
) -> Result<(upstream::Upstreamed, Ticket), ApiError> {
    let (caller, target) = (&asked.caller, asked.target.clone());
    // A stream can be cancelled once its client left and its drain budget is spent.
    let cancel = prepared.stream.then(worker::AbortController::default);
    // Resolved once: whether the sandbox answers depends on it, and the send uses it.
    let provider = config::upstream(env, target.split('?').next().unwrap_or(""));
    let sandboxed = crate::limits::sandboxed(caller.mode, provider.is_some());
    let sent = match provider.filter(|_| !sandboxed) {
        None => upstream::sandbox(prepared),
        Some(provider) => {
            let out = Outgoing {
                method: Method::Post,
                target,
                body: prepared
                    .upstream_body
                    .as_deref()
                    .map_or(OutBody::Empty, OutBody::Bytes),
                client_headers: asked.headers.pairs().to_vec(),
                signal: cancel.as_ref().map(|c| c.signal()),
            };
            upstream::send_to(&provider, catalog, out).await
        }
    };
    let mut upstream = match sent {
        Ok(u) => u,
        Err(e) => {
            ticket.close(None, None).await;
            return Err(e);
        }
    };
    if refused_by_provider(upstream.status) {
        // The provider refused the request itself: it costs nothing.
        ticket.close(None, None).await;
        return Err(upstream::refused(upstream).await);
    }
    upstream.cancel = cancel;
    Ok((upstream, ticket))
}

/// A metered request, phase by phase: read → prepare → admit → forward → observe (which
/// responds, and settles when the usage is known).
async fn metered(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    asked: Asked,
    catalog: &Catalog,
) -> Result<Response, ApiError> {
    let read = read(&mut req, env, &asked).await?;
    let Ready {
        mut prepared,
        owns,
        stores,
    } = prepare_phase(env, catalog, &asked.caller, asked.meter, &read.body)?;
    let admission = admit(
        env,
        ctx,
        &asked.caller,
        &mut prepared,
        (owns, stores),
        &read,
        catalog,
    );
    let admitted = match admission.await? {
        Ok(admitted) => admitted,
        Err(answer) => return Ok(answer),
    };
    let Admitted {
        ticket,
        cost,
        mut headers,
    } = admitted;
    let forwarded = forward(env, &asked, &prepared, ticket, catalog);
    let (upstream, ticket) = forwarded.await?;
    headers.extend(upstream.headers.iter().cloned());
    observe(
        upstream, prepared, ticket, headers, cost, stores, catalog, ctx,
    )
    .await
}
