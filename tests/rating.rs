//! Flush → built-in rating endpoint → invoice, under `wrangler dev`. Invoice totals are
//! checked against an independent computation here, in integer hundredths of a cent.

mod support;

use edgemeter::flush::signature;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::http::request;
use support::rating::{
    flushing_to_internal_with, invoice_when, month_start, put_account, rating_call, record,
    signed_batch, SECRET,
};
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker};
use support::{admin, catalog, chat, customer, settled_usage};

fn book(base_fee: &str) -> String {
    json!({"version": "t1", "currency": "USD",
        "tax": {"countries": {"US": {"rate": "0"}, "GB": {"rate": "0.20"}}},
        "plans": {"open": {"base_fee": base_fee, "charges": [
            {"meter": "input_tokens", "model": "gpt-4o-mini", "price_per": 1000, "pricing": {"kind": "per_unit", "unit_price": "2.50"}},
            {"meter": "cached_input_tokens", "model": "gpt-4o-mini", "price_per": 1000, "pricing": {"kind": "per_unit", "unit_price": "1.25"}},
            {"meter": "output_tokens", "model": "gpt-4o-mini", "price_per": 1000, "pricing": {"kind": "per_unit", "unit_price": "10"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0.01"}}]}}})
    .to_string()
}

/// Rounds `n / d` to whole units, half to even.
fn half_even(n: i64, d: i64) -> i64 {
    let (q, r) = (n / d, n % d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
    }
}

fn cents(v: &Value) -> i64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("amount is not a string: {v}"));
    (s.parse::<f64>().unwrap() * 100.0).round() as i64
}

#[test]
fn flushed_usage_becomes_an_exact_invoice() {
    let upstream = FakeUpstream::start(0);
    // Final as soon as its final records arrive (no grace days), to see it here.
    let now = [("INVOICE_GRACE_DAYS", "0")];
    let worker = flushing_to_internal_with("rating", &upstream, &book("10.00"), &now);
    let port = worker.port;
    let (id, key) = customer(port, "open");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "GB"}});
    let r = put_account(port, &id, &account);
    assert_eq!(r.status, 200, "{}", r.text());
    let grant = json!({"id": "g1", "amount": "5.00", "currency": "USD", "priority": 1, "effective_at_ms": 0});
    assert_eq!(
        rating_call(
            port,
            "POST",
            &format!("/rating/v1/customers/{id}/grants"),
            &grant
        )
        .status,
        201
    );

    let mut header_costs = rust_decimal::Decimal::ZERO;
    for n in [4, 5, 6] {
        let body = json!({"model": "gpt-4o-mini", "max_tokens": n, "messages": []});
        let r = chat(port, &key, &body, &[]);
        assert_eq!(r.status, 200);
        header_costs += r
            .header("x-edgemeter-cost")
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap();
        settled_usage(port, &key);
    }
    settled_usage(port, &key);
    let path = format!("/rating/v1/customers/{id}/invoices/{}", month_start());
    let invoice = invoice_when(port, &id, |inv| {
        let lines = inv["lines"].as_array();
        let requests = lines.and_then(|l| l.iter().find(|l| l["meter"] == "requests"));
        requests.is_some_and(|l| l["quantity"] == json!("3") || l["quantity"] == json!(3))
    });

    // The fake upstream reports 21 prompt tokens (5 cached) per request; outputs 4+5+6.
    // Net per line, in hundredths of a cent (1e-4 USD), rounded once to cents:
    let lines = [
        1_000 * 100,                       // base fee 10.00
        half_even(3 * 16 * 25_000, 1_000), // 48 fresh input * 2.50 / 1000 = 0.12
        half_even(3 * 5 * 12_500, 1_000),  // 15 cached * 1.25 / 1000 = 0.01875
        half_even(15 * 100_000, 1_000),    // 15 output * 10 / 1000 = 0.15
        3 * 100,                           // 3 requests * 0.01 = 0.03
    ];
    let net: Vec<i64> = lines.iter().map(|l| half_even(*l, 100)).collect(); // to cents
    let tax: i64 = net.iter().map(|n| half_even(n * 20, 100)).sum(); // 20% per line
    let subtotal: i64 = net.iter().sum();
    assert_eq!((subtotal, tax), (1032, 206));
    assert_eq!(cents(&invoice["subtotal"]), subtotal, "{invoice}");
    assert_eq!(cents(&invoice["tax"]), tax, "{invoice}");
    assert_eq!(cents(&invoice["credits_applied"]), 500);
    assert_eq!(cents(&invoice["total"]), subtotal + tax - 500);
    assert_eq!(invoice["currency"], "USD");
    assert_eq!(invoice["status"], "draft");

    // One engine: the edge prices the customer's spend with the same price-book plan,
    // so its cost so far equals the invoice's usage lines, exactly.
    let usage = settled_usage(port, &key);
    assert!(
        usage["priced_by"]
            .as_str()
            .unwrap()
            .starts_with("price book t1"),
        "{usage}"
    );
    let exact: rust_decimal::Decimal = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "usage")
        .map(|l| {
            l["exact_amount"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    let edge: rust_decimal::Decimal = usage["totals"]["cost"].as_str().unwrap().parse().unwrap();
    // 48*2.5/1000 + 15*1.25/1000 + 15*10/1000 + 3*0.01 = 0.12 + 0.01875 + 0.15 + 0.03
    assert_eq!(edge, exact);
    assert_eq!(edge, "0.31875".parse().unwrap());
    // Each request's x-edgemeter-cost is what it added to those charges (its base fee
    // aside), so one after another they add up to them too; the test catalog's list
    // prices (0.15, 0.075 and 0.60 per 1M tokens) would say about 0.00002.
    assert_eq!(header_costs, exact);

    // The price sandbox: the same usage under a draft book, changing nothing.
    let preview = json!({"customer": id, "period": month_start(), "price_book": serde_json::from_str::<Value>(&book("20.00")).unwrap()});
    let r = rating_call(port, "POST", "/rating/v1/preview", &preview);
    assert_eq!(r.status, 200, "{}", r.text());
    let p = r.json();
    // +10.00 base fee and +2.00 of its 20% tax
    assert_eq!(cents(&p["difference"]["total"]), 1200, "{p}");
    assert_eq!(
        rating_call(port, "GET", &path, &Value::Null).json()["total"],
        invoice["total"]
    );

    // A top-up changes the stored invoice at once: 1.00 more credit, 1.00 less to pay.
    let top_up = json!({"id": "g2", "amount": "1.00", "currency": "USD", "priority": 2, "effective_at_ms": 0});
    let grants = format!("/rating/v1/customers/{id}/grants");
    assert_eq!(rating_call(port, "POST", &grants, &top_up).status, 201);
    let invoice = rating_call(port, "GET", &path, &Value::Null).json();
    assert_eq!(cents(&invoice["credits_applied"]), 600, "{invoice}");
    assert_eq!(cents(&invoice["total"]), subtotal + tax - 600);

    // Closing the period sends its final records: the invoice becomes final.
    assert_eq!(
        admin(
            port,
            "POST",
            &format!("/admin/v1/customers/{id}/close-period"),
            &Value::Null
        )
        .status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        let inv = rating_call(port, "GET", &path, &Value::Null).json();
        if inv["status"] == "final" {
            assert_eq!(inv["total"], invoice["total"]);
            assert_eq!(inv["number"], "EM-000001", "{inv}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the invoice never became final: {inv}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A stream's cost header, known before its usage, is its reservation priced the
    // same way: at least 10 output tokens * 10 / 1000 + one request * 0.01 = 0.11 (the
    // list price of the reservation is about a thousandth of that).
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 10, "stream": true, "messages": []});
    let r = chat(port, &key, &ask, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-edgemeter-cost-basis"), Some("reserved"));
    let reserved: rust_decimal::Decimal = r.header("x-edgemeter-cost").unwrap().parse().unwrap();
    assert!(reserved >= "0.11".parse().unwrap(), "{reserved}");
    worker.stop();
}

#[test]
fn ingestion_checks_signatures_and_batches_and_dedupes() {
    let upstream = FakeUpstream::start(0);
    let book_text = book("0");
    let vars = [
        ("RATING_SECRET", SECRET),
        ("PRICE_BOOK", book_text.as_str()),
    ];
    let worker = Worker::start_with(&scratch("ingest"), &upstream.url(), &catalog(), &vars);
    let port = worker.port;
    let id = support::unique("led");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(
        rating_call(
            port,
            "PUT",
            &format!("/rating/v1/customers/{id}/account"),
            &account
        )
        .status,
        200
    );
    let start = edgemeter::period::parse_date(&month_start()).unwrap();
    let rec =
        |seq: u64, requests: u64| record(&id, (start, start + 86_400_000 * 28), seq, requests);
    let post = |sig: &str, body: &[u8]| {
        request(
            port,
            "POST",
            "/rating/v1/ingest",
            &[
                ("x-edgemeter-signature", sig),
                ("content-type", "application/json"),
            ],
            body,
        )
    };
    let path = format!("/rating/v1/customers/{id}/invoices/{}", month_start());
    let requests = || rating_call(port, "GET", &path, &Value::Null).json()["subtotal"].clone();

    let (sig, body) = signed_batch(vec![rec(1, 2), rec(2, 3)], SECRET);
    let r = post(&sig, &body);
    assert_eq!(
        (r.status, r.json()["stored"].as_u64()),
        (200, Some(2)),
        "{}",
        r.text()
    );
    let billed = requests(); // 5 requests * 0.01 = 0.05
    assert_eq!(billed, "0.05");
    let r = post(&sig, &body);
    assert_eq!(
        (r.json()["stored"].as_u64(), r.json()["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(requests(), billed, "re-ingesting a batch changes nothing");

    let (bad_sig, body3) = signed_batch(vec![rec(3, 7)], "wrong-secret");
    assert_eq!(post(&bad_sig, &body3).status, 401);
    // The right secret over other bytes, or over another timestamp, is refused too, and
    // stores nothing.
    let (good_sig, body4) = signed_batch(vec![rec(6, 9)], SECRET);
    let mut tampered = body4.clone();
    let at = tampered.iter().rposition(|b| *b == b'9').unwrap();
    tampered[at] = b'8';
    assert_eq!(post(&good_sig, &tampered).status, 401);
    let (t, mac) = good_sig.split_once(",v1=").unwrap();
    let t: i64 = t.trim_start_matches("t=").parse().unwrap();
    assert_eq!(post(&format!("t={},v1={mac}", t - 1), &body4).status, 401);
    assert_eq!(
        post(&format!("t={t},v1={}", mac.to_uppercase()), &body4).status,
        401
    );
    assert_eq!(requests(), billed, "no refused batch was stored");
    let mut broken: Value =
        serde_json::from_slice(&signed_batch(vec![rec(4, 7), rec(5, 1)], SECRET).1).unwrap();
    broken["records"][1]["period_end_ms"] = json!(0);
    let text = broken.to_string();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A bad record is refused alone, listed in the 2xx; the good one beside it is
    // stored (its requests at 0.01 each on top of the 0.05).
    let r = post(&signature(SECRET, now_s, text.as_bytes()), text.as_bytes());
    assert_eq!(
        (r.status, r.json()["stored"].as_u64()),
        (200, Some(1)),
        "{}",
        r.text()
    );
    let refused = r.json()["refused"].clone();
    assert_eq!(refused[0]["id"], broken["records"][1]["id"], "{refused}");
    assert!(refused[0]["reason"]
        .as_str()
        .unwrap()
        .contains("period_end_ms"));
    let kept = broken["records"][0]["requests"].as_u64().unwrap();
    let after = format!("{:.2}", (5 + kept) as f64 / 100.0);
    assert_eq!(requests(), after.as_str());
    // A batch that cannot be read at all is refused whole, and nothing of it stored.
    broken["schema"] = json!("other");
    let text = broken.to_string();
    let r = post(&signature(SECRET, now_s, text.as_bytes()), text.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(requests(), after.as_str());
    worker.stop();
}
