//! New meters end to end: an Anthropic answer with cache reads and writes (5-minute and
//! one-hour), and an OpenAI answer with audio input tokens, are tallied by the counter,
//! flushed as schema-2 records, and rated by the built-in rating endpoint at the price
//! book's own prices, which the edge's cost agrees with exactly.

mod support;

use rust_decimal::Decimal;
use serde_json::json;
use support::rating::{flushing_to_internal_with, invoice_when, put_account};
use support::upstream::FakeUpstream;
use support::{call, customer, meter, settled_usage};

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
            {"meter": "input_tokens", "model": "audio-test", "price_per": 1000,
             "pricing": {"kind": "per_unit", "unit_price": "2.50"}},
            {"meter": "cached_input_tokens", "model": "audio-test", "price_per": 1000,
             "pricing": {"kind": "per_unit", "unit_price": "1.25"}},
            {"meter": "audio_input_tokens", "model": "audio-test", "price_per": 1000,
             "pricing": {"kind": "per_unit", "unit_price": "40"}},
            {"meter": "output_tokens", "model": "audio-test", "price_per": 1000,
             "pricing": {"kind": "per_unit", "unit_price": "10"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0"}}]}}})
    .to_string()
}

#[test]
fn cache_writes_are_metered_flushed_and_priced_end_to_end() {
    let upstream = FakeUpstream::start(0);
    let book = book();
    let anthropic = [("ANTHROPIC_UPSTREAM_URL", upstream.url())];
    let anthropic: Vec<(&str, &str)> = anthropic.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let worker = flushing_to_internal_with("cache-meters", &upstream, &book, &anthropic);
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
    let audio =
        json!({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}});
    let spoken = json!({"model": "audio-test", "max_tokens": 3,
        "messages": [{"role": "user", "content": [audio]}]});
    let r = call(port, &key, "/v1/chat/completions", &spoken, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    // A model with no audio price is not sent audio at all.
    let mut unpriced = spoken.clone();
    unpriced["model"] = json!("gpt-4o-mini");
    let r = call(port, &key, "/v1/chat/completions", &unpriced, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("input_audio"))
    );

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
    let row = meter(&usage, "chat.completions", "audio-test");
    assert_eq!(
        (row["input"].as_u64(), row["audio"].as_u64()),
        (Some(71), Some(50)),
        "{usage}"
    );

    // Flushed and rated: each part on its own invoice line at its own price.
    let invoice = invoice_when(port, &id, |inv| {
        let lines = inv["lines"].as_array();
        lines.is_some_and(|lines| lines.iter().any(|l| l["meter"] == "cache_write_1h_tokens"))
    });
    let amount = |meter: &str, model: &str| -> Decimal {
        let lines = invoice["lines"].as_array().unwrap();
        let l = lines
            .iter()
            .find(|l| l["meter"] == meter && l["model"] == model);
        let l = l.unwrap_or_else(|| panic!("no {meter} line for {model}: {invoice}"));
        l["exact_amount"].as_str().unwrap().parse().unwrap()
    };
    let line = |meter: &str| amount(meter, "claude-test");
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    // fresh 10 * 3.00, cached 20 * 0.30, 5-minute writes 60 * 3.75, one-hour 40 * 6.00,
    // output 7 * 15.00, all per 1,000
    assert_eq!(line("input_tokens"), d("0.03"));
    assert_eq!(line("cached_input_tokens"), d("0.006"));
    assert_eq!(line("cache_write_tokens"), d("0.225"));
    assert_eq!(line("cache_write_1h_tokens"), d("0.24"));
    assert_eq!(line("output_tokens"), d("0.105"));
    // audio-test: 71 prompt tokens, of which 5 cached and 50 audio: 16 fresh * 2.50,
    // 5 cached * 1.25, 50 audio * 40, 3 output * 10, per 1,000
    assert_eq!(amount("input_tokens", "audio-test"), d("0.04"));
    assert_eq!(amount("cached_input_tokens", "audio-test"), d("0.00625"));
    assert_eq!(amount("audio_input_tokens", "audio-test"), d("2.00"));
    assert_eq!(amount("output_tokens", "audio-test"), d("0.03"));
    // One engine: the edge's cost of the same usage is the invoice's.
    let edge: Decimal = settled_usage(port, &key)["totals"]["cost"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(edge, d("0.606") + d("2.07625"));
    worker.stop();
}
