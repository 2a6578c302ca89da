//! The closed proxy surface through the real worker: only the listed routes reach the
//! provider, only allowlisted headers and known fields cross in either direction, and
//! nothing of the operator's shared provider account reaches a customer.

mod support;

use serde_json::{json, Value};
use support::http::{request, Resp};
use support::upstream::{OPERATOR_HEADERS, REDIRECT_TARGET};
use support::wrangler::UPSTREAM_KEY;
use support::{call, chat, customer, issue_key, send, settled_usage, shared};

fn ask() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
}

/// `ask()` with more top-level fields.
fn ask_with(extra: Value) -> Value {
    let mut body = ask();
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    body
}

fn nothing_metered(port: u16, key: &str) {
    let usage = settled_usage(port, key);
    assert_eq!(usage["totals"]["requests"], 0, "{usage}");
}

/// Nothing of the operator's account in a response: no account headers, no key,
/// organization or project anywhere.
fn no_operator_leak(r: &Resp) {
    for (name, _) in &r.headers {
        let account = OPERATOR_HEADERS
            .iter()
            .any(|(n, _)| n == name && *n != "x-request-id");
        let limits = name.starts_with("x-ratelimit-") || name.starts_with("anthropic-ratelimit-");
        assert!(!account && !limits, "{name} reached the client");
    }
    let all = format!("{:?} {}", r.headers, r.text());
    for secret in [
        UPSTREAM_KEY,
        "org-operator123",
        "proj_operator123",
        "sk-upst",
    ] {
        assert!(!all.contains(secret), "{secret} reached the client: {all}");
    }
}

#[test]
fn unlisted_families_are_404_and_never_forwarded() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let refused = [
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("POST", "/v1/fine_tuning/jobs"),
        ("POST", "/v1/realtime/client_secrets"),
        ("POST", "/v1/vector_stores"),
        ("POST", "/v1/assistants"),
        ("POST", "/v1/images/generations"),
        ("POST", "/v1/audio/speech"),
    ];
    for (method, path) in refused {
        let auth = format!("Bearer {key}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let r = request(port, method, path, &headers, br#"{"model": "gpt-4o-mini"}"#);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.error_code(), "unknown_route", "{method} {path}");
    }
    let reached: Vec<String> = env
        .upstream
        .paths()
        .into_iter()
        .filter(|p| refused.iter().any(|(_, r)| p.starts_with(r)))
        .collect();
    assert!(reached.is_empty(), "forwarded: {reached:?}");

    let tag = support::unique("background");
    let body = json!({"model": "gpt-4o-mini", "input": "hi", "background": true});
    let r = call(port, &key, "/v1/responses", &body, &[("x-test-tag", &tag)]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "background");
    assert!(env.upstream.tagged(&tag).is_empty());
    nothing_metered(port, &key);
}

#[test]
fn path_aliases_are_404_and_never_forwarded() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let tag = support::unique("alias");
    let aliases = [
        "/v1/chat/%63ompletions",
        "/v1/chat/completions/",
        "/v1//chat/completions",
        "/v1/Chat/completions",
    ];
    for path in aliases {
        let r = call(port, &key, path, &ask(), &[("x-test-tag", &tag)]);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.error_code(), "unknown_route", "{path}");
    }
    assert!(
        env.upstream.tagged(&tag).is_empty(),
        "an alias was forwarded"
    );
    nothing_metered(port, &key);
}

#[test]
fn models_are_answered_from_the_catalog() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let r = send(port, &key, "GET", "/v1/models");
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    let mut ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {list}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "audio-test",
            "claude-test",
            "gpt-4o-mini",
            "text-embedding-3-small"
        ]
    );
    let r = send(port, &key, "GET", "/v1/models/gpt-4o-mini");
    assert_eq!(
        (r.status, r.json()["id"].as_str()),
        (200, Some("gpt-4o-mini"))
    );
    assert_eq!(send(port, &key, "GET", "/v1/models/gpt-nope").status, 404);
    let asked = env.upstream.paths();
    assert!(
        !asked.iter().any(|p| p.starts_with("/v1/models")),
        "{asked:?}"
    );
}

#[test]
fn only_allowlisted_headers_cross_either_way() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let dropped = [
        ("openai-organization", "org-client"),
        ("openai-project", "proj_client"),
        ("cookie", "session=client"),
        ("anthropic-beta", "unlisted-beta-2099-01-01"),
        ("x-stainless-lang", "python"),
    ];
    for stream in [false, true] {
        let tag = support::unique("headers");
        // one Idempotency-Key per body: reusing one with another body is refused
        let idem = format!("hygiene-{tag}");
        let mut headers = dropped.to_vec();
        headers.push(("x-test-tag", &tag));
        headers.push(("idempotency-key", &idem));
        let r = chat(port, &key, &ask_with(json!({"stream": stream})), &headers);
        assert_eq!(r.status, 200, "{}", r.text());
        no_operator_leak(&r);
        let seen = env.upstream.tagged(&tag);
        assert_eq!(seen.len(), 1);
        for name in dropped.iter().map(|(n, _)| *n).chain(["idempotency-key"]) {
            assert!(seen[0].header(name).is_none(), "{name} was forwarded");
        }
        let auths: Vec<&(String, String)> = seen[0]
            .headers
            .iter()
            .filter(|(k, _)| k == "authorization" || k == "x-api-key")
            .collect();
        assert_eq!(
            auths,
            [&(
                "authorization".to_string(),
                format!("Bearer {UPSTREAM_KEY}")
            )]
        );
    }
}

#[test]
fn user_identifiers_are_replaced_per_customer() {
    let env = shared();
    let port = env.worker.port;
    let (_, a) = customer(port, "open");
    let (_, b) = customer(port, "open");
    let ids = json!({"user": "alice", "safety_identifier": "alice-safety", "prompt_cache_key": "alice-cache",
        "metadata": {"team": "alice"}, "store": true});
    let forwarded = |key: &str| {
        let tag = support::unique("user");
        let r = chat(port, key, &ask_with(ids.clone()), &[("x-test-tag", &tag)]);
        assert_eq!(r.status, 200, "{}", r.text());
        env.upstream.tagged(&tag)[0].json()
    };
    let (a1, a2, b1) = (forwarded(&a), forwarded(&a), forwarded(&b));
    for field in ["user", "safety_identifier", "prompt_cache_key"] {
        assert!(a1[field].is_string(), "{field} dropped: {a1}");
        assert_ne!(a1[field], ids[field], "{field} forwarded as sent");
        assert_eq!(a1[field], a2[field], "{field} differs for one customer");
        assert_ne!(a1[field], b1[field], "{field} equal for two customers");
    }
    assert!(a1.get("metadata").is_none(), "{a1}");
    assert_eq!(a1["store"], false, "{a1}");
}

#[test]
fn bad_bodies_are_400_before_the_upstream() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let tag = support::unique("badbody");
    let bad = [
        (ask_with(json!({"frobnicate": 1})), Some("frobnicate")),
        (ask_with(json!({"stream": "yes"})), Some("stream")),
        (ask_with(json!({"Model": "gpt-4o-mini"})), None),
    ];
    for (body, param) in bad {
        let r = chat(port, &key, &body, &[("x-test-tag", &tag)]);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        r.error_type();
        if let Some(param) = param {
            assert_eq!(r.json()["error"]["param"], param, "{}", r.text());
        }
    }
    let r = chat(port, &key, &ask_with(json!({"frobnicate": 1})), &[]);
    assert_eq!(r.error_code(), "unknown_parameter");
    let long = "k".repeat(256);
    let r = chat(
        port,
        &key,
        &ask(),
        &[("idempotency-key", &long), ("x-test-tag", &tag)],
    );
    assert_eq!(
        r.status,
        400,
        "a 256-character Idempotency-Key: {}",
        r.text()
    );
    assert!(env.upstream.tagged(&tag).is_empty());
    nothing_metered(port, &key);
}

#[test]
fn provider_errors_do_not_leak_the_operator_account() {
    let port = shared().worker.port;
    let (_, key) = customer(port, "open");
    let r = chat(port, &key, &ask(), &[("x-fake-status", "401")]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "upstream_auth_error")
    );
    no_operator_leak(&r);
    let r = chat(port, &key, &ask(), &[("x-fake-status", "429")]);
    assert_eq!(r.status, 503, "{}", r.text());
    let retry = r.header("retry-after").and_then(|s| s.parse::<u64>().ok());
    assert!(retry.is_some(), "no Retry-After: {:?}", r.headers);
    no_operator_leak(&r);
    let r = chat(port, &key, &ask(), &[("x-fake-status", "400")]);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(
        (&e["type"], &e["code"], &e["param"]),
        (
            &json!("invalid_request_error"),
            &json!("invalid_value"),
            &json!("temperature")
        )
    );
    no_operator_leak(&r);
    nothing_metered(port, &key);
}

#[test]
fn upstream_redirects_are_not_followed() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let r = chat(port, &key, &ask(), &[("x-fake-redirect", "1")]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "upstream_redirect")
    );
    assert!(!r.text().contains("redirect followed"));
    assert!(!env.upstream.paths().iter().any(|p| p == REDIRECT_TARGET));
    nothing_metered(port, &key);
}

#[test]
fn test_and_live_keys_share_neither_idempotency_nor_usage() {
    let port = shared().worker.port;
    let (id, live) = customer(port, "open");
    let test = issue_key(port, &id, "test");
    let first = chat(port, &live, &ask(), &[("idempotency-key", "k1")]);
    assert_eq!(first.status, 200, "{}", first.text());
    settled_usage(port, &live);
    let again = chat(port, &live, &ask(), &[("idempotency-key", "k1")]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let usage = settled_usage(port, &test);
    assert_eq!(
        usage["totals"]["requests"], 0,
        "test usage shows live: {usage}"
    );

    let r = chat(port, &test, &ask(), &[("idempotency-key", "k1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("idempotent-replayed"),
        None,
        "live answer replayed"
    );
    assert_ne!(r.body, first.body);
    let content = r.json()["choices"][0]["message"]["content"].clone();
    assert!(
        content.as_str().is_some_and(|c| c.starts_with("This")),
        "{content}"
    );
}
