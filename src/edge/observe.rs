//! The observe and respond phases: usage is read from the provider's answer (streamed
//! or buffered under a cap), a stored response is recorded for its owner before the
//! client can learn its id, and settlement is arranged.

use super::stream::{channel, client_body, Body, Heartbeat, Pump, StreamEnd};
use super::ticket::{respond, Payload, Ticket};
use super::upstream::{Answer, Upstreamed};
use super::{client, config};
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::pricing::{request_cost, Pricing};
use crate::protocol::{OwnedChange, Replay, SpendBasis};
use crate::request::Prepared;
use crate::stream_meter::StreamMeter;
use crate::surface::owned::{CreatedPeek, OwnedResource, Peeked};
use crate::surface::ResourceKind;
use crate::tally::MeterKey;
use crate::usage::{cost_basis, settle_buffered, Metered, Usage};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use worker::web_sys::ReadableStream;
use worker::{AbortController, Context, Env, Response};

/// What a request's `x-edgemeter-cost` is worked out from.
pub struct CostBasis {
    /// The reservation's price: all a stream's headers can say.
    pub reserved: String,
    pub plan: String,
    pub spend: Option<SpendBasis>,
}

impl CostBasis {
    /// What the request adds to the customer's spend: under a price-book plan, the
    /// change to the invoice's usage charges from the totals at admission.
    fn of(&self, env: &Env, catalog: &Catalog, key: MeterKey, usage: &Usage) -> Decimal {
        let Some(basis) = &self.spend else {
            return request_cost(&Pricing::List(catalog), None, &key, usage);
        };
        let book = config::price_book(env).ok();
        let pricing = Pricing::for_plan(catalog, book.as_deref(), &self.plan);
        let tallies = basis.tallies.iter().cloned().collect();
        let at_admission = Some((basis.period, &tallies, basis.spent));
        request_cost(&pricing, at_admission, &key, usage)
    }
}

/// Records a resource for the ticket's customer, before the client sees its id.
async fn record(ticket: &mut Ticket, resource: OwnedResource) {
    let id = resource.id.clone();
    let change = OwnedChange::Add(resource);
    // Not recorded, the response is still answered and metered (its tokens were spent);
    // only its owner cannot read it back, and no other customer can either.
    if client::change_owned(&ticket.env, &ticket.counter, &change).await {
        ticket.stored_response = Some(id);
    }
}

/// Reads a Responses stream up to its `response.created` event, and gives back what
/// it read with the id it found.
async fn peek_created(body: &mut Body) -> (Vec<Vec<u8>>, Option<String>) {
    let (mut peek, mut seen) = (CreatedPeek::default(), Vec::new());
    while let Some(Ok(chunk)) = body.next().await {
        let peeked = peek.push(&chunk);
        seen.push(chunk);
        match peeked {
            Peeked::Found(id) => return (seen, Some(id)),
            Peeked::GiveUp => return (seen, None),
            Peeked::More => {}
        }
    }
    (seen, None)
}

/// Reads usage from the response and arranges settlement, then answers the client.
#[allow(clippy::too_many_arguments)]
pub async fn observe(
    mut upstream: Upstreamed,
    prepared: Prepared,
    mut ticket: Ticket,
    headers: Vec<(String, String)>,
    cost: CostBasis,
    stores: bool,
    catalog: &Catalog,
    ctx: &Context,
) -> Result<Response, ApiError> {
    let status = upstream.status;
    let content_type = upstream.content_type.clone();
    let adapter = prepared.meter.adapter();
    if prepared.stream && content_type.starts_with("text/event-stream") {
        let answer = std::mem::replace(
            &mut upstream.body,
            Answer::Chunks(Box::pin(futures_util::stream::empty())),
        );
        let cancel = upstream.cancel.take();
        // The provider's own stream takes the stream pump's fast path; a peeked or
        // sandboxed one is pumped through the channel.
        let source = match &answer {
            Answer::Web(resp, _) if !stores => resp.body(),
            _ => None,
        };
        let head = Head {
            status,
            content_type,
            headers,
            cost,
        };
        if let Some(source) = source {
            let tapped = tap_phase(&source, head, cancel, &prepared, ticket, ctx);
            return respond(tapped.status, &tapped.headers, Payload::Web(tapped.body));
        }
        let mut body = answer.into_stream();
        if stores {
            let (seen, id) = peek_created(&mut body).await;
            let now_ms = super::clock::now_ms();
            if let Some(r) = id.and_then(|id| OwnedResource::response(&id, now_ms)) {
                record(&mut ticket, r).await;
            }
            let seen = futures_util::stream::iter(seen.into_iter().map(Ok));
            body = Box::pin(seen.chain(body));
        }
        let mut pump = pump_of(&prepared, &ticket, cancel);
        pump.upstream = body;
        let (tx, rx) = channel();
        let task = Box::pin(pump.run(tx));
        return respond_streamed(head, Payload::Stream(client_body(rx)), task, ticket, ctx);
    }
    let limit = config::max_response_bytes(&ticket.env);
    let collected = upstream.body.collect(limit).await;
    let body = collected.as_ref().ok().map(Vec::as_slice);
    let metered = settle_buffered(&*adapter, body, prepared.input_estimate, ticket.reserved);
    let bytes = match collected {
        Ok(b) => b,
        Err(e) => {
            // The provider did the work but its answer cannot be read: billed the bound.
            ticket.close(Some(metered), None).await;
            return Err(e);
        }
    };
    if stores {
        let now_ms = super::clock::now_ms();
        if let Some(r) = OwnedResource::created(ResourceKind::Response, &bytes, now_ms) {
            record(&mut ticket, r).await;
        }
    }
    let answer = Buffered {
        status,
        content_type: &content_type,
        bytes,
        metered,
    };
    let reply = respond_buffered(answer, &prepared, ticket, headers, cost, catalog, ctx);
    respond(reply.status, &reply.headers, Payload::Bytes(reply.bytes))
}

/// A streamed answer's status and headers, and what its cost header is worked out from.
pub struct Head {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub cost: CostBasis,
}

/// The pump that meters a stream for `ticket`, cancelling its fetch with `cancel`.
fn pump_of(prepared: &Prepared, ticket: &Ticket, cancel: Option<AbortController>) -> Pump {
    let adapter = prepared.meter.adapter();
    let hide = !prepared.client_wants_usage;
    let meter = StreamMeter::new(adapter, hide, prepared.input_estimate, ticket.keep);
    Pump {
        upstream: Box::pin(futures_util::stream::empty()),
        meter: Rc::new(RefCell::new(meter)),
        budget: config::drain_budget(&ticket.env),
        cancel,
        heartbeat: Heartbeat {
            env: ticket.env.clone(),
            counter: ticket.counter.clone(),
            reservation: ticket.reservation,
            leased: ticket.leased.clone(),
        },
        reserved: ticket.reserved,
    }
}

/// A stream on the pump's fast path, its settlement already handed to `wait_until`:
/// what the response is to carry.
pub struct Tapped {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReadableStream,
}

/// The respond phase of the provider's own stream: starts the pump's fast path on
/// `source`, metering it as it passes, and settles when it ends.
pub fn tap_phase(
    source: &ReadableStream,
    head: Head,
    cancel: Option<AbortController>,
    prepared: &Prepared,
    ticket: Ticket,
    ctx: &Context,
) -> Tapped {
    let (body, task) = pump_of(prepared, &ticket, cancel).tapped(source);
    let (status, headers) = settle_streamed(head, Box::pin(task), ticket, ctx);
    Tapped {
        status,
        headers,
        body,
    }
}

/// Answers with a stream whose `task` meters it; settles when the task ends.
fn respond_streamed(
    head: Head,
    payload: Payload,
    task: Pin<Box<dyn Future<Output = StreamEnd>>>,
    ticket: Ticket,
    ctx: &Context,
) -> Result<Response, ApiError> {
    let (status, headers) = settle_streamed(head, task, ticket, ctx);
    respond(status, &headers, payload)
}

/// Hands the settlement after `task` to `wait_until`: the status and headers to send.
fn settle_streamed(
    head: Head,
    task: Pin<Box<dyn Future<Output = StreamEnd>>>,
    ticket: Ticket,
    ctx: &Context,
) -> (u16, Vec<(String, String)>) {
    let Head {
        status,
        content_type,
        mut headers,
        cost,
    } = head;
    ctx.wait_until(async move {
        let end = task.await;
        let sent = end.sent.as_deref();
        let replay = sent.and_then(|b| Replay::keep(ticket.keep, status, &content_type, b));
        ticket.close(Some(end.metered), replay).await;
    });
    headers.push(("x-edgemeter-cost".into(), cost.reserved));
    headers.push(("x-edgemeter-cost-basis".into(), "reserved".into()));
    (status, headers)
}

/// A non-streamed answer, read whole, and the usage read from it.
pub struct Buffered<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub bytes: Vec<u8>,
    pub metered: Metered,
}

/// A buffered answer as it is to be sent.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub bytes: Vec<u8>,
}

/// The respond phase of a buffered answer: its cost in the headers, its settlement
/// after the response.
pub fn respond_buffered(
    answer: Buffered,
    prepared: &Prepared,
    ticket: Ticket,
    mut headers: Vec<(String, String)>,
    cost: CostBasis,
    catalog: &Catalog,
    ctx: &Context,
) -> Reply {
    let Buffered {
        status,
        content_type,
        bytes,
        metered,
    } = answer;
    let key = (prepared.meter.name().to_string(), prepared.model.clone());
    let cost = cost.of(&ticket.env, catalog, key, &metered.usage);
    headers.push(("x-edgemeter-cost".into(), cost.normalize().to_string()));
    headers.push(("x-edgemeter-cost-basis".into(), cost_basis(&metered).into()));
    let replay = Replay::keep(ticket.keep, status, content_type, &bytes);
    ticket.close_after(ctx, Some(metered), replay);
    Reply {
        status,
        headers,
        bytes,
    }
}
