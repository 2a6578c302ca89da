//! New meters end to end: an Anthropic answer with cache reads and writes (5-minute and
//! one-hour) is tallied by the counter, flushed as a schema-2 record, and rated by the
//! built-in rating endpoint at the price book's cache-write prices, which the edge's own
//! cost agrees with exactly.

mod support;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::rating::{put_account, rating_call, SECRET};
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker};
use support::{admin, call, customer, meter, settled_usage};

fn book() -> String {
    let charge = |meter: &str, price: &str| {
        json!({"meter": meter, "model": "claude-test", "price_per": 1000,
            "pricing": {"kind": "per_unit", "unit_price": price}})
    };
    json!({"version": "c1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"open": {"charges": [
            charge("input_tokens", "3.00"), charge("cached_input_tokens", "0.30"),
            charge("cache_write_tokens", "3.75"), charge("cache_write_1h_tokens", "6.00"),
            charge("output_tokens", "15.00"),
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0"}}]}}})
    .to_string()
}

fn month_start() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    edgemeter::period::iso8601(edgemeter::period::period_at(now_ms, 1).start_ms)[..10].to_string()
}

#[test]
fn cache_writes_are_metered_flushed_and_priced_end_to_end() {
    let upstream = FakeUpstream::start(0);
    let book = book();
    let vars = [
        ("ANTHROPIC_UPSTREAM_URL", upstream.url()),
        ("RATING_URL", "internal".into()),
        ("RATING_SECRET", SECRET.into()),
        ("FLUSH_SHARDS", "1".into()),
        ("FLUSH_PUSH_MS", "0".into()),
        ("FLUSH_BACKOFF_MS", "0".into()),
        ("PRICE_BOOK", book.clone()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = Worker::start_with(
        &scratch("cache-meters"),
        &upstream.url(),
        &support::catalog(),
        &vars,
    );
    let port = worker.port;
    let (id, key) = customer(port, "open");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(put_account(port, &id, &account).status, 200);
    let body = json!({"model": "claude-test", "max_tokens": 7,
        "messages": [{"role": "user", "content": "Summarise the cached document."}]});
    let r = call(
        port,
        &key,
        "/v1/messages",
        &body,
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The counter's tally: the whole prompt is input, its parts beside it.
    let usage = settled_usage(port, &key);
    let row = meter(&usage, "messages", "claude-test");
    let n = |f: &str| row[f].as_u64().unwrap_or(0);
    let parts = [
        n("input"),
        n("cached"),
        n("cache_write"),
        n("cache_write_1h"),
        n("output"),
    ];
    assert_eq!(parts, [130, 20, 60, 40, 7], "{usage}");

    // Flushed and rated: each part on its own invoice line at its own price.
    let path = format!("/rating/v1/customers/{id}/invoices/{}", month_start());
    let deadline = Instant::now() + Duration::from_secs(60);
    let invoice = loop {
        assert_eq!(
            admin(port, "POST", "/admin/v1/flush/run", &Value::Null).status,
            200
        );
        let inv = rating_call(port, "GET", &path, &Value::Null).json();
        let has_writes = inv["lines"]
            .as_array()
            .is_some_and(|lines| lines.iter().any(|l| l["meter"] == "cache_write_1h_tokens"));
        if has_writes {
            break inv;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached the invoice: {inv}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let line = |meter: &str| -> Decimal {
        let lines = invoice["lines"].as_array().unwrap();
        let l = lines.iter().find(|l| l["meter"] == meter);
        let l = l.unwrap_or_else(|| panic!("no {meter} line: {invoice}"));
        l["exact_amount"].as_str().unwrap().parse().unwrap()
    };
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    // fresh 10 * 3.00, cached 20 * 0.30, 5-minute writes 60 * 3.75, one-hour 40 * 6.00,
    // output 7 * 15.00, all per 1,000
    assert_eq!(line("input_tokens"), d("0.03"));
    assert_eq!(line("cached_input_tokens"), d("0.006"));
    assert_eq!(line("cache_write_tokens"), d("0.225"));
    assert_eq!(line("cache_write_1h_tokens"), d("0.24"));
    assert_eq!(line("output_tokens"), d("0.105"));
    // One engine: the edge's cost of the same usage is the invoice's.
    let edge: Decimal = settled_usage(port, &key)["totals"]["cost"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(edge, d("0.606"));
    worker.stop();
}
