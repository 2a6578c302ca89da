//! Bad input through the real worker: each gets the right status in OpenAI's error
//! shape, and nothing is metered or left reserved for it.

mod support;

use serde_json::json;
use support::http::{request, Resp};
use support::{admin, call, chat, customer, settled_usage, shared, unique};

fn ask() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
}

fn post_raw(port: u16, key: &str, body: &[u8]) -> Resp {
    let auth = format!("Bearer {key}");
    request(
        port,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &auth)],
        body,
    )
}

/// Asserts the customer's counter shows nothing metered and nothing held.
fn nothing_metered(port: u16, key: &str) {
    let usage = settled_usage(port, key);
    assert_eq!(usage["totals"]["requests"], 0, "{usage}");
    assert_eq!(usage["meters"], json!([]), "{usage}");
}

#[test]
fn malformed_json_is_400() {
    let port = shared().worker.port;
    let (_, key) = customer(port, "open");
    for body in [&b"{\"model\": "[..], b"[1,2]", b""] {
        let r = post_raw(port, &key, body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.error_type(), "invalid_request_error");
    }
    let r = post_raw(port, &key, b"{\"messages\":[]}");
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("model"))
    );
    nothing_metered(port, &key);
}

#[test]
fn oversized_body_is_413() {
    let port = shared().worker.port;
    let (_, key) = customer(port, "open");
    // the test worker allows 64 KiB
    let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(70_000)}]});
    let r = chat(port, &key, &big, &[]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "request_too_large");
    nothing_metered(port, &key);
}

#[test]
fn missing_unknown_and_revoked_keys_are_401() {
    let port = shared().worker.port;
    let r = request(
        port,
        "POST",
        "/v1/chat/completions",
        &[],
        ask().to_string().as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert_eq!(
        post_raw(port, "sk-not-ours", ask().to_string().as_bytes()).status,
        401
    );

    let (id, key) = customer(port, "open");
    // right customer and shape, wrong secret
    let forged = format!("em_live_{id}_{}", "0".repeat(32));
    let r = chat(port, &forged, &ask(), &[]);
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (401, "invalid_request_error")
    );
    // a customer that does not exist
    let r = chat(
        port,
        &format!("em_live_{}_{}", unique("ghost"), "0".repeat(32)),
        &ask(),
        &[],
    );
    assert_eq!(r.status, 401);

    let keys = admin(
        port,
        "GET",
        &format!("/admin/v1/customers/{id}/keys"),
        &json!(null),
    )
    .json();
    let key_id = keys[0]["id"].as_str().unwrap().to_string();
    assert_eq!(chat(port, &key, &ask(), &[]).status, 200);
    let r = admin(
        port,
        "DELETE",
        &format!("/admin/v1/customers/{id}/keys/{key_id}"),
        &json!(null),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = chat(port, &key, &ask(), &[]);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("revoked"));
    let usage = admin(
        port,
        "GET",
        &format!("/admin/v1/customers/{id}/usage"),
        &json!(null),
    )
    .json();
    assert_eq!(
        usage["totals"]["requests"], 1,
        "only the request before revocation: {usage}"
    );
}

#[test]
fn unknown_model_is_400_naming_it() {
    let port = shared().worker.port;
    let (_, key) = customer(port, "open");
    let r = chat(
        port,
        &key,
        &json!({"model": "gpt-unpriced", "messages": []}),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert!(r.text().contains("gpt-unpriced"));
    nothing_metered(port, &key);
}

#[test]
fn upstream_failures_release_the_reservation() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let r = chat(port, &key, &ask(), &[("x-fake-status", "500")]);
    assert_eq!(r.status, 502, "{}", r.text());
    // the provider's own error type passes (its message only when it names no account)
    assert_eq!(r.error_type(), "server_error");
    let r = chat(port, &key, &ask(), &[("x-fake-status", "503")]);
    assert_eq!(r.status, 503);
    // the provider's own 4xx is passed through (type, code and param) and costs nothing
    let r = chat(port, &key, &ask(), &[("x-fake-status", "400")]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "temperature", "{}", r.text());
    // unreachable: the Anthropic upstream of the test worker is a closed port
    let msg = json!({"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let r = call(port, &key, "/v1/messages", &msg, &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("could not be reached"));
    nothing_metered(port, &key);
}

#[test]
fn admin_api_needs_the_token_and_checks_its_input() {
    let port = shared().worker.port;
    let body = json!({"id": unique("x"), "plan": "open"}).to_string();
    let r = request(port, "POST", "/admin/v1/customers", &[], body.as_bytes());
    assert_eq!(r.status, 401);
    let r = request(
        port,
        "POST",
        "/admin/v1/customers",
        &[("authorization", "Bearer wrong")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": unique("x"), "plan": "platinum"}),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("plan"))
    );
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": "bad id!", "plan": "open"}),
    );
    assert_eq!(r.status, 400);
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": "x", "plan": "open", "colour": 1}),
    );
    assert_eq!(r.status, 400, "unknown fields are refused: {}", r.text());
    let (id, _) = customer(port, "open");
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": id, "plan": "open"}),
    );
    assert_eq!(r.status, 409);
    let both =
        json!({"id": unique("x"), "plan": "open", "anchor_day": 3, "anchor_to_signup": true});
    assert_eq!(
        admin(port, "POST", "/admin/v1/customers", &both).status,
        400
    );
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": unique("x"), "plan": "open", "anchor_day": 32}),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("anchor_day"))
    );
    // Anchored to the signup day: the first period starts today at midnight UTC.
    let anchored = unique("anchor");
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": anchored, "plan": "open", "anchor_to_signup": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let usage = admin(
        port,
        "GET",
        &format!("/admin/v1/customers/{anchored}/usage"),
        &json!(null),
    )
    .json();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let today = edgemeter::period::iso8601(now_ms - now_ms.rem_euclid(86_400_000));
    assert_eq!(usage["period_start"], today.as_str(), "{usage}");
    let r = admin(
        port,
        "GET",
        &format!("/admin/v1/customers/{}/usage", unique("nobody")),
        &json!(null),
    );
    assert_eq!(r.status, 404, "{}", r.text());
}
