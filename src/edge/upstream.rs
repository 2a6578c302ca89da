//! The forward phase: a request goes to the real provider with the operator's key, the
//! route table's canonical path and allowlisted headers only, and redirects are never
//! followed. Test keys are answered by the built-in sandbox provider instead.

use super::config;
use super::http;
use super::metrics::{bump, Metric};
use super::stream::Body;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::request::Prepared;
use crate::sandbox;
use crate::surface::headers::{forward_request, pass_response, HeaderPolicy, RESPONSE_READ};
use crate::surface::headers::{redirect_refused, too_large_answer, ERROR_BODY_LIMIT};
use futures_util::StreamExt;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, web_sys, AbortSignal, Env, Method};

/// The upstream's answer, from the real provider or the sandbox.
pub struct Upstreamed {
    pub status: u16,
    pub content_type: String,
    /// Only the headers that may reach the client.
    pub headers: Vec<(String, String)>,
    pub retry_after: Option<String>,
    pub body: Answer,
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

fn js_fail(e: JsValue) -> ApiError {
    fail(worker::Error::from(e))
}

pub(super) fn fail(e: worker::Error) -> ApiError {
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

/// Sends a request to `upstream`, resolved by the caller, with [`fetch`].
pub async fn send_to(
    upstream: &config::Upstream,
    catalog: &Catalog,
    out: Outgoing<'_>,
) -> Result<Upstreamed, ApiError> {
    let (url, headers) = outgoing(upstream, catalog, &out.target, out.client_headers);
    let headers = super::js_headers::headers_of(&headers).map_err(fail)?;
    let init = web_sys::RequestInit::new();
    init.set_method(out.method.as_ref());
    init.set_headers(&headers.0);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    match out.body {
        OutBody::Empty => {}
        OutBody::Bytes(b) => init.set_body(&js_sys::Uint8Array::from(b)),
        OutBody::Stream(s) => init.set_body(&s),
    }
    if let Some(signal) = &out.signal {
        init.set_signal(Some(signal));
    }
    upstreamed(fetch(&url, &init).await?)
}

/// Where a request goes upstream and the headers it carries there: the client's, as
/// the catalog's policy for its path allows, and the operator's key.
pub fn outgoing(
    upstream: &config::Upstream,
    catalog: &Catalog,
    target: &str,
    client_headers: Vec<(String, String)>,
) -> (String, Vec<(String, String)>) {
    let path = target.split('?').next().unwrap_or("");
    let policy = HeaderPolicy::for_path(&catalog.proxy, path);
    let mut headers = forward_request(client_headers, &policy);
    if let Some(key) = &upstream.api_key {
        headers.push(match upstream.anthropic {
            true => ("x-api-key".into(), key.clone()),
            false => ("authorization".into(), format!("Bearer {key}")),
        });
    }
    (format!("{}{}", upstream.base_url, target), headers)
}

/// The provider's response as it arrived, with only the headers that may reach the
/// client; a redirect is refused.
pub fn upstreamed(resp: web_sys::Response) -> Result<Upstreamed, ApiError> {
    let status = resp.status();
    redirect_refused(status)?;
    let all = http::NamedHeaders::read(&worker::Headers(resp.headers()), RESPONSE_READ);
    let content_type = all.get("content-type").unwrap_or_default().to_string();
    let retry_after = all.get("retry-after").map(str::to_string);
    let declared = all.declared_length();
    Ok(Upstreamed {
        status,
        content_type,
        headers: pass_response(all.pairs().iter().cloned()),
        retry_after,
        body: Answer::Web(resp, declared),
        cancel: None,
    })
}

/// The runtime's own `fetch`, with no `worker::Request` made only to be taken apart
/// again.
pub async fn fetch(url: &str, init: &web_sys::RequestInit) -> Result<web_sys::Response, ApiError> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let answer = JsFuture::from(global.fetch_with_str_and_init(url, init)).await;
    answer.and_then(|r| r.dyn_into()).map_err(js_fail)
}

/// An upstream answer's body, not yet read.
pub enum Answer {
    /// The provider's response, with the length it declares.
    Web(web_sys::Response, Option<usize>),
    /// Chunks edgemeter holds (the sandbox's answer, a peeked stream).
    Chunks(Body),
}

impl Answer {
    /// The body as a stream of chunks (empty when the answer has none).
    pub fn into_stream(self) -> Body {
        match self {
            Answer::Chunks(body) => body,
            Answer::Web(resp, _) => match worker::Response::from(resp).stream() {
                Ok(stream) => Box::pin(stream),
                Err(_) => Box::pin(futures_util::stream::empty()),
            },
        }
    }

    /// Reads the whole body, refusing it once it passes `limit` bytes. A declared
    /// length within the limit is read in one call, not chunk by chunk.
    pub async fn collect(self, limit: usize) -> Result<Vec<u8>, ApiError> {
        let (resp, declared) = match self {
            Answer::Web(resp, Some(declared)) => (resp, declared),
            other => return collect(other.into_stream(), limit).await,
        };
        if declared > limit {
            bump(Metric::ResponseCapHits);
            return Err(too_large_answer(limit));
        }
        let read = match resp.array_buffer() {
            Ok(promise) => JsFuture::from(promise).await,
            Err(e) => Err(e),
        };
        let bytes = read.map(|b| js_sys::Uint8Array::new(&b).to_vec());
        let bytes = bytes.map_err(|e| {
            let e = worker::Error::from(e);
            ApiError::upstream(502, format!("The upstream response broke off: {e}"))
        })?;
        // A compressed answer declares its compressed length; what was read counts.
        if bytes.len() > limit {
            bump(Metric::ResponseCapHits);
            return Err(too_large_answer(limit));
        }
        Ok(bytes)
    }
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
        body: Answer::Chunks(Box::pin(chunks)),
        cancel: None,
    })
}

/// Reads a whole stream of chunks, refusing it once it passes `limit` bytes.
async fn collect(mut body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
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
    let body = up.body.collect(ERROR_BODY_LIMIT).await.unwrap_or_default();
    refused_with(up.status, up.retry_after.as_deref(), &body)
}

/// An upstream error answer whose body was read, rewritten as [`refused`] does.
pub fn refused_with(status: u16, retry_after: Option<&str>, body: &[u8]) -> ApiError {
    // An answer past the cap is not read, as `collect` refuses it.
    let body = if body.len() > ERROR_BODY_LIMIT {
        &[][..]
    } else {
        body
    };
    crate::surface::headers::provider_error(status, body, retry_after)
}
