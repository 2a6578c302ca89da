//! A provider that fails in the middle of a stream, after its 200 went out: the error
//! event still reaches the client, in the provider's shape, but nothing it says about
//! the operator's account does.

mod support;

use serde_json::json;
use support::{chat, customer, settled_usage, shared};

#[test]
fn an_error_event_mid_stream_loses_the_account_details() {
    let port = shared().worker.port;
    let (_, key) = customer(port, "open");
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = chat(port, &key, &body, &[("x-fake-stream-error", "1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let error = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|v| v.get("error").is_some())
        .unwrap_or_else(|| panic!("no error event reached the client: {text}"));
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    for secret in ["org-operator123", "TPM", "tokens per min"] {
        assert!(
            !text.contains(secret),
            "{secret} reached the client: {text}"
        );
    }
    // the part of the stream that was delivered is still metered
    let usage = settled_usage(port, &key);
    assert_eq!(
        support::meter(&usage, "chat.completions", "gpt-4o-mini")["requests"],
        1
    );
}
