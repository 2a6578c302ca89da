//! The forward phase: a request goes to the real provider with the operator's key, the
//! route table's canonical path and allowlisted headers only, and redirects are never
//! followed. Test keys are answered by the built-in sandbox provider instead.

use super::config;
use super::metrics::{bump, Metric};
use super::stream::Body;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::request::Prepared;
use crate::sandbox;
use crate::surface::headers::{forward_request, pass_response, HeaderPolicy};
use crate::surface::headers::{redirect_refused, too_large_answer, ERROR_BODY_LIMIT};
use futures_util::StreamExt;
use wasm_bindgen::JsValue;
use worker::{AbortSignal, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

/// The upstream's answer, from the real provider or the sandbox.
pub struct Upstreamed {
    pub status: u16,
    pub content_type: String,
    /// Only the headers that may reach the client.
    pub headers: Vec<(String, String)>,
    pub retry_after: Option<String>,
    pub body: Body,
    /// Cancels the fetch (a stream whose client left and whose usage never came).
    pub cancel: Option<worker::AbortController>,
}

/// A request body going upstream: bytes edgemeter holds, or a stream it checks as the
/// client sends it (a file upload).
pub enum OutBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(JsValue),
}

/// What is sent upstream.
pub struct Outgoing<'a> {
    pub method: Method,
    /// The canonical path and allowlisted query.
    pub target: String,
    pub body: OutBody<'a>,
    /// The client's headers, filtered here by the catalog's policy.
    pub client_headers: Vec<(String, String)>,
    /// Aborts the request mid-body (a refused upload), so the provider never receives
    /// it whole.
    pub signal: Option<AbortSignal>,
}

fn fail(e: worker::Error) -> ApiError {
    let msg = format!("The upstream provider could not be reached: {e}");
    ApiError::upstream(502, msg).caused_by(e)
}

/// Sends a request to the configured provider; `None` when no upstream is configured
/// for the path (then the sandbox answers).
pub async fn send(
    env: &Env,
    catalog: &Catalog,
    out: Outgoing<'_>,
) -> Result<Option<Upstreamed>, ApiError> {
    let path = out.target.split('?').next().unwrap_or("");
    let Some(upstream) = config::upstream(env, path) else {
        return Ok(None);
    };
    send_to(&upstream, catalog, out).await.map(Some)
}

/// Sends a request to `upstream`, resolved by the caller.
pub async fn send_to(
    upstream: &config::Upstream,
    catalog: &Catalog,
    out: Outgoing<'_>,
) -> Result<Upstreamed, ApiError> {
    let policy = HeaderPolicy {
        extra: &catalog.proxy.request_headers,
        anthropic_beta: &catalog.proxy.anthropic_beta,
        anthropic: upstream.anthropic,
    };
    let headers = Headers::new();
    for (k, v) in forward_request(out.client_headers, &policy) {
        headers.set(&k, &v).map_err(fail)?;
    }
    if let Some(key) = &upstream.api_key {
        let (name, value) = if upstream.anthropic {
            ("x-api-key", key.clone())
        } else {
            ("authorization", format!("Bearer {key}"))
        };
        headers.set(name, &value).map_err(fail)?;
    }
    let mut init = RequestInit::new();
    init.with_method(out.method)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    match out.body {
        OutBody::Empty => {}
        OutBody::Bytes(b) => {
            init.with_body(Some(JsValue::from(worker::js_sys::Uint8Array::from(b))));
        }
        OutBody::Stream(s) => {
            init.with_body(Some(s));
        }
    }
    let url = format!("{}{}", upstream.base_url, out.target);
    let request = Request::new_with_init(&url, &init).map_err(fail)?;
    let fetch = Fetch::Request(request);
    let sent = match &out.signal {
        Some(signal) => fetch.send_with_signal(signal).await,
        None => fetch.send().await,
    };
    let mut resp = sent.map_err(fail)?;
    let status = resp.status_code();
    redirect_refused(status)?;
    let all: Vec<(String, String)> = resp.headers().entries().collect();
    let find = |name: &str| all.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let content_type = find("content-type").unwrap_or_default();
    let retry_after = find("retry-after");
    let stream = resp.stream().map_err(fail)?;
    Ok(Upstreamed {
        status,
        content_type,
        headers: pass_response(all),
        retry_after,
        body: Box::pin(stream),
        cancel: None,
    })
}

/// The sandbox provider's answer to a metered request.
pub fn sandbox(prepared: &Prepared) -> Result<Upstreamed, ApiError> {
    let input: serde_json::Value = prepared
        .upstream_body
        .as_deref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    let now_s = super::clock::now_ms() / 1000;
    let reply = sandbox::respond(prepared, &input, now_s)?;
    let chunks = futures_util::stream::iter(reply.chunks.into_iter().map(Ok));
    Ok(Upstreamed {
        status: reply.status,
        content_type: reply.content_type.to_string(),
        headers: vec![("content-type".into(), reply.content_type.into())],
        retry_after: None,
        body: Box::pin(chunks),
        cancel: None,
    })
}

/// Reads a whole upstream body, refusing it once it passes `limit` bytes.
pub async fn collect(mut body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::upstream(502, format!("The upstream response broke off: {e}"))
        })?;
        if out.len() + chunk.len() > limit {
            bump(Metric::ResponseCapHits);
            return Err(too_large_answer(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An upstream error answer, rewritten so no account detail reaches the client.
pub async fn refused(up: Upstreamed) -> ApiError {
    let body = collect(up.body, ERROR_BODY_LIMIT).await.unwrap_or_default();
    crate::surface::headers::provider_error(up.status, &body, up.retry_after.as_deref())
}
