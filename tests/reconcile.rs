//! Reconciliation under injected faults: every other delivery to the rating endpoint
//! fails, workerd is killed (SIGKILL) mid-way and restarted on its storage, and one
//! stream is cut off before its usage comes (its settlement dies with workerd, and
//! its reservation expires at its bound). The report of the customer's period puts
//! metered, provider-reported, estimated, acknowledged, held and rated side by side:
//! along the way every difference has a cause, and once everything is flushed the
//! only one left is the estimate; the fleet summary and `scripts/reconcile` agree.

mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use support::rating::{put_account, rating_call, SECRET};
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker, ADMIN_TOKEN};
use support::{admin, chat, customer, http, push_now};

fn book() -> String {
    json!({"version": "rc1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"open": {"charges": [
            {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0.001"}},
            {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "output_tokens", "pricing": {"kind": "per_unit", "unit_price": "0.002"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0.01"}}]}}})
    .to_string()
}

fn start(dir: &std::path::Path, upstream: &FakeUpstream) -> Worker {
    let book = book();
    let vars = [
        ("TEST_CLOCK", "on"),
        ("ABORT_DRAIN_MS", "1000"),
        ("RATING_URL", "internal"),
        ("RATING_SECRET", SECRET),
        ("FLUSH_SHARDS", "1"),
        ("FLUSH_PUSH_MS", "0"),
        ("FLUSH_BACKOFF_MS", "0"),
        ("PRICE_BOOK", book.as_str()),
    ];
    let worker = Worker::start_with(dir, &upstream.url(), &support::catalog(), &vars);
    let r = admin(
        worker.port,
        "POST",
        "/admin/v1/test/faults",
        &json!({"fail_every_other_delivery": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    worker
}

fn ask(max_tokens: u64, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say something"}]})
}

/// Output tokens the provider reported, from a non-streamed answer.
fn chat_once(port: u16, key: &str) -> u64 {
    let r = chat(port, key, &ask(5, false), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["usage"]["completion_tokens"].as_u64().unwrap()
}

/// Starts a stream of `tokens`, one every `delay_ms`, and hangs up after the first.
fn leave_stream(port: u16, key: &str, tokens: u64, delay_ms: &str) {
    let auth = format!("Bearer {key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-fake-delay-ms", delay_ms),
    ];
    let body = ask(tokens, true).to_string();
    http::read_then_hang_up(
        port,
        "/v1/chat/completions",
        &headers,
        body.as_bytes(),
        "tok0 ",
    );
}

fn report(port: u16, id: &str) -> Value {
    let path = format!("/rating/v1/customers/{id}/reconciliation/now");
    let r = rating_call(port, "GET", &path, &Value::Null);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Whether anything but the estimate is still to be flushed.
fn settled(report: &Value) -> bool {
    let diffs = report["differences"].as_array().unwrap();
    diffs.iter().all(|d| d["between"] == "metered - reported")
}

#[test]
fn the_report_explains_every_difference_under_faults_and_ends_exact() {
    let upstream = FakeUpstream::start(0);
    let dir = scratch("reconcile");
    let worker = start(&dir, &upstream);
    let port = worker.port;
    let (id, key) = customer(port, "open");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(put_account(port, &id, &account).status, 200);

    let mut reported_output = 0;
    for _ in 0..4 {
        reported_output += chat_once(port, &key);
    }
    // The client leaves; the provider still reports all 20 tokens: exact, not estimated.
    leave_stream(port, &key, 20, "40");
    reported_output += 20;
    // Tokens 1.5 s apart outlast the 1 s drain budget: billed its bound, estimated.
    leave_stream(port, &key, 12, "1500");
    // Half the deliveries fail: along the way every difference has a known cause.
    for _ in 0..3 {
        admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        let r = report(port, &id);
        assert_eq!(r["unexplained"], 0, "{r}");
    }
    worker.kill();

    // If the kill came before the cut-off stream settled, its reservation is still
    // held: 16 minutes on it has expired, billed at its bound, estimated.
    let worker = start(&dir, &upstream);
    let port = worker.port;
    let r = admin(
        port,
        "POST",
        "/admin/v1/test/clock",
        &json!({"advance_ms": 16 * 60_000}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..3 {
        reported_output += chat_once(port, &key);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let last = loop {
        push_now(port, &id);
        let run = admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        assert_eq!(run.status, 200, "{}", run.text());
        push_now(port, &id); // learns what was acknowledged
        let r = report(port, &id);
        assert_eq!(r["unexplained"], 0, "{r}");
        if settled(&r) {
            break r;
        }
        assert!(Instant::now() < deadline, "never fully flushed: {r}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let line = &last["lines"][0];
    assert_eq!(line["metered"]["requests"], 9, "{last}");
    assert_eq!(line["rated"], line["metered"], "{last}");
    assert_eq!(line["acknowledged"], line["metered"], "{last}");
    assert_eq!(line["estimated_requests"], 1, "{last}");
    assert_eq!(line["estimated_output"], 12, "{last}");
    assert!(line["estimated_input"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(line["reported_output"], reported_output, "{last}");
    let estimate = &last["differences"][0];
    assert_eq!(estimate["explained"], true, "{last}");
    assert_eq!(estimate["amounts"]["output"], 12, "{last}");

    // The fleet summary, through the shards, says the same.
    let fleet = admin(port, "GET", "/admin/v1/reconciliation/now", &Value::Null);
    assert_eq!(fleet.status, 200, "{}", fleet.text());
    let fleet = fleet.json();
    assert_eq!(
        (fleet["customers"].as_u64(), fleet["unexplained"].as_u64()),
        (Some(1), Some(0)),
        "{fleet}"
    );
    assert_eq!(fleet["rated"], line["metered"], "{fleet}");
    assert_eq!(fleet["failed"], json!([]), "{fleet}");

    // So does scripts/reconcile, and it fails for a customer it cannot find.
    let script = |customers: &[&str]| {
        let root = env!("CARGO_MANIFEST_DIR");
        Command::new(format!("{root}/scripts/reconcile"))
            .args([
                "--url",
                &format!("http://127.0.0.1:{port}"),
                "--token",
                ADMIN_TOKEN,
            ])
            .args(customers)
            .output()
            .unwrap()
    };
    let out = script(&[&id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 unexplained"), "{text}");
    assert!(
        text.contains("explained: chat.completions gpt-4o-mini metered - reported"),
        "{text}"
    );
    assert!(!script(&["nobody-here"]).status.success());
    worker.stop();
}
