//! The forward phase: the request goes to the real provider, with the customer's key
//! swapped for the company's, or to the built-in sandbox provider.

use super::config;
use super::stream::Body;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::keys::Mode;
use crate::request::Prepared;
use crate::sandbox;
use futures_util::StreamExt;
use wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

/// Request headers not forwarded upstream: credentials and per-hop headers.
const PRIVATE_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "host",
    "content-length",
    "cookie",
    "cf-connecting-ip",
];

/// The upstream's answer, from the real provider or the sandbox.
pub struct Upstreamed {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

pub async fn forward(
    req: &Request,
    env: &Env,
    path: &str,
    body: &[u8],
    prepared: &Prepared,
    mode: Mode,
    catalog: &Catalog,
) -> Result<Upstreamed, ApiError> {
    let sent = prepared.upstream_body.as_deref().unwrap_or(body);
    let upstream = if mode == Mode::Test {
        None
    } else {
        config::upstream(env, path)
    };
    let Some(upstream) = upstream else {
        let input: serde_json::Value = if path == "/v1/models" {
            sandbox::models_request()
        } else {
            serde_json::from_slice(sent).unwrap_or_default()
        };
        let models: Vec<&str> = catalog.models.keys().map(String::as_str).collect();
        let now_s = worker::Date::now().as_millis() as i64 / 1000;
        let reply = sandbox::respond(prepared, &input, &models, now_s)?;
        let chunks = futures_util::stream::iter(reply.chunks.into_iter().map(Ok));
        return Ok(Upstreamed {
            status: reply.status,
            content_type: reply.content_type.to_string(),
            headers: vec![("content-type".into(), reply.content_type.into())],
            body: Box::pin(chunks),
        });
    };
    let fail = |e: worker::Error| {
        ApiError::upstream(
            502,
            format!("The upstream provider could not be reached: {e}"),
        )
    };
    let headers = Headers::new();
    for (k, v) in req.headers().entries() {
        if !PRIVATE_HEADERS.contains(&k.as_str()) && !k.starts_with("cf-") {
            headers.set(&k, &v).map_err(fail)?;
        }
    }
    if let Some(key) = &upstream.api_key {
        let (name, value) = if upstream.anthropic {
            ("x-api-key", key.clone())
        } else {
            ("authorization", format!("Bearer {key}"))
        };
        headers.set(name, &value).map_err(fail)?;
    }
    // The raw URL string, not `req.url()`: parsing it would pull the `url` crate and its
    // IDNA tables into the bundle for nothing.
    let raw_url = req.inner().url();
    let query = raw_url.find('?').map_or("", |i| &raw_url[i..]);
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if !matches!(req.method(), Method::Get | Method::Head) {
        init.with_body(Some(JsValue::from(js_sys_bytes(sent))));
    }
    let out = Request::new_with_init(&format!("{}{path}{query}", upstream.base_url), &init)
        .map_err(fail)?;
    let mut resp = Fetch::Request(out).send().await.map_err(fail)?;
    let headers: Vec<(String, String)> = resp.headers().entries().collect();
    let content_type = resp
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let stream = resp.stream().map_err(fail)?;
    Ok(Upstreamed {
        status: resp.status_code(),
        content_type,
        headers,
        body: Box::pin(stream),
    })
}

fn js_sys_bytes(bytes: &[u8]) -> worker::js_sys::Uint8Array {
    worker::js_sys::Uint8Array::from(bytes)
}

pub async fn collect(mut body: Body) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::upstream(502, format!("The upstream response broke off: {e}"))
        })?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
