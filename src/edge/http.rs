//! Small response helpers shared by the handlers.

use crate::error::ApiError;
use serde::Serialize;
use worker::{Headers, Response, Result};

/// An error in OpenAI's shape, with `Retry-After` and any extra headers.
pub fn error_response(e: &ApiError, extra: &[(String, String)]) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if let Some(s) = e.retry_after_s {
        headers.set("retry-after", &s.to_string())?;
    }
    for (k, v) in extra {
        headers.set(k, v)?;
    }
    Ok(Response::from_bytes(e.body().into_bytes())?
        .with_status(e.status)
        .with_headers(headers))
}

/// A JSON body with the given status.
pub fn json_response<T: Serialize>(value: &T, status: u16) -> Result<Response> {
    Ok(Response::from_json(value)?.with_status(status))
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
    ApiError::internal(e.to_string())
}

/// The bearer token of a request, or its `x-api-key` (what Anthropic's SDK sends).
pub fn api_key(headers: &Headers) -> Option<String> {
    if let Ok(Some(auth)) = headers.get("authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .or(auth.strip_prefix("bearer "));
        return token.map(|t| t.trim().to_string());
    }
    headers.get("x-api-key").ok().flatten()
}
