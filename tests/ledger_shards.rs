//! Ledger shards under `wrangler dev`: 10,000 customers' records ingested in flush-sized
//! batches with no error and each stored once; customers sharing a shard keep apart
//! ledgers (and a customer's test usage stays off its live invoice).

mod support;

use edgemeter::ledger::ledger_shard;
use serde_json::{json, Value};
use support::rating::{ingest, month_start, put_account, rating_call, record, SECRET};
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker};

const CUSTOMERS: usize = 10_000;
const BATCH: usize = 500;

fn book() -> String {
    json!({"version": "s1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"open": {"base_fee": "0", "charges": [
            {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "output_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0.01"}}]}}})
    .to_string()
}

fn requests_billed(port: u16, id: &str) -> Value {
    let path = format!("/rating/v1/customers/{id}/invoices/{}", month_start());
    let inv = rating_call(port, "GET", &path, &Value::Null).json();
    let lines = inv["lines"].as_array().cloned().unwrap_or_default();
    let line = lines.into_iter().find(|l| l["meter"] == "requests");
    line.map_or(Value::Null, |l| l["quantity"].clone())
}

#[test]
fn ten_thousand_customers_are_ingested_once_each_and_kept_apart() {
    let upstream = FakeUpstream::start(0);
    let book = book();
    let vars = [("RATING_SECRET", SECRET), ("PRICE_BOOK", book.as_str())];
    let worker = Worker::start_with(
        &scratch("shards"),
        &upstream.url(),
        &support::catalog(),
        &vars,
    );
    let port = worker.port;
    let start = edgemeter::period::parse_date(&month_start()).unwrap();
    let period = (start, start + 28 * 86_400_000);
    let names: Vec<String> = (0..CUSTOMERS)
        .map(|i| format!("{}-{i}", support::unique("s")))
        .collect();

    // Every record another customer's, as a flush delivers them; then every batch again.
    let batches: Vec<Vec<_>> = names
        .chunks(BATCH)
        .map(|chunk| chunk.iter().map(|n| record(n, period, 1, 1)).collect())
        .collect();
    for (round, want_stored) in [(0, BATCH as u64), (1, 0)] {
        for (i, batch) in batches.iter().enumerate() {
            let r = ingest(port, batch.clone());
            assert_eq!(r.status, 200, "round {round} batch {i}: {}", r.text());
            let a = r.json();
            assert_eq!(a["stored"], want_stored, "round {round} batch {i}: {a}");
            assert_eq!(a["duplicates"], BATCH as u64 - want_stored, "{a}");
        }
    }

    // Two customers of one shard with different usage, and test usage of one of them.
    let first = &names[0];
    let neighbour = names[1..]
        .iter()
        .find(|n| ledger_shard(n) == ledger_shard(first))
        .unwrap();
    let more: Vec<_> = (2..5)
        .map(|seq| record(neighbour, period, seq, 1))
        .collect();
    let mut test_usage = record(first, period, 9, 7);
    test_usage.livemode = false;
    test_usage.id = test_usage.content_id();
    let r = ingest(port, [more, vec![test_usage]].concat());
    assert_eq!(r.json()["stored"], 4, "{}", r.text());
    for (id, want) in [(first, "1"), (neighbour, "4")] {
        let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
        assert_eq!(put_account(port, id, &account).status, 200);
        let billed = requests_billed(port, id);
        assert!(
            billed == json!(want) || billed == json!(want.parse::<u64>().unwrap()),
            "{id}: {billed}"
        );
    }
}
