//! Shared integration-test harness: the built worker under `wrangler dev`, the fake
//! upstream, and helpers to create customers and read their usage.
#![allow(dead_code)]

pub mod http;
pub mod rating;
pub mod receiver;
pub mod upstream;
pub mod wire;
pub mod workerd;
pub mod wrangler;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use upstream::FakeUpstream;
use wrangler::{Worker, ADMIN_TOKEN};

/// The catalog the tests run with: one plan per limit under test.
pub fn catalog() -> String {
    json!({
        "version": "test-1",
        "currency": "USD",
        "models": {
            "gpt-4o-mini": {"input_per_mtok": "0.15", "cached_input_per_mtok": "0.075", "output_per_mtok": "0.60",
                "image_input_tokens": upstream::IMAGE_TOKENS, "max_output_tokens": 16384},
            "text-embedding-3-small": {"input_per_mtok": "0.02"},
            "claude-test": {"input_per_mtok": "3", "output_per_mtok": "15"},
            "audio-test": {"input_per_mtok": "2.50", "output_per_mtok": "10", "audio_input_per_mtok": "40",
                "audio_tokens_per_kib": 1024}
        },
        "plans": {
            "open": {},
            "fifty": {"requests_per_period": 50},
            "rpm": {"requests_per_minute": 2},
            "tpm": {"tokens_per_minute": 100},
            "tokens": {"included_tokens": 200, "token_cap": "hard", "default_max_output_tokens": 40},
            "big": {"included_tokens": 5000, "token_cap": "hard", "default_max_output_tokens": 40},
            "spend": {"spend_cap": "0.00001"},
            "solo": {"max_concurrent": 1},
            "prepaid": {}
        },
        // the headers that steer the fake upstream must reach it
        "proxy": {"request_headers": ["x-test-tag", "x-fake-status", "x-fake-delay-ms", "x-fake-size", "x-fake-redirect", "x-fake-stream-error", "x-fake-chunked", "x-fake-break"]}
    })
    .to_string()
}

pub struct Env {
    pub upstream: FakeUpstream,
    pub worker: Worker,
}

/// One worker and one upstream shared by all tests of a test binary.
pub fn shared() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let upstream = FakeUpstream::start(0);
        let worker = Worker::start(&wrangler::scratch("shared"), &upstream.url(), &catalog());
        Env { upstream, worker }
    })
}

/// The built wasm under plain `workerd` (no dev proxy in front) and its own upstream,
/// shared by a test binary's bursts: under hundreds of new connections at once,
/// `wrangler dev`'s proxy sometimes failed its own hop to the runtime and answered 503
/// ("Your worker restarted mid-request") for requests it never passed on.
pub struct Plain {
    pub upstream: FakeUpstream,
    pub workerd: workerd::Workerd,
}

pub fn plain() -> &'static Plain {
    static ENV: OnceLock<Plain> = OnceLock::new();
    ENV.get_or_init(|| {
        let upstream = FakeUpstream::start(0);
        let workerd = workerd::Workerd::start(&upstream.url(), &catalog(), 0);
        Plain { upstream, workerd }
    })
}

/// A customer id no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{prefix}-{stamp}-{}", N.fetch_add(1, Ordering::Relaxed))
}

pub fn admin(port: u16, method: &str, path: &str, body: &Value) -> http::Resp {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    http::request(
        port,
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &bytes,
    )
}

/// Creates a customer on `plan` and issues a live key; returns (customer id, key).
pub fn customer(port: u16, plan: &str) -> (String, String) {
    customer_with_mode(port, plan, "live")
}

/// Creates a customer on `plan` and issues a key of `mode` ("live" or "test").
pub fn customer_with_mode(port: u16, plan: &str, mode: &str) -> (String, String) {
    let id = unique(plan);
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": id, "plan": plan}),
    );
    assert_eq!(r.status, 201, "create customer: {}", r.text());
    let key = issue_key(port, &id, mode);
    (id, key)
}

/// Issues another key of `mode` for an existing customer.
pub fn issue_key(port: u16, id: &str, mode: &str) -> String {
    let r = admin(
        port,
        "POST",
        &format!("/admin/v1/customers/{id}/keys"),
        &json!({"mode": mode}),
    );
    assert_eq!(r.status, 201, "issue key: {}", r.text());
    r.json()["key"].as_str().unwrap().to_string()
}

/// The worker's per-isolate counters (`GET /admin/v1/metrics`).
pub fn metrics(port: u16) -> Value {
    let r = admin(port, "GET", "/admin/v1/metrics", &Value::Null);
    assert_eq!(r.status, 200, "metrics: {}", r.text());
    r.json()
}

/// A request without a body, with a customer key.
pub fn send(port: u16, key: &str, method: &str, path: &str) -> http::Resp {
    let auth = format!("Bearer {key}");
    http::request(port, method, path, &[("authorization", &auth)], b"")
}

/// Uploads `content` as a file (`POST /v1/files`, multipart/form-data).
pub fn upload(port: u16, key: &str, purpose: &str, filename: &str, content: &[u8]) -> http::Resp {
    let boundary = "edgemeter-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let auth = format!("Bearer {key}");
    let ct = format!("multipart/form-data; boundary={boundary}");
    http::request(
        port,
        "POST",
        "/v1/files",
        &[("authorization", &auth), ("content-type", &ct)],
        &body,
    )
}

/// POSTs JSON with a customer key and extra headers.
pub fn call(port: u16, key: &str, path: &str, body: &Value, extra: &[(&str, &str)]) -> http::Resp {
    let auth = format!("Bearer {key}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    http::request(port, "POST", path, &headers, body.to_string().as_bytes())
}

pub fn chat(port: u16, key: &str, body: &Value, extra: &[(&str, &str)]) -> http::Resp {
    call(port, key, "/v1/chat/completions", body, extra)
}

/// The customer's usage once every reservation has settled (settlement runs after
/// the response). Panics if something stays in flight for 30 s.
pub fn settled_usage(port: u16, key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http::request(
            port,
            "GET",
            "/v1/usage",
            &[("authorization", &format!("Bearer {key}"))],
            b"",
        );
        assert_eq!(r.status, 200, "usage: {}", r.text());
        let v = r.json();
        if v["totals"]["in_flight"] == 0 {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "requests still in flight after 30 s: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The usage row of one meter and model, or zeros.
pub fn meter(usage: &Value, meter: &str, model: &str) -> Value {
    let rows = usage["meters"].as_array().cloned().unwrap_or_default();
    rows.into_iter()
        .find(|m| m["meter"] == meter && m["model"] == model)
        .unwrap_or_else(
            || json!({"requests": 0, "input": 0, "output": 0, "cached": 0, "estimated": 0}),
        )
}

/// A counter's flush state (`GET /admin/v1/customers/{id}/flush`).
pub fn counter_flush(port: u16, id: &str) -> Value {
    counter_flush_call(port, "GET", id)
}

/// Has the counter push to its shard now, then answers its flush state.
pub fn push_now(port: u16, id: &str) -> Value {
    counter_flush_call(port, "POST", id);
    counter_flush(port, id)
}

fn counter_flush_call(port: u16, method: &str, id: &str) -> Value {
    let path = format!("/admin/v1/customers/{id}/flush");
    let r = admin(port, method, &path, &Value::Null);
    assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    r.json()
}

/// Waits until every counter's shard has stored all its usage (the counter pushes
/// right after its settlements, or on its alarm).
pub fn wait_pushed(port: u16, keys: &[(String, String)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, key) in keys {
        settled_usage(port, key);
        loop {
            let f = counter_flush(port, id);
            if f["pushed_seq"] == f["seq"] {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never pushed: {f}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
