//! Small response helpers shared by the handlers.

use crate::error::ApiError;
use serde::Serialize;
use worker::{Headers, Response, Result};

/// An error in OpenAI's shape, with `Retry-After` and any extra headers.
pub fn error_response(e: &ApiError, extra: &[(String, String)]) -> Result<Response> {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(s) = e.retry_after_s {
        headers.push(("retry-after".into(), s.to_string()));
    }
    headers.extend_from_slice(extra);
    Ok(Response::from_bytes(e.body().into_bytes())?
        .with_status(e.status)
        .with_headers(super::js_headers::headers_of(&headers)?))
}

/// A JSON body with the given status.
pub fn json_response<T: Serialize>(value: &T, status: u16) -> Result<Response> {
    Ok(Response::from_json(value)?.with_status(status))
}

/// A 200 whose body is JSON text already, sent byte for byte.
pub fn raw_json(text: String) -> Response {
    let headers = worker::Headers::new();
    let _ = headers.set("content-type", "application/json");
    Response::ok(text)
        .map(|r| r.with_headers(headers))
        .unwrap_or_else(|_| Response::empty().expect("an empty response"))
}

/// Turns a handler's result into a response, rendering errors in OpenAI's shape.
pub fn respond(result: std::result::Result<Response, ApiError>) -> Result<Response> {
    match result {
        Ok(r) => Ok(r),
        Err(e) => error_response(&e, &[]),
    }
}

/// Maps a runtime error to an internal `ApiError`.
pub fn internal(e: worker::Error) -> ApiError {
    ApiError::internal(e.to_string()).caused_by(e)
}

/// Some of a request's or response's headers, read by name (names lower-cased):
/// reading a few by name costs far less than copying them all out of the runtime.
pub struct NamedHeaders(Vec<(String, String)>);

impl NamedHeaders {
    pub fn read<'a>(headers: &Headers, names: impl IntoIterator<Item = &'a str>) -> NamedHeaders {
        NamedHeaders(super::js_headers::present(&headers.0, names))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let found = self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The Content-Length it declares, if any.
    pub fn declared_length(&self) -> Option<usize> {
        self.get("content-length").and_then(|l| l.parse().ok())
    }
}

/// Where a caller's key may be: a bearer token, or Anthropic's `x-api-key`.
pub const KEY_HEADERS: [&str; 2] = ["authorization", "x-api-key"];

/// The bearer token of a request, or its `x-api-key` (what Anthropic's SDK sends).
pub fn api_key(headers: &NamedHeaders) -> Option<String> {
    if let Some(auth) = headers.get("authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .or(auth.strip_prefix("bearer "));
        return token.map(|t| t.trim().to_string());
    }
    headers.get("x-api-key").map(str::to_string)
}

/// The Content-Length a request declares, if any.
pub fn declared_length(req: &worker::Request) -> Option<usize> {
    NamedHeaders::read(req.headers(), ["content-length"]).declared_length()
}

/// Reads a request body, refusing it as soon as it passes `limit` bytes: a declared
/// Content-Length is checked before reading, and a chunked body as its bytes arrive, so
/// an oversized body never sits whole in the isolate's memory.
pub async fn read_capped(
    req: &mut worker::Request,
    limit: usize,
) -> std::result::Result<Vec<u8>, ApiError> {
    let declared = declared_length(req);
    read_declared(req, limit, declared).await
}

/// [`read_capped`] with the Content-Length already read.
pub async fn read_declared(
    req: &mut worker::Request,
    limit: usize,
    declared: Option<usize>,
) -> std::result::Result<Vec<u8>, ApiError> {
    use super::metrics::{bump, Metric};
    use futures_util::StreamExt;
    if let Err(e) = crate::limits::declared_within(declared, limit) {
        bump(Metric::BodyCapHits);
        return Err(e);
    }
    if matches!(req.method(), worker::Method::Get | worker::Method::Head) {
        return Ok(Vec::new());
    }
    let unreadable = |e: worker::Error| ApiError::bad_request("unreadable_body", e.to_string());
    if declared.is_some() {
        // The runtime holds a body to its declared length, which is within the cap: one
        // read, without a stream's per-chunk round trips.
        return req.bytes().await.map_err(unreadable);
    }
    let mut body = Vec::new();
    let Ok(mut stream) = req.stream() else {
        return Ok(body); // no body at all
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unreadable)?;
        if body.len() + chunk.len() > limit {
            bump(Metric::BodyCapHits);
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
