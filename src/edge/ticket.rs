//! The admit phase and its ticket: one counter call authenticates the key's revocation
//! state, checks ownership of a named resource, and reserves; the ticket then settles or
//! releases that reservation exactly once.

use super::http;
use super::leases::Leased;
use super::stream::Body;
use crate::error::ApiError;
use crate::protocol::{AdmitResponse, Replay, SettleRequest};
use crate::usage::{Metered, Usage};
use std::rc::Rc;
use worker::{Context, Env, Response};

/// A reserved request, to be settled or released exactly once.
pub struct Ticket {
    pub env: Env,
    /// The counter's name (the customer's, per mode).
    pub counter: String,
    pub reservation: u64,
    /// Whether the response is kept for idempotent replay.
    pub keep: bool,
    /// The stored response this request created, if any.
    pub stored_response: Option<String>,
    /// The usage reserved: what is billed when the provider's answer cannot be read.
    pub reserved: Usage,
    /// Admitted under the isolate's lease instead of a reservation.
    pub leased: Option<Rc<Leased>>,
}

impl Ticket {
    /// Settles to `metered`, or releases the reservation when it is `None`.
    pub async fn close(self, metered: Option<Metered>, replay: Option<Replay>) {
        if let Some(leased) = &self.leased {
            if let Some(report) = super::leases::finish(&self.env, leased, metered) {
                report.await;
            }
            return;
        }
        let req = SettleRequest {
            reservation: self.reservation,
            estimated: metered.is_some_and(|m| m.estimated),
            usage: metered.map(|m| m.usage),
            replay,
            stored_response: self.stored_response,
            now_ms: super::clock::now_ms(),
        };
        super::client::settle(&self.env, &self.counter, req).await;
    }
}

impl Ticket {
    /// Settles after the response: under a lease at once (it is local), with only its
    /// report, if this request is to send one, left to `wait_until`.
    pub fn close_after(self, ctx: &Context, metered: Option<Metered>, replay: Option<Replay>) {
        match &self.leased {
            Some(leased) => {
                if let Some(report) = super::leases::finish(&self.env, leased, metered) {
                    ctx.wait_until(report);
                }
            }
            None => ctx.wait_until(async move { self.close(metered, replay).await }),
        }
    }
}

/// An admission the counter refused or answered from its replay store: the response
/// to send as it is.
pub fn not_admitted(answer: AdmitResponse) -> Result<Response, ApiError> {
    match answer {
        AdmitResponse::Replayed { replay } => {
            let headers = replay.headers();
            respond(
                replay.status,
                &headers,
                Payload::Bytes(replay.body.into_bytes()),
            )
        }
        AdmitResponse::Refused { refusal, headers } => {
            let e = refusal.error();
            let (status, body, retry_after_s) = (e.status, e.body(), e.retry_after_s);
            respond_json(status, headers, body, retry_after_s)
        }
        AdmitResponse::Rejected {
            status,
            body,
            retry_after_s,
            headers,
        } => respond_json(status, headers, body, retry_after_s),
        AdmitResponse::Admitted { .. } => {
            Err(ApiError::internal("an admitted request has no refusal"))
        }
    }
}

fn respond_json(
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    retry_after_s: Option<u64>,
) -> Result<Response, ApiError> {
    let mut headers = headers;
    headers.push(("content-type".into(), "application/json".into()));
    if let Some(s) = retry_after_s {
        headers.push(("retry-after".into(), s.to_string()));
    }
    respond(status, &headers, Payload::Bytes(body.into_bytes()))
}

pub enum Payload {
    Bytes(Vec<u8>),
    Stream(Body),
    /// A stream the runtime already holds (the stream pump's fast path).
    Web(worker::web_sys::ReadableStream),
}

pub fn respond(
    status: u16,
    headers: &[(String, String)],
    payload: Payload,
) -> Result<Response, ApiError> {
    let h = super::js_headers::headers_of(headers).map_err(http::internal)?;
    let resp = match payload {
        Payload::Bytes(b) => Response::from_bytes(b),
        Payload::Stream(s) => Response::from_stream(s),
        Payload::Web(s) => Response::from_body(worker::ResponseBody::Stream(s)),
    };
    Ok(resp
        .map_err(http::internal)?
        .with_status(status)
        .with_headers(h))
}
