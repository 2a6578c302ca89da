//! Error events inside a streamed answer. A stream has already answered 200 when a
//! provider reports a failure in it (`{"error": …}` on chat, `error` and
//! `response.failed` on Responses, `event: error` on Anthropic), and those messages can
//! name the operator's organization, project or shared rate limits just as an error
//! status can. They pass with the same rule: every `message` that names the account is
//! replaced, everything else is kept.

use super::headers::names_account;
use serde_json::Value;

/// What replaces a message about the operator's account.
const GENERIC: &str = "The upstream provider reported an error.";

/// Whether a parsed event reports an error.
fn is_error(event: &Value) -> bool {
    event.get("error").is_some_and(|e| !e.is_null())
        || matches!(event["type"].as_str(), Some("error" | "response.failed"))
}

/// Replaces every `message` string under `v` that names the account; true if any was.
fn scrub(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut changed = false;
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(s) if key == "message" && names_account(s) => {
                        *s = GENERIC.to_string();
                        changed = true;
                    }
                    other => changed |= scrub(other),
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| scrub(i) | c),
        _ => false,
    }
}

/// The event rewritten when it is an error event whose messages name the account;
/// `None` when it passes as it is. `data` is the event's joined data lines.
pub fn rewrite(event: &[u8], data: &str) -> Option<Vec<u8>> {
    // Most events carry no error: skip the parse for them.
    if !data.contains("error") && !data.contains("failed") {
        return None;
    }
    let mut parsed: Value = serde_json::from_str(data).ok()?;
    if !is_error(&parsed) || !scrub(&mut parsed) {
        return None;
    }
    let text = String::from_utf8_lossy(event);
    let mut out = String::new();
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if !line.is_empty() && !line.starts_with("data:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("data: {parsed}\n\n"));
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
