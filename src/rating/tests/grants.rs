//! PRICING.md rule 8, grants as balances: categories, voiding, and the balances the
//! admin API lists.

use super::fixtures::*;
use super::rules::{per_unit_book, rate_units};
use crate::rating::*;
use serde_json::json;

fn grant(id: &str, amount: &str, category: GrantCategory, priority: u32) -> CreditGrant {
    CreditGrant {
        id: id.into(),
        amount: d(amount),
        currency: Some("USD".into()),
        category,
        priority,
        effective_at_ms: day(0),
        ..CreditGrant::default()
    }
}

#[test]
fn rule8_promotional_credit_is_spent_before_paid_credit_whatever_the_priority() {
    use GrantCategory::{Paid, Promotional};
    let grants = [
        grant("paid-first", "1", Paid, 0),
        grant("promo-late", "1", Promotional, 9),
        grant("promo", "1", Promotional, 1),
    ];
    assert_eq!(draw_order(&grants, day(1)), vec![2, 1, 0]);
    // and a grant without a category is paid credit
    let parsed: CreditGrant =
        serde_json::from_value(json!({"id": "g", "amount": "1", "currency": "USD"})).unwrap();
    assert_eq!(parsed.category, Paid);
}

#[test]
fn rule8_a_voided_grant_pays_nothing_from_then_on_and_keeps_what_it_paid() {
    let book = per_unit_book("100", json!({}));
    let account = Account {
        grants: vec![grant("prepaid", "150", GrantCategory::Paid, 0)],
        ..account("DE")
    };
    let first = rate_units(&book, &account, 1);
    assert_eq!(first.credits_applied, d("119.00"));
    let mut voided = account.clone();
    voided.grants[0].voided_at_ms = Some(day(40));
    assert!(voided.grants[0].usable_at(day(40) - 1));
    assert!(!voided.grants[0].usable_at(day(40)));
    // the April invoice drew as of April: voiding in May does not take that back
    assert_eq!(rate_units(&book, &voided, 1).credits_applied, d("119.00"));
    let balances = grant_balances(&voided, [&first], day(41));
    assert_eq!(balances[0].status, GrantStatus::Voided);
    assert_eq!((balances[0].drawn, balances[0].balance), (d("119"), d("0")));
    assert_eq!(
        balances[0].grant.voided_at_ms,
        Some(day(40)),
        "history kept"
    );
    // before the void it had 31 left
    let before = grant_balances(&account, [&first], day(39));
    assert_eq!(
        (before[0].status, before[0].balance),
        (GrantStatus::Active, d("31"))
    );
}

#[test]
fn rule8_balances_count_every_invoice_drafts_included() {
    let book = per_unit_book("100", json!({}));
    let account = Account {
        grants: vec![
            grant("promo", "50", GrantCategory::Promotional, 0),
            grant("paid", "200", GrantCategory::Paid, 0),
        ],
        ..account("DE")
    };
    let first = rate_units(&book, &account, 1); // 119.00: 50 promo, 69 paid
    let net = net_of_draws(&account, [&first]);
    let second = rate_units(&book, &net, 1); // 119.00 more: 119 paid (131 left before)
    let b = grant_balances(&account, [&first, &second], day(1));
    let view: Vec<_> = b.iter().map(|g| (g.status, g.drawn, g.balance)).collect();
    assert_eq!(
        view,
        vec![
            (GrantStatus::Used, d("50"), d("0")),
            (GrantStatus::Active, d("188"), d("12")),
        ]
    );
}
