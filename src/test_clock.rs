//! The test clock: with the `TEST_CLOCK` setting on, an admin call moves the Worker's
//! clock forward, so a test can show a 20-minute stream in seconds. A deployed Worker
//! must never run with it, so the setting is only honoured for requests to a loopback
//! host (`wrangler dev`, `workerd`); any other request is refused while it is set.

use crate::error::ApiError;
use serde::Deserialize;

pub const SETTING: &str = "TEST_CLOCK";

/// Whether the setting turns the test clock on.
pub fn enabled(setting: Option<&str>) -> bool {
    setting.is_some_and(|v| v.trim() == "on")
}

pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let v4 = host.parse::<std::net::Ipv4Addr>();
    host == "localhost" || host == "::1" || v4.is_ok_and(|ip| ip.is_loopback())
}

/// The host of an absolute URL, without port or brackets (a request's URL is always
/// absolute). Written out because the URL parser costs the bundle tens of KiB.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Whether the test clock is on for a request to `host`; an error when it is set for
/// a request that cannot come from a local test.
pub fn allowed(setting: Option<&str>, host: &str) -> Result<bool, ApiError> {
    match setting {
        None => Ok(false),
        Some(_) if is_loopback(host) => Ok(enabled(setting)),
        Some(_) => Err(ApiError::internal(
            "The TEST_CLOCK setting is for local tests only; remove it from this deployment.",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_ms: i64,
}

/// How far to move the clock: 0 to 400 days forward.
pub fn parse_advance(bytes: &[u8]) -> Result<i64, ApiError> {
    let a: Advance = serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
    if !(0..=400 * 86_400_000).contains(&a.advance_ms) {
        let msg = "advance_ms must be between 0 and 400 days in milliseconds.";
        return Err(ApiError::bad_request("invalid_value", msg).with_param("advance_ms"));
    }
    Ok(a.advance_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_requests_may_run_with_the_setting() {
        assert!(!allowed(None, "api.example.com").unwrap());
        assert!(allowed(Some("on"), "127.0.0.1").unwrap());
        assert!(allowed(Some("on"), "localhost").unwrap());
        assert!(allowed(Some("on"), "[::1]").unwrap());
        assert!(!allowed(Some("off"), "127.0.0.1").unwrap());
        assert_eq!(
            allowed(Some("on"), "api.example.com").unwrap_err().status,
            500
        );
        // Any value outside a test is refused: a typo must not deploy quietly.
        assert!(allowed(Some("off"), "127.0.0.1.example.com").is_err());
    }

    #[test]
    fn hosts_are_read_from_urls() {
        assert_eq!(host_of("http://127.0.0.1:8787/v1/chat"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:8787/x"), "::1");
        assert_eq!(
            host_of("https://api.example.com/x?y=http://127.0.0.1"),
            "api.example.com"
        );
        assert_eq!(
            host_of("https://127.0.0.1@evil.example.com/"),
            "evil.example.com"
        );
        assert_eq!(host_of("https://localhost"), "localhost");
        assert!(!is_loopback(host_of("https://127.0.0.1.nip.io/")));
    }

    #[test]
    fn the_clock_only_moves_forward_within_bounds() {
        assert_eq!(
            parse_advance(br#"{"advance_ms": 1200000}"#).unwrap(),
            1_200_000
        );
        assert!(parse_advance(br#"{"advance_ms": -1}"#).is_err());
        assert!(parse_advance(br#"{"advance_ms": 99999999999999}"#).is_err());
        assert!(parse_advance(br#"{"advance": 1}"#).is_err());
    }
}
