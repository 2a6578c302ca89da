//! Exports that real receivers accept: Lago's batch endpoint and OpenMeter's CloudEvents
//! endpoint, found from a bare host, with the `Authorization: Bearer` each requires
//! (`RATING_AUTH`); Lago events name the customer's subscription, and a customer
//! without one is set aside (counted), never sent under a wrong id. The built-in
//! rating endpoint takes every format edgemeter emits.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::receiver::Receiver;
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker};
use support::{admin, chat, issue_key, unique};

const SECRET: &str = "whsec_exports";

fn start(upstream: &FakeUpstream, receiver: &Receiver, format: &str, catalog: &str) -> Worker {
    let url = format!("http://127.0.0.1:{}", receiver.port);
    let vars = [
        ("RATING_URL", url.as_str()),
        ("RATING_FORMAT", format),
        ("RATING_SECRET", SECRET),
        ("RATING_AUTH", "receiver-token"),
        ("FLUSH_SHARDS", "1"),
        ("FLUSH_PUSH_MS", "0"),
        ("FLUSH_BACKOFF_MS", "0"),
    ];
    Worker::start_with(
        &scratch(&format!("exports-{format}")),
        &upstream.url(),
        catalog,
        &vars,
    )
}

/// A customer with a chosen id, one request of usage; returns its key.
fn customer_with_usage(port: u16, id: &str) -> String {
    let r = admin(
        port,
        "POST",
        "/admin/v1/customers",
        &json!({"id": id, "plan": "open"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = issue_key(port, id, "live");
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(chat(port, &key, &ask, &[]).status, 200);
    key
}

/// Runs the flush until `done` holds for the receiver (at most a minute).
fn flush_until(port: u16, receiver: &Receiver, done: impl Fn(&Receiver) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(receiver) {
        assert!(Instant::now() < deadline, "the receiver never got it");
        let r = admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        assert_eq!(r.status, 200, "{}", r.text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn lago_gets_subscriptions_and_its_bearer_token_at_its_batch_endpoint() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    receiver.state.lock().unwrap().required_auth = Some("receiver-token".into());
    let (mapped, unmapped) = (unique("lago-a"), unique("lago-b"));
    let mut catalog: Value = serde_json::from_str(&support::catalog()).unwrap();
    catalog["subscriptions"] = json!({ mapped.clone(): "sub_123" });
    let worker = start(&upstream, &receiver, "lago", &catalog.to_string());
    let port = worker.port;
    customer_with_usage(port, &mapped);
    customer_with_usage(port, &unmapped);
    flush_until(port, &receiver, |r| {
        !r.state.lock().unwrap().records.is_empty()
    });
    let state = receiver.state.lock().unwrap();
    assert!(
        state.paths.iter().all(|p| p == "/api/v1/events/batch"),
        "{:?}",
        state.paths
    );
    assert!(
        state.subscriptions.iter().all(|s| s == "sub_123"),
        "{:?}",
        state.subscriptions
    );
    assert!(state
        .records
        .values()
        .all(|r| r["customer"] == mapped.as_str()));
    drop(state);
    // The unmapped customer's records wait aside, counted, with the reason.
    let stats = dead_letters_after_runs(port);
    assert_eq!(stats["overall"]["dead_letters"], 1, "{stats}");
    assert!(stats["overall"]["last_error"].is_null(), "{stats}");
    worker.stop();
}

#[test]
fn openmeter_gets_cloudevents_with_its_bearer_token() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    receiver.state.lock().unwrap().required_auth = Some("receiver-token".into());
    let worker = start(&upstream, &receiver, "cloudevents", &support::catalog());
    let id = unique("om");
    customer_with_usage(worker.port, &id);
    flush_until(worker.port, &receiver, |r| {
        !r.state.lock().unwrap().records.is_empty()
    });
    let state = receiver.state.lock().unwrap();
    assert!(
        state.paths.iter().all(|p| p == "/api/v1/events"),
        "{:?}",
        state.paths
    );
    let record = state.records.values().next().unwrap();
    assert_eq!(
        (record["customer"].as_str(), record["requests"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    drop(state);
    worker.stop();
}

/// The flush stats once a run has set something aside (at most 30 s of runs).
fn dead_letters_after_runs(port: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        let stats = admin(port, "GET", "/admin/v1/flush", &Value::Null).json();
        if stats["overall"]["dead_letters"].as_u64() > Some(0) {
            return stats;
        }
        assert!(Instant::now() < deadline, "nothing was set aside: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_receiver_that_requires_a_token_refuses_batches_without_it() {
    // Without RATING_AUTH, the batch is refused and kept aside, not lost.
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    receiver.state.lock().unwrap().required_auth = Some("another-token".into());
    let worker = start(&upstream, &receiver, "cloudevents", &support::catalog());
    customer_with_usage(worker.port, &unique("om"));
    dead_letters_after_runs(worker.port);
    // it was sent, and refused: nothing recorded
    assert!(receiver.state.lock().unwrap().requests > 0);
    assert!(receiver.state.lock().unwrap().records.is_empty());
    worker.stop();
}

#[test]
fn the_built_in_rating_endpoint_takes_every_format() {
    for format in ["cloudevents", "lago"] {
        let upstream = FakeUpstream::start(0);
        let book = json!({"version": "e1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
            "plans": {"open": {"charges": [
                {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
                {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
                {"meter": "output_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
                {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0.50"}}]}}});
        let id = unique("internal");
        let mut catalog: Value = serde_json::from_str(&support::catalog()).unwrap();
        catalog["subscriptions"] = json!({ id.clone(): "sub_internal" });
        let vars = [
            ("RATING_URL", "internal"),
            ("RATING_FORMAT", format),
            ("RATING_SECRET", SECRET),
            ("FLUSH_SHARDS", "1"),
            ("FLUSH_PUSH_MS", "0"),
            ("FLUSH_BACKOFF_MS", "0"),
            ("PRICE_BOOK", &book.to_string()),
        ];
        let dir = scratch(&format!("exports-internal-{format}"));
        let worker = Worker::start_with(&dir, &upstream.url(), &catalog.to_string(), &vars);
        let port = worker.port;
        customer_with_usage(port, &id);
        let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
        assert_eq!(
            support::rating::put_account(port, &id, &account).status,
            200
        );
        let invoice = support::rating::invoice_when(port, &id, |inv| {
            let lines = inv["lines"].as_array();
            lines.is_some_and(|l| l.iter().any(|l| l["meter"] == "requests"))
        });
        assert_eq!(invoice["subtotal"], "0.50", "{format}: {invoice}");
        worker.stop();
    }
}

/// Settings that cannot work are reported by `/healthz`, each named.
#[test]
fn healthz_names_settings_that_cannot_work() {
    let upstream = FakeUpstream::start(0);
    let vars = [
        ("RATING_URL", "https://api.getlago.com"),
        ("RATING_FORMAT", "lago"),
    ];
    let worker = Worker::start_with(
        &scratch("exports-unhealthy"),
        &upstream.url(),
        &support::catalog(),
        &vars,
    );
    let r = support::http::request(worker.port, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 503, "{}", r.text());
    let problems = r.json()["problems"].to_string();
    for needle in ["RATING_SECRET", "RATING_AUTH", "subscriptions"] {
        assert!(problems.contains(needle), "{needle}: {problems}");
    }
    worker.stop();
}

/// A receiver that refuses some records inside its 2xx: exactly those are set aside,
/// counted, and the rest of the batch is acknowledged.
#[test]
fn records_refused_one_by_one_are_kept_aside_and_the_rest_acknowledged() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    let worker = start(&upstream, &receiver, "native", &support::catalog());
    let port = worker.port;
    let (good, bad) = (unique("good"), unique("bad"));
    receiver.state.lock().unwrap().refuse_customer = Some(bad.clone());
    customer_with_usage(port, &good);
    customer_with_usage(port, &bad);
    let stats = dead_letters_after_runs(port);
    flush_until(port, &receiver, |r| {
        !r.state.lock().unwrap().records.is_empty()
    });
    let state = receiver.state.lock().unwrap();
    assert!(state
        .records
        .values()
        .all(|r| r["customer"] == good.as_str()));
    drop(state);
    assert_eq!(stats["overall"]["pending_records"], 0, "{stats}");
    // The refused customer's usage stays in flight on its counter: never lost.
    let flush = support::counter_flush(port, &bad);
    assert_eq!(flush["flushed_seq"], 0, "{flush}");
    worker.stop();
}

/// A dead letter requeued to a receiver that now takes all but one customer's records:
/// the rest is acknowledged and the letter keeps only what was refused.
#[test]
fn a_requeued_letter_refused_in_part_keeps_only_the_refused_records() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start("not-the-secret"));
    let worker = start(&upstream, &receiver, "native", &support::catalog());
    let port = worker.port;
    let (good, bad) = (unique("good"), unique("bad"));
    let good_key = customer_with_usage(port, &good);
    let bad_key = customer_with_usage(port, &bad);
    // Both in the shard before the first run: one batch holds both customers.
    support::wait_pushed(port, &[(good.clone(), good_key), (bad.clone(), bad_key)]);
    // The wrong secret: every batch is refused whole and kept aside, both customers'.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = dead_letters_after_runs(port);
        if stats["overall"]["pending_records"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
    }
    let requeue = || {
        let r = admin(port, "POST", "/admin/v1/flush/requeue", &Value::Null);
        assert_eq!(r.status, 200, "{}", r.text());
        admin(port, "GET", "/admin/v1/flush", &Value::Null).json()
    };
    {
        let mut state = receiver.state.lock().unwrap();
        state.secret = SECRET.into();
        state.refuse_customer = Some(bad.clone());
    }
    let stats = requeue();
    assert!(
        stats["overall"]["dead_letters"].as_u64() >= Some(1),
        "{stats}"
    );
    let records = receiver.state.lock().unwrap().records.clone();
    assert!(records.values().any(|r| r["customer"] == good.as_str()));
    assert!(records.values().all(|r| r["customer"] != bad.as_str()));
    // The good customer's records are acknowledged back to its counter.
    let flushed = support::push_now(port, &good);
    assert!(flushed["flushed_seq"].as_u64() > Some(0), "{flushed}");
    // Taken once the receiver takes it too: nothing left aside.
    receiver.state.lock().unwrap().refuse_customer = None;
    let stats = requeue();
    assert_eq!(stats["overall"]["dead_letters"], 0, "{stats}");
    worker.stop();
}
