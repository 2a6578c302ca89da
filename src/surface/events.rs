//! Error events inside a streamed answer. A stream has already answered 200 when a
//! provider reports a failure in it (`{"error": …}` on chat, `error` and
//! `response.failed` on Responses, `event: error` on Anthropic), and those messages can
//! name the operator's organization, project or shared rate limits just as an error
//! status can. They pass with the same rule: every string in an error event that names
//! the account is replaced, everything else is kept.

use super::headers::names_account;
use serde_json::Value;

/// What replaces a message about the operator's account.
const GENERIC: &str = "The upstream provider reported an error.";

/// Whether a parsed event reports an error.
fn is_error(event: &Value) -> bool {
    event.get("error").is_some_and(|e| !e.is_null())
        || matches!(event["type"].as_str(), Some("error" | "response.failed"))
}

/// The line breaks SSE allows: CRLF, LF or CR alone.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split("\r\n").flat_map(|l| l.split(['\r', '\n']))
}

/// Whether the event's own name (`event: error`) says it reports an error.
fn named_error(text: &str) -> bool {
    lines(text).any(|l| {
        l.strip_prefix("event:")
            .is_some_and(|name| matches!(name.trim(), "error" | "response.failed"))
    })
}

/// Replaces every string under `v` that names the account; true if any was.
fn scrub(v: &mut Value) -> bool {
    match v {
        Value::String(s) if names_account(s) => {
            *s = GENERIC.to_string();
            true
        }
        Value::Object(map) => map.values_mut().fold(false, |c, v| scrub(v) | c),
        Value::Array(items) => items.iter_mut().fold(false, |c, i| scrub(i) | c),
        _ => false,
    }
}

/// The event rewritten when it is an error event that names the account; `None` when
/// it passes as it is. `data` is the event's joined data lines.
pub fn rewrite(event: &[u8], data: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(event);
    // Most events carry no error: skip the parse for them. A backslash could spell
    // `error` as an escape, so it is parsed too.
    let suspect = data.contains("rror") || data.contains("failed") || data.contains('\\');
    if !suspect && !named_error(&text) {
        return None;
    }
    let replaced = match serde_json::from_str::<Value>(data) {
        Ok(mut parsed) if is_error(&parsed) || named_error(&text) => {
            scrub(&mut parsed).then(|| parsed.to_string())?
        }
        Ok(_) => return None,
        // Not JSON: in an error event, or naming the account, none of it passes.
        Err(_) if named_error(&text) || names_account(data) => {
            serde_json::json!({"error": {"message": GENERIC, "type": "api_error"}}).to_string()
        }
        Err(_) => return None,
    };
    let mut out = String::new();
    for line in lines(&text) {
        if !line.is_empty() && !line.starts_with("data:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("data: {replaced}\n\n"));
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::event_data;

    fn run(event: &str) -> Option<String> {
        let data = event_data(event.as_bytes()).unwrap();
        rewrite(event.as_bytes(), &data).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn account_details_in_error_events_are_replaced() {
        let chat = "data: {\"error\":{\"message\":\"Rate limit reached in organization org-1\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n";
        let out = run(chat).unwrap();
        assert!(
            !out.contains("org-1") && out.contains("rate_limit_exceeded"),
            "{out}"
        );
        let anthropic = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded: org quota\"}}\n\n";
        let out = run(anthropic).unwrap();
        assert!(
            out.starts_with("event: error\ndata: {") && !out.contains("quota"),
            "{out}"
        );
        let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\",\"message\":\"proj_9 is over its limit\"}}}\n\n";
        assert!(!run(failed).unwrap().contains("proj_9"));
    }

    #[test]
    fn a_misbehaving_upstream_cannot_slip_past() {
        // a bare-string error, CR line ends, an escaped key, non-JSON in an error event
        let plain = "data: {\"error\":\"Rate limit reached for org-9\"}\n\n";
        assert!(!run(plain).unwrap().contains("org-9"));
        let cr = "event: error\rdata: {\"message\":\"org-9 quota\"}\r\r";
        assert!(!run(cr).unwrap().contains("org-9"));
        let escaped = "data: {\"\\u0065rror\":{\"message\":\"proj_9 over\"}}\n\n";
        assert!(!run(escaped).unwrap().contains("proj_9"));
        let text = "event: error\ndata: upstream org-9 said no\n\n";
        assert!(!run(text).unwrap().contains("org-9"));
    }

    #[test]
    fn other_events_pass_untouched() {
        // a clean error message, and content that merely mentions an organization
        assert_eq!(
            run("data: {\"error\":{\"message\":\"bad input\"}}\n\n"),
            None
        );
        let delta = "data: {\"choices\":[{\"delta\":{\"content\":\"an error in org-chart\"}}]}\n\n";
        assert_eq!(run(delta), None);
        assert_eq!(run("data: [DONE]\n\n"), None);
    }
}
