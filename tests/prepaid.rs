//! Prepaid plans through the real worker: the edge refuses usage once the flushed and
//! rated usage has drawn the credits to zero, and a top-up lets it go on.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::rating::{flushing_to_internal, put_account, rating_call};
use support::upstream::FakeUpstream;
use support::{admin, chat, customer, wait_pushed};

#[test]
fn prepaid_plans_stop_at_zero_credit_and_resume_after_a_top_up() {
    let upstream = FakeUpstream::start(0);
    let prepaid = json!({"version": "t2", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"prepaid": {"block_when_credits_exhausted": true, "charges": [
            {"meter": "output_tokens", "price_per": 1000, "pricing": {"kind": "per_unit", "unit_price": "10"}},
            {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "cached_input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
            {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0"}}]}}})
    .to_string();
    let worker = flushing_to_internal("prepaid", &upstream, &prepaid);
    let port = worker.port;
    // The customer's one plan, on its counter: its records carry it to the Ledger.
    let (id, key) = customer(port, "prepaid");
    let account = json!({"plan": "prepaid", "account": {"customer_id": id, "country": "US",
        "grants": [{"id": "g1", "amount": "0.10", "currency": "USD", "priority": 1, "effective_at_ms": 0}]}});
    let r = put_account(port, &id, &account);
    assert_eq!(r.status, 200, "{}", r.text());
    let wrong =
        json!({"plan": "prepaid", "account": {"customer_id": "someone-else", "country": "US"}});
    assert_eq!(
        rating_call(
            port,
            "PUT",
            &format!("/rating/v1/customers/{id}/account"),
            &wrong
        )
        .status,
        400
    );

    // Each request outputs 5 tokens: 5 * 10 / 1000 = 0.05 USD, so two use up the 0.10.
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": []});
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut admitted = 0;
    let refused = loop {
        let r = chat(port, &key, &ask, &[]);
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        admitted += 1;
        wait_pushed(port, &[(id.clone(), key.clone())]);
        admin(port, "POST", "/admin/v1/flush/run", &Value::Null);
        assert!(
            Instant::now() < deadline,
            "never blocked after {admitted} requests"
        );
    };
    assert_eq!(admitted, 2, "blocked exactly when the credit ran out");
    assert_eq!(refused.error_type(), "insufficient_quota");
    assert!(
        refused.text().contains("prepaid credits"),
        "{}",
        refused.text()
    );

    let top_up = json!({"id": "g2", "amount": "1.00", "currency": "USD", "priority": 1, "effective_at_ms": 0});
    assert_eq!(
        rating_call(
            port,
            "POST",
            &format!("/rating/v1/customers/{id}/grants"),
            &top_up
        )
        .status,
        201
    );
    assert_eq!(
        chat(port, &key, &ask, &[]).status,
        200,
        "a top-up lets usage go on"
    );
    worker.stop();
}
