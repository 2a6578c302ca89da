//! Final invoices never change, on the test clock through the real flush: a period is
//! final `INVOICE_GRACE_DAYS` (3) after its final records, numbered without gaps; usage
//! for it arriving later becomes an adjustment on the next open invoice (once, never
//! again after that invoice is final), and usage after the 35-day backdating window is
//! refused, listed and counted.

mod support;

use serde_json::{json, Value};
use support::rating::{
    flushing_to_internal_with, ingest, invoice_on, put_account, rating_call, record,
};
use support::upstream::FakeUpstream;
use support::{admin, chat, customer, settled_usage};

const DAY: i64 = 86_400_000;

fn book() -> String {
    json!({"version": "fi1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0.10"}}},
        "plans": {"open": {"base_fee": "1.00", "charges": [
            {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "output_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0.01"}}]}}})
    .to_string()
}

fn advance(port: u16, days: i64) {
    let r = admin(
        port,
        "POST",
        "/admin/v1/test/clock",
        &json!({"advance_ms": days * DAY}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// One request; the (start, end) of the period it was metered in.
fn use_once(port: u16, key: &str) -> (String, i64, i64) {
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(chat(port, key, &ask, &[]).status, 200);
    let usage = settled_usage(port, key);
    let start = usage["period_start"].as_str().unwrap();
    let parse = |t: &str| edgemeter::period::parse_date(&t[..10]).unwrap();
    let end = parse(usage["period_end"].as_str().unwrap());
    (start[..10].to_string(), parse(start), end)
}

fn invoice_text(port: u16, id: &str, date: &str) -> String {
    let path = format!("/rating/v1/customers/{id}/invoices/{date}");
    let r = rating_call(port, "GET", &path, &Value::Null);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn adjustments(inv: &Value) -> Vec<Value> {
    let lines = inv["lines"].as_array().cloned().unwrap_or_default();
    lines
        .into_iter()
        .filter(|l| l["kind"] == "adjustment")
        .collect()
}

#[test]
fn a_final_invoice_never_changes_and_late_usage_becomes_one_adjustment() {
    let upstream = FakeUpstream::start(0);
    let clock = [("TEST_CLOCK", "on")];
    let worker = flushing_to_internal_with("finals", &upstream, &book(), &clock);
    let port = worker.port;
    let (id, key) = customer(port, "open");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(put_account(port, &id, &account).status, 200);

    // Period 1: one request. A month on, a request in period 2 sends period 1's final
    // records; it is still a draft for the three grace days, then final and numbered.
    let (p1, p1_start, p1_end) = use_once(port, &key);
    advance(port, 32);
    let (p2, _, p2_end) = use_once(port, &key);
    let draft = invoice_on(port, &id, &p1, |inv| inv["lines"].as_array().is_some());
    assert_eq!(draft["status"], "draft", "{draft}");
    advance(port, 4);
    let final_text = invoice_text(port, &id, &p1);
    let first: Value = serde_json::from_str(&final_text).unwrap();
    assert_eq!(
        (first["status"].as_str(), first["number"].as_str()),
        (Some("final"), Some("EM-000001")),
        "{first}"
    );

    // Two requests for period 1 arrive late, within the backdating window: period 1's
    // invoice keeps its bytes; period 2 carries 0.02 + 10% tax for them.
    let r = ingest(port, vec![record(&id, (p1_start, p1_end), 10_000, 2)]);
    assert_eq!(
        (r.status, r.json()["stored"].as_u64()),
        (200, Some(1)),
        "{}",
        r.text()
    );
    assert_eq!(invoice_text(port, &id, &p1), final_text);
    // The reconciliation kept at finalization was exact; made now, it flags the usage
    // that came from another sender than the customer's counter.
    let path = format!("/rating/v1/customers/{id}/reconciliation/{p1}");
    let r = rating_call(port, "GET", &path, &Value::Null).json();
    assert_eq!(r["at_finalization"]["unexplained"], 0, "{r}");
    assert_eq!(r["unexplained"], 1, "{r}");
    let stray = r["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["explained"] == false);
    assert_eq!(stray.unwrap()["amounts"]["requests"], 2, "{r}");
    let second = invoice_on(port, &id, &p2, |inv| !adjustments(inv).is_empty());
    let carried = adjustments(&second);
    assert_eq!(carried.len(), 1, "{second}");
    assert_eq!(
        (carried[0]["net"].as_str(), carried[0]["tax"].as_str()),
        (Some("0.02"), Some("0.00")),
        "{second}"
    );
    assert!(
        carried[0]["note"].as_str().unwrap().contains(&p1),
        "{second}"
    );
    assert!(
        carried[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("1 usage record(s) arrived after"),
        "{second}"
    );
    // A grant added now pays the open invoice, never the final one.
    let grant =
        json!({"id": "late-grant", "amount": "0.50", "currency": "USD", "effective_at_ms": 0});
    let grants = format!("/rating/v1/customers/{id}/grants");
    assert_eq!(rating_call(port, "POST", &grants, &grant).status, 201);
    assert_eq!(invoice_text(port, &id, &p1), final_text);
    let paid = invoice_on(port, &id, &p2, |inv| inv["credits_applied"] != "0.00");
    assert_eq!(paid["credits_applied"], "0.50", "{paid}");

    // Period 2 becomes final with the adjustment, numbered next; period 3 does not
    // carry it again.
    let days_left = (p2_end - p1_end) / DAY - 4 + 1;
    advance(port, days_left);
    let (p3, _, _) = use_once(port, &key);
    // (reading an invoice runs the flush, which delivers period 2's final records)
    invoice_on(port, &id, &p3, |inv| inv["lines"].as_array().is_some());
    advance(port, 4);
    let second: Value = serde_json::from_str(&invoice_text(port, &id, &p2)).unwrap();
    assert_eq!(
        (second["status"].as_str(), second["number"].as_str()),
        (Some("final"), Some("EM-000002")),
        "{second}"
    );
    assert_eq!(adjustments(&second).len(), 1, "{second}");
    let third = invoice_on(port, &id, &p3, |inv| inv["lines"].as_array().is_some());
    assert!(adjustments(&third).is_empty(), "billed twice: {third}");

    // Three days more and period 1's backdating window (35 days after its end) is
    // surely closed: more usage for it is refused, listed with why, and changes nothing.
    advance(port, 3);
    let r = ingest(port, vec![record(&id, (p1_start, p1_end), 20_000, 5)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let refused = r.json()["refused"].clone();
    assert_eq!(refused.as_array().map(Vec::len), Some(1), "{}", r.text());
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("backdating window closed"),
        "{refused}"
    );
    assert_eq!(invoice_text(port, &id, &p1), final_text);
    let third_again = invoice_on(port, &id, &p3, |inv| inv["lines"].as_array().is_some());
    assert!(adjustments(&third_again).is_empty(), "{third_again}");
    worker.stop();
}
