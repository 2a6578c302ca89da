//! The billing ledger through the real flush and the built-in rating endpoint: prepaid
//! credits are balances (a grant drawn by one period's invoice is not spent again by
//! the next, two periods on the test clock), and a period is rated under the plan its
//! records carry, the counter's one plan assignment.

mod support;

use serde_json::{json, Value};
use support::rating::{flushing_to_internal_with, invoice_on, put_account, rating_call};
use support::upstream::FakeUpstream;
use support::{admin, chat, customer, settled_usage};

fn book() -> String {
    json!({"version": "cr1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"open": {"base_fee": "3.00", "charges": [
            {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "output_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0.01"}}]}}})
    .to_string()
}

/// One request, and the date its period starts on.
fn use_once(port: u16, key: &str) -> String {
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(chat(port, key, &ask, &[]).status, 200);
    settled_usage(port, key)["period_start"].as_str().unwrap()[..10].to_string()
}

fn has_one_request(inv: &Value) -> bool {
    let lines = inv["lines"].as_array();
    let requests = lines.and_then(|l| l.iter().find(|l| l["meter"] == "requests"));
    requests.is_some_and(|l| l["quantity"] == json!("1") || l["quantity"] == json!(1))
}

#[test]
fn a_grant_is_drawn_down_across_periods_and_never_spent_twice() {
    let upstream = FakeUpstream::start(0);
    let book = book();
    let clock = [("TEST_CLOCK", "on")];
    let worker = flushing_to_internal_with("credits", &upstream, &book, &clock);
    let port = worker.port;
    let (id, key) = customer(port, "open");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(put_account(port, &id, &account).status, 200);
    let grant = json!({"id": "prepaid", "amount": "5.00", "currency": "USD", "priority": 1, "effective_at_ms": 0});
    let r = rating_call(
        port,
        "POST",
        &format!("/rating/v1/customers/{id}/grants"),
        &grant,
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // Period 1: 3.00 base fee + 0.01 for a request, all paid by the grant.
    let first = use_once(port, &key);
    let one = invoice_on(port, &id, &first, has_one_request);
    assert_eq!(
        (one["credits_applied"].as_str(), one["total"].as_str()),
        (Some("3.01"), Some("0.00")),
        "{one}"
    );

    // A month on, period 2 draws on the 1.99 left, not on the grant's 5.00 again.
    let r = admin(
        port,
        "POST",
        "/admin/v1/test/clock",
        &json!({"advance_ms": 32 * 86_400_000i64}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let second = use_once(port, &key);
    assert_ne!(first, second);
    let two = invoice_on(port, &id, &second, has_one_request);
    assert_eq!(
        (two["credits_applied"].as_str(), two["total"].as_str()),
        (Some("1.99"), Some("1.02")),
        "{two}"
    );
    assert_eq!(two["credit_balance"], "0.00", "{two}");
    // and period 1 still shows what it drew
    let again = invoice_on(port, &id, &first, has_one_request);
    assert_eq!(again["credits_applied"], one["credits_applied"]);
    worker.stop();
}

#[test]
fn a_period_is_rated_under_the_plan_its_records_carry() {
    let upstream = FakeUpstream::start(0);
    let charges = |requests: &str| {
        json!({"charges": [
            {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "output_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": requests}}]})
    };
    // The book prices requests differently under the two plans.
    let book =
        json!({"version": "pl1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"open": charges("1.00"), "stale": charges("9.00")}})
        .to_string();
    let worker = support::rating::flushing_to_internal("ledger-plan", &upstream, &book);
    let port = worker.port;
    let (id, key) = customer(port, "open");
    // The account still names another plan: the counter's assignment wins.
    let account = json!({"plan": "stale", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(put_account(port, &id, &account).status, 200);
    let first = use_once(port, &key);
    let invoice = invoice_on(port, &id, &first, has_one_request);
    let lines = invoice["lines"].as_array().unwrap();
    assert!(lines.iter().all(|l| l["plan"] == "open"), "{invoice}");
    assert_eq!(invoice["subtotal"], "1.00", "{invoice}");
    worker.stop();
}

#[test]
fn grants_are_listed_with_balances_promotional_first_and_a_void_keeps_history() {
    let upstream = FakeUpstream::start(0);
    let worker = support::rating::flushing_to_internal("ledger-grants", &upstream, &book());
    let port = worker.port;
    let (id, key) = customer(port, "open");
    let account = json!({"plan": "open", "account": {"customer_id": id, "country": "US"}});
    assert_eq!(put_account(port, &id, &account).status, 200);
    let grants = format!("/rating/v1/customers/{id}/grants");
    let paid = json!({"id": "paid", "amount": "5.00", "currency": "USD", "priority": 0, "effective_at_ms": 0});
    let promo = json!({"id": "promo", "amount": "1.00", "currency": "USD", "priority": 5,
        "category": "promotional", "effective_at_ms": 0});
    for g in [&paid, &promo] {
        let r = rating_call(port, "POST", &grants, g);
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // 3.01 due: the promotional 1.00 first, whatever its priority, then 2.01 paid.
    let period = use_once(port, &key);
    let inv = invoice_on(port, &id, &period, has_one_request);
    assert_eq!(inv["credits_applied"], "3.01", "{inv}");
    assert_eq!(inv["credits"][0]["grant_id"], "promo", "{inv}");
    let listed = rating_call(port, "GET", &grants, &Value::Null).json();
    let view = |l: &Value| -> Vec<(String, String, String)> {
        let data = l["data"].as_array().unwrap();
        data.iter()
            .map(|g| {
                let s = |k: &str| g[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("status"), s("balance"))
            })
            .collect()
    };
    let row = |id: &str, status: &str, balance: &str| {
        (id.to_string(), status.to_string(), balance.to_string())
    };
    assert_eq!(
        view(&listed),
        vec![row("paid", "active", "2.99"), row("promo", "used", "0.00")],
        "{listed}"
    );

    // Voided, the paid grant no longer pays the open invoice, and stays listed.
    let void = format!("{grants}/paid/void");
    let r = rating_call(port, "POST", &void, &Value::Null);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["voided_at_ms"].is_i64(), "{}", r.text());
    assert_eq!(rating_call(port, "POST", &void, &Value::Null).status, 409);
    let missing = format!("{grants}/nope/void");
    assert_eq!(
        rating_call(port, "POST", &missing, &Value::Null).status,
        404
    );
    let inv = invoice_on(port, &id, &period, has_one_request);
    assert_eq!(
        (inv["credits_applied"].as_str(), inv["total"].as_str()),
        (Some("1.00"), Some("2.01")),
        "{inv}"
    );
    let listed = rating_call(port, "GET", &grants, &Value::Null).json();
    assert_eq!(
        view(&listed),
        vec![row("paid", "voided", "0.00"), row("promo", "used", "0.00")],
        "{listed}"
    );
    worker.stop();
}
