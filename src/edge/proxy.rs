//! The metered proxy, as named phases:
//! authenticate → read body → prepare → admit (reserve) → forward → observe → respond,
//! with settlement after the response (`wait_until`, or at the end of a stream).
//! One Durable Object round trip is on the hot path: admission, which also checks the key.

use super::stream::{Body, MeteredStream, StreamEnd, REPLAY_LIMIT};
use super::upstream::{collect, forward, Upstreamed};
use super::{client, config, http};
use crate::catalog::Catalog;
use crate::counter_state::{cost_of, AdmitAsk, MeterKey};
use crate::error::ApiError;
use crate::keys::{self, Mode};
use crate::pricing::Pricing;
use crate::protocol::{AdmitRequest, AdmitResponse, Replay, SettleRequest, SpendBasis};
use crate::request::{self, Prepared};
use crate::usage::{Metered, Usage};
use rust_decimal::Decimal;
use worker::{Context, Env, Headers, Method, Request, Response};

/// Response headers not copied from upstream: the runtime sets its own framing.
const DROPPED_HEADERS: [&str; 5] = [
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "set-cookie",
];

pub async fn handle(req: Request, env: &Env, ctx: &Context) -> worker::Result<Response> {
    http::respond(proxy(req, env, ctx).await)
}

/// Who is calling, from the key alone (the counter verifies it).
pub struct Caller {
    pub customer: String,
    pub mode: Mode,
    pub key_hash: String,
}

pub fn authenticate(req: &Request) -> Result<Caller, ApiError> {
    let key = http::api_key(req.headers()).ok_or_else(|| {
        ApiError::unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer em_live_...`.",
        )
    })?;
    let parsed =
        keys::parse(&key).ok_or_else(|| ApiError::unauthorized("Incorrect API key provided."))?;
    Ok(Caller {
        customer: parsed.customer.to_string(),
        mode: parsed.mode,
        key_hash: keys::hash(&key),
    })
}

async fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req.headers().get("content-length").ok().flatten();
    if declared
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > limit)
    {
        return Err(ApiError::too_large(limit));
    }
    if matches!(req.method(), Method::Get | Method::Head) {
        return Ok(Vec::new());
    }
    let body = req
        .bytes()
        .await
        .map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?;
    if body.len() > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(body)
}

async fn proxy(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, ApiError> {
    let now_ms = worker::Date::now().as_millis() as i64;
    let caller = authenticate(&req)?;
    let body = read_body(&mut req, config::max_body_bytes(env)).await?;
    let path = req.path();
    let mut prepared = request::prepare(&path, &body)?;
    let catalog = config::catalog(env)?;
    if prepared.meter.by_tokens() && catalog.price(&prepared.model).is_none() {
        return Err(ApiError::unknown_model(&prepared.model));
    }

    let idempotency = req
        .headers()
        .get("idempotency-key")
        .ok()
        .flatten()
        .map(|k| {
            let signed = [req.method().as_ref().as_bytes(), path.as_bytes(), &body].join(&b'\n');
            (k, keys::digest(&signed))
        });
    let admit = AdmitRequest {
        key_hash: caller.key_hash.clone(),
        ask: AdmitAsk {
            meter: prepared.meter.name().to_string(),
            model: prepared.model.clone(),
            input_estimate: prepared.input_estimate,
            input_reserve: prepared.input_reserve,
            output_cap: prepared.output_cap,
        },
        idempotency: idempotency.clone(),
        now_ms,
    };
    let (reservation, cost, output_cap, mut headers) =
        match client::admit(env, &caller.customer, &admit).await? {
            AdmitResponse::Admitted {
                reservation,
                reserved_cost,
                output_cap,
                headers,
                plan,
                spend_basis,
            } => {
                let cost = CostBasis {
                    reserved: reserved_cost,
                    plan,
                    spend: spend_basis,
                };
                (reservation, cost, output_cap, headers)
            }
            AdmitResponse::Replayed { replay } => return replayed(replay),
            AdmitResponse::Rejected {
                status,
                body,
                retry_after_s,
                headers,
            } => {
                return rejected(status, body, retry_after_s, &headers);
            }
        };
    if let Some(cap) = output_cap {
        // The plan's hard limits need a bound on the output: send the reserved amount.
        let current = prepared.upstream_body.as_deref().unwrap_or(&body);
        if let Some(capped) = request::with_output_cap(prepared.meter, current, cap) {
            prepared.upstream_body = Some(capped);
        }
    }
    let ticket = Ticket {
        env: env.clone(),
        customer: caller.customer.clone(),
        reservation,
        keep: idempotency.is_some(),
    };

    let upstream = match forward(&req, env, &path, &body, &prepared, caller.mode, &catalog).await {
        Ok(u) => u,
        Err(e) => {
            ticket.close(None, None).await;
            return Err(e);
        }
    };
    if upstream.status >= 500 {
        ticket.close(None, None).await;
        let status = if upstream.status == 503 { 503 } else { 502 };
        let msg = format!(
            "The upstream provider failed with status {}; nothing was metered. Please retry.",
            upstream.status
        );
        return Err(ApiError::upstream(status, msg));
    }
    for (k, v) in &upstream.headers {
        if !DROPPED_HEADERS.contains(&k.as_str()) && !k.starts_with("x-ratelimit-") {
            headers.push((k.clone(), v.clone()));
        }
    }
    if upstream.status >= 400 {
        // The provider refused the request itself (bad parameters): it costs nothing.
        ticket.close(None, None).await;
        return respond(upstream.status, &headers, Payload::Stream(upstream.body));
    }
    observe(upstream, prepared, ticket, headers, cost, &catalog, ctx).await
}

/// What a request's `x-edgemeter-cost` is worked out from.
struct CostBasis {
    /// The reservation's list price: all a stream's headers can say.
    reserved: String,
    plan: String,
    spend: Option<SpendBasis>,
}

impl CostBasis {
    /// What the request adds to the customer's spend: under a price-book plan, the
    /// change to the invoice's usage charges from the totals at admission.
    fn of(&self, env: &Env, catalog: &Catalog, key: MeterKey, usage: &Usage) -> Decimal {
        let Some(basis) = &self.spend else {
            return cost_of(catalog, &key.1, usage);
        };
        let book = config::price_book(env).ok();
        let pricing = Pricing::for_plan(catalog, book.as_deref(), &self.plan);
        let tallies = basis.tallies.iter().cloned().collect();
        pricing.marginal(basis.period, &tallies, basis.spent, &key, usage)
    }
}

/// Reads usage from the response and arranges settlement, then answers the client.
async fn observe(
    upstream: Upstreamed,
    prepared: Prepared,
    ticket: Ticket,
    mut headers: Vec<(String, String)>,
    cost: CostBasis,
    catalog: &Catalog,
    ctx: &Context,
) -> Result<Response, ApiError> {
    let status = upstream.status;
    let content_type = upstream.content_type.clone();
    let adapter = prepared.meter.adapter();
    if prepared.stream && content_type.starts_with("text/event-stream") {
        let hide = !prepared.client_wants_usage;
        let (stream, done) = MeteredStream::new(
            upstream.body,
            adapter,
            hide,
            prepared.input_estimate,
            ticket.keep,
        );
        ctx.wait_until(async move {
            let end = done.await.unwrap_or(StreamEnd {
                metered: Metered {
                    usage: Usage {
                        input: prepared.input_estimate,
                        ..Usage::default()
                    },
                    estimated: true,
                },
                sent: None,
            });
            let replay = end.sent.and_then(|b| replay_of(status, &content_type, b));
            ticket.close(Some(end.metered), replay).await;
        });
        headers.push(("x-edgemeter-cost".into(), cost.reserved));
        headers.push(("x-edgemeter-cost-basis".into(), "reserved".into()));
        return respond(status, &headers, Payload::Stream(Box::pin(stream)));
    }
    let json = content_type.contains("json");
    if !json && !prepared.meter.by_tokens() {
        // Binary pass-through (audio, files): counted as a request, streamed untouched.
        ticket
            .close(
                Some(Metered {
                    usage: Usage::default(),
                    estimated: false,
                }),
                None,
            )
            .await;
        return respond(status, &headers, Payload::Stream(upstream.body));
    }
    let bytes = collect(upstream.body).await?;
    let metered = match adapter.read_body(&bytes) {
        Some(usage) => Metered {
            usage,
            estimated: false,
        },
        None if prepared.meter.by_tokens() => Metered {
            usage: Usage {
                input: prepared.input_estimate,
                ..Usage::default()
            },
            estimated: true,
        },
        None => Metered {
            usage: Usage::default(),
            estimated: false,
        },
    };
    let key = (prepared.meter.name().to_string(), prepared.model.clone());
    let cost = cost.of(&ticket.env, catalog, key, &metered.usage);
    headers.push(("x-edgemeter-cost".into(), cost.normalize().to_string()));
    headers.push((
        "x-edgemeter-cost-basis".into(),
        if metered.estimated {
            "estimated"
        } else {
            "actual"
        }
        .into(),
    ));
    let replay = if ticket.keep {
        replay_of(status, &content_type, bytes.clone())
    } else {
        None
    };
    ctx.wait_until(async move { ticket.close(Some(metered), replay).await });
    respond(status, &headers, Payload::Bytes(bytes))
}

/// A reserved request, to be settled or released exactly once.
struct Ticket {
    env: Env,
    customer: String,
    reservation: u64,
    /// Whether the response is kept for idempotent replay.
    keep: bool,
}

impl Ticket {
    /// Settles to `metered`, or releases the reservation when it is `None`.
    async fn close(self, metered: Option<Metered>, replay: Option<Replay>) {
        let req = SettleRequest {
            reservation: self.reservation,
            estimated: metered.is_some_and(|m| m.estimated),
            usage: metered.map(|m| m.usage),
            replay,
            now_ms: worker::Date::now().as_millis() as i64,
        };
        client::settle(&self.env, &self.customer, &req).await;
    }
}

fn replay_of(status: u16, content_type: &str, body: Vec<u8>) -> Option<Replay> {
    if body.len() > REPLAY_LIMIT {
        return None;
    }
    let body = String::from_utf8(body).ok()?;
    Some(Replay {
        status,
        content_type: content_type.to_string(),
        body,
    })
}

enum Payload {
    Bytes(Vec<u8>),
    Stream(Body),
}

fn respond(
    status: u16,
    headers: &[(String, String)],
    payload: Payload,
) -> Result<Response, ApiError> {
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, v).map_err(http::internal)?;
    }
    let resp = match payload {
        Payload::Bytes(b) => Response::from_bytes(b),
        Payload::Stream(s) => Response::from_stream(s),
    };
    Ok(resp
        .map_err(http::internal)?
        .with_status(status)
        .with_headers(h))
}

fn replayed(replay: Replay) -> Result<Response, ApiError> {
    let headers = vec![
        ("content-type".to_string(), replay.content_type),
        ("idempotent-replayed".to_string(), "true".to_string()),
        ("x-edgemeter-cost".to_string(), "0".to_string()),
    ];
    respond(
        replay.status,
        &headers,
        Payload::Bytes(replay.body.into_bytes()),
    )
}

fn rejected(
    status: u16,
    body: String,
    retry_after: Option<u64>,
    extra: &[(String, String)],
) -> Result<Response, ApiError> {
    let mut headers = extra.to_vec();
    headers.push(("content-type".into(), "application/json".into()));
    if let Some(s) = retry_after {
        headers.push(("retry-after".into(), s.to_string()));
    }
    respond(status, &headers, Payload::Bytes(body.into_bytes()))
}
