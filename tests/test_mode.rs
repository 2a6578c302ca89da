//! Test mode kept apart, as Stripe keeps it: a customer's `em_test_` usage is metered
//! and flushed with `livemode: false`, rated on its own test invoices, never on a live
//! one, and sent to an external receiver only when `EXPORT_TEST_USAGE` asks for it.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::rating::{flushing_to_internal, invoice_when, put_account, rating_call, SECRET};
use support::receiver::Receiver;
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker};
use support::{admin, chat, customer, issue_key};

fn book() -> String {
    json!({"version": "tm1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"open": {"charges": [
            {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "output_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0.01"}}]}}})
    .to_string()
}

fn ask() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
}

/// The quantity of the invoice's `requests` line, 0 without one.
fn requests(inv: &Value) -> u64 {
    let lines = inv["lines"].as_array().cloned().unwrap_or_default();
    let line = lines.iter().find(|l| l["meter"] == "requests");
    line.and_then(|l| l["quantity"].as_str().and_then(|q| q.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn test_key_usage_has_its_own_invoice_and_never_reaches_the_live_one() {
    let upstream = FakeUpstream::start(0);
    let worker = flushing_to_internal("test-mode", &upstream, &book());
    let port = worker.port;
    let (id, live) = customer(port, "open");
    let test = issue_key(port, &id, "test");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(put_account(port, &id, &account).status, 200);
    let path = format!("/rating/v1/customers/{id}/account?livemode=false");
    assert_eq!(rating_call(port, "PUT", &path, &account).status, 200);

    assert_eq!(chat(port, &live, &ask(), &[]).status, 200);
    for _ in 0..3 {
        assert_eq!(chat(port, &test, &ask(), &[]).status, 200);
    }
    let live_invoice = invoice_when(port, &id, |inv| requests(inv) >= 1);
    // The test usage is flushed too: wait for its own invoice to show all of it.
    let month = support::rating::month_start();
    let test_path = format!("/rating/v1/customers/{id}/invoices/{month}?livemode=false");
    let deadline = Instant::now() + Duration::from_secs(60);
    let test_invoice = loop {
        let run = admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        assert_eq!(run.status, 200, "{}", run.text());
        let r = rating_call(port, "GET", &test_path, &Value::Null);
        assert_eq!(r.status, 200, "{}", r.text());
        let inv = r.json();
        if requests(&inv) >= 3 {
            break inv;
        }
        assert!(Instant::now() < deadline, "test usage never rated: {inv}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(requests(&test_invoice), 3, "{test_invoice}");
    assert_eq!(test_invoice["livemode"], false, "{test_invoice}");
    // Everything is flushed now; the live invoice still holds only the live request.
    let live_again = invoice_when(port, &id, |_| true);
    assert_eq!(requests(&live_again), 1, "{live_again}");
    assert_eq!(live_invoice["livemode"], true);
    let bad = format!("/rating/v1/customers/{id}/invoices/{month}?livemode=maybe");
    let r = rating_call(port, "GET", &bad, &Value::Null);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "livemode");
    worker.stop();
}

fn external(upstream: &FakeUpstream, receiver: &Receiver, export_test: &str) -> Worker {
    let url = format!("http://127.0.0.1:{}", receiver.port);
    let vars = [
        ("RATING_URL", url.as_str()),
        ("RATING_SECRET", SECRET),
        ("FLUSH_SHARDS", "1"),
        ("FLUSH_PUSH_MS", "0"),
        ("FLUSH_BACKOFF_MS", "0"),
        ("EXPORT_TEST_USAGE", export_test),
        ("PRICE_BOOK", &book()),
    ];
    let name = format!("test-mode-export-{export_test}");
    Worker::start_with(&scratch(&name), &upstream.url(), &support::catalog(), &vars)
}

/// The modes of what the receiver got, once it holds the live record (a minute at most).
fn modes_received(port: u16, receiver: &Receiver, id: &str) -> Vec<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        assert_eq!(run.status, 200, "{}", run.text());
        let state = receiver.state.lock().unwrap();
        let mine: Vec<&Value> = state
            .records
            .values()
            .filter(|r| r["customer"] == id)
            .collect();
        if mine.iter().any(|r| r["livemode"] == true) {
            return mine.iter().map(|r| r["livemode"] != false).collect();
        }
        let seen = (state.requests, state.records.len());
        drop(state);
        assert!(
            Instant::now() < deadline,
            "the live record never arrived: {seen:?} {} {}",
            run.text(),
            admin(port, "GET", "/admin/v1/flush", &Value::Null).text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_external_receiver_gets_test_usage_only_when_asked() {
    let upstream = FakeUpstream::start(0);
    for export in ["false", "true"] {
        let receiver = Receiver::start(SECRET);
        let worker = external(&upstream, &receiver, export);
        let port = worker.port;
        let (id, live) = customer(port, "open");
        let test = issue_key(port, &id, "test");
        // The test request first, so a run that delivers the live one has seen it.
        assert_eq!(chat(port, &test, &ask(), &[]).status, 200);
        support::push_now(port, &id);
        assert_eq!(chat(port, &live, &ask(), &[]).status, 200);
        let mut modes = modes_received(port, &receiver, &id);
        if export == "true" {
            // Both reach it; the test record says so.
            let deadline = Instant::now() + Duration::from_secs(60);
            while modes.len() < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                modes = modes_received(port, &receiver, &id);
            }
            modes.sort();
            assert_eq!(modes, vec![false, true]);
        } else {
            assert_eq!(modes, vec![true], "test usage was exported");
            // It went to the built-in ledger's test invoices instead.
            let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
            let path = format!("/rating/v1/customers/{id}/account?livemode=false");
            assert_eq!(rating_call(port, "PUT", &path, &account).status, 200);
            let month = support::rating::month_start();
            let path = format!("/rating/v1/customers/{id}/invoices/{month}?livemode=false");
            let inv = rating_call(port, "GET", &path, &Value::Null).json();
            assert_eq!(requests(&inv), 1, "{inv}");
        }
        worker.stop();
    }
}
