//! PRICING.md rules 8 to 10 (credits, minimum commitments, proration) through `rate`,
//! each at its boundary.

use super::fixtures::*;
use super::rules::{per_unit_book, rate_units};
use crate::rating::*;
use serde_json::json;

fn grant(id: &str, amount: &str, priority: u32, expires_day: Option<i64>) -> CreditGrant {
    CreditGrant {
        id: id.into(),
        amount: d(amount),
        currency: Some("USD".into()),
        priority,
        effective_at_ms: day(0),
        expires_at_ms: expires_day.map(day),
        ..CreditGrant::default()
    }
}

#[test]
fn rule8_draw_order_priority_expiry_never_expiring_last_then_creation() {
    let grants = [
        grant("a", "1", 1, Some(40)),
        grant("b", "1", 0, None),
        grant("c", "1", 0, Some(50)),
        grant("d", "1", 0, Some(45)),
        grant("e", "1", 0, Some(45)),
    ];
    // priority 0 first: d and e expire first (45, creation order), then c (50), then b (never)
    assert_eq!(draw_order(&grants, day(1)), vec![3, 4, 2, 1, 0]);
}

#[test]
fn rule8_effective_and_expiry_bounds() {
    let g = CreditGrant {
        effective_at_ms: day(10),
        ..grant("g", "5", 0, Some(20))
    };
    assert!(!g.usable_at(day(10) - 1)); // not yet effective
    assert!(g.usable_at(day(10))); // effective from that instant
    assert!(g.usable_at(day(20) - 1)); // last usable millisecond
    assert!(!g.usable_at(day(20))); // unusable from expires_at on
}

#[test]
fn rule8_credits_pay_the_total_after_tax_in_order_and_never_go_negative() {
    let book = per_unit_book("100", json!({}));
    let acct = |grants: Vec<CreditGrant>| Account {
        grants,
        ..account("DE")
    };
    // 100.00 + 19.00 tax = 119.00, paid from a 200 grant: 81 left
    let inv = rate_units(&book, &acct(vec![grant("big", "200", 0, None)]), 1);
    assert_eq!((inv.credits_applied, inv.total), (d("119.00"), d("0.00")));
    assert_eq!(inv.credits[0].remaining, d("81"));
    assert_eq!(inv.credit_balance, d("81.00"));
    // a 50 grant: 50 applied, 69.00 left to pay, grant at 0 (not -69)
    let inv = rate_units(&book, &acct(vec![grant("small", "50", 0, None)]), 1);
    assert_eq!((inv.credits_applied, inv.total), (d("50.00"), d("69.00")));
    assert_eq!(inv.credits[0].remaining, d("0"));
    // priority 0 (10) before priority 1: 10 + 109 = 119
    let inv = rate_units(
        &book,
        &acct(vec![
            grant("p1", "500", 1, None),
            grant("p0", "10", 0, None),
        ]),
        1,
    );
    let paid: Vec<_> = inv
        .credits
        .iter()
        .map(|c| (c.grant_id.as_str(), c.applied))
        .collect();
    assert_eq!(paid, vec![("p0", d("10.00")), ("p1", d("109.00"))]);
    // an expired grant pays nothing
    let inv = rate_units(&book, &acct(vec![grant("old", "500", 0, Some(30))]), 1);
    assert_eq!(inv.total, d("119.00"));
}

#[test]
fn rule8_credit_units_and_foreign_currency_grants() {
    let book = per_unit_book("100", json!({}));
    let units = CreditGrant {
        currency: None,
        credit_rate: Some(d("0.01")),
        ..grant("cu", "1000", 0, None)
    };
    let eur = CreditGrant {
        currency: Some("EUR".into()),
        ..grant("eur", "10", 1, None)
    };
    let inv = rate_units(
        &book,
        &Account {
            grants: vec![units, eur],
            ..account("DE")
        },
        1,
    );
    // 1000 credits * 0.01 = 10.00; 10 EUR * 1.08 = 10.80; 119.00 - 20.80 = 98.20
    assert_eq!(inv.credits_applied, d("20.80"));
    assert_eq!(inv.total, d("98.20"));
    assert_eq!(inv.credits[0].drawn, d("1000"));
}

#[test]
fn rule8_a_grant_pays_at_most_its_value_floored() {
    let book = per_unit_book("100", json!({}));
    let odd = CreditGrant {
        currency: None,
        credit_rate: Some(d("0.333")),
        ..grant("odd", "3", 0, None)
    };
    let inv = rate_units(
        &book,
        &Account {
            grants: vec![odd],
            ..account("US")
        },
        1,
    );
    // 3 * 0.333 = 0.999 -> pays 0.99, leaving 0.03 credits (0.00999, worth 0.00)
    assert_eq!(inv.credits_applied, d("0.99"));
    assert!(inv.credits[0].remaining > d("0") && inv.credits[0].remaining < d("0.031"));
    assert_eq!(inv.credit_balance, d("0.00"));
}

#[test]
fn rule9_invoice_minimum_commitment_at_its_boundary() {
    let total = |input_tokens: u64| {
        let inv = rate(
            &book(),
            &account("US"),
            &input(
                "pro",
                vec![usage(BillableMeter::InputTokens, "x", input_tokens)],
            ),
        )
        .unwrap();
        assert_reconciles(&inv);
        let true_up = inv
            .lines
            .iter()
            .find(|l| l.kind == LineKind::MinimumTrueUp)
            .map(|l| l.amount);
        (inv.total, true_up)
    };
    // within the 5M included: 49 base + 0 usage -> true-up 51.00 to reach 100
    assert_eq!(total(5_000_000), (d("100.00"), Some(d("51.00"))));
    // 5M + 50.99M: 49 + 50.99 = 99.99 -> true-up 0.01
    assert_eq!(total(55_990_000), (d("100.00"), Some(d("0.01"))));
    // 5M + 51M: 49 + 51 = 100 exactly -> no true-up
    assert_eq!(total(56_000_000), (d("100.00"), None));
    // 5M + 51.01M: 100.01 -> no true-up
    assert_eq!(total(56_010_000), (d("100.01"), None));
}

#[test]
fn rule9_per_charge_minimum_and_proration() {
    let book = single(
        json!({ "meter": "requests", "minimum": "10", "pricing": { "kind": "per_unit", "unit_price": "1" } }),
        json!({}),
    );
    let true_up = |inv: &Invoice| {
        inv.lines
            .iter()
            .find(|l| l.kind == LineKind::MinimumTrueUp)
            .map(|l| l.amount)
    };
    assert_eq!(
        true_up(&rate_units(&book, &account("US"), 9)),
        Some(d("1.00"))
    ); // 10 - 9*1
    assert_eq!(true_up(&rate_units(&book, &account("US"), 10)), None);
    assert_eq!(true_up(&rate_units(&book, &account("US"), 11)), None);
    // a customer starting April 16 has 15 of 30 days: minimum 10 * 15/30 = 5.00
    let mut inp = input("p", vec![usage(BillableMeter::Requests, "m", 2)]);
    inp.segments[0].from_ms = day(15);
    let inv = rate(&book, &account("US"), &inp).unwrap();
    assert_eq!(true_up(&inv), Some(d("3.00"))); // 5.00 - 2*1
    assert_eq!(
        inv.lines[1].proration,
        Some(Proration {
            days: 15,
            period_days: 30
        })
    );
}

fn change_at(from_ms: i64) -> Invoice {
    let mut inp = input("pro", vec![]);
    inp.segments.push(Segment {
        plan: "payg".into(),
        from_ms,
        ..Segment::default()
    });
    let inv = rate(&book(), &account("US"), &inp).unwrap();
    assert_reconciles(&inv);
    inv
}

#[test]
fn rule10_proration_by_utc_days_with_the_change_day_for_the_new_plan() {
    // change at midnight starting April 11: pro has 10 days
    let inv = change_at(day(10));
    // base 49 * 10/30 = 16.333.. -> 16.33 (rounded once: not 49/30 = 1.63 * 10 = 16.30)
    assert_eq!(inv.lines[0].amount, d("16.33"));
    assert_eq!(
        inv.lines[0].proration,
        Some(Proration {
            days: 10,
            period_days: 30
        })
    );
    // minimum 100 * 10/30 = 33.33; true-up 33.33 - 16.33 = 17.00
    assert_eq!(inv.total, d("33.33"));
    // one millisecond earlier the change falls on April 10, which counts for payg: 9 days
    let inv = change_at(day(10) - 1);
    assert_eq!(inv.lines[0].amount, d("14.70")); // 49 * 9/30
    assert_eq!(inv.total, d("30.00")); // minimum 100 * 9/30
    assert_eq!(
        segment_days(
            &april(),
            &[Segment {
                from_ms: day(0),
                ..Segment::default()
            }]
        ),
        vec![30]
    );
}

#[test]
fn rule10_a_period_closed_on_its_first_day_counts_that_day() {
    // closed five hours into April 1: one UTC day of one
    let mut inp = input("pro", vec![]);
    inp.period.end_ms = day(0) + 5 * 3_600_000;
    assert_eq!(segment_days(&inp.period, &inp.segments), vec![1]);
    let inv = rate(&book(), &account("US"), &inp).unwrap();
    assert_reconciles(&inv);
    // base 49 * 1/1 = 49.00, not prorated: as for any period closed early
    assert_eq!(inv.lines[0].amount, d("49.00"));
    assert_eq!(inv.lines[0].proration, None);
    // a period that ends before it starts is still refused
    inp.period.end_ms = day(0);
    let e = rate(&book(), &account("US"), &inp).unwrap_err();
    assert!(e.to_string().contains("$.period"), "{e}");
}

#[test]
fn rule8_a_rated_invoice_holds_until_the_next_grant_starts_or_ends() {
    let mut acct = account("US");
    acct.grants = vec![
        grant("a", "1", 0, Some(40)),
        CreditGrant {
            effective_at_ms: day(20),
            ..grant("b", "1", 0, None)
        },
    ];
    // at day 10: b starts on day 20, before a expires on day 40
    assert_eq!(acct.next_credit_change(day(10)), Some(day(20)));
    // exactly at day 20 b is usable already: the next change is a's expiry
    assert_eq!(acct.next_credit_change(day(20)), Some(day(40)));
    assert_eq!(acct.next_credit_change(day(40)), None);
}

/// Rule 8 across periods: a grant is a balance. The second period draws on what the
/// first left, never on the original amount again.
#[test]
fn rule8_a_grant_is_drawn_down_across_periods_never_spent_twice() {
    let book = per_unit_book("100", json!({}));
    let account = Account {
        grants: vec![grant("prepaid", "150", 0, None)],
        ..account("DE")
    };
    // Period 1: 119.00 due, all paid by the grant; 31 left.
    let first = rate_units(&book, &account, 1);
    assert_eq!(
        (first.credits_applied, first.total),
        (d("119.00"), d("0.00"))
    );
    // Period 2 sees only the 31 the first left: 88.00 still to pay.
    let net = crate::rating::net_of_draws(&account, [&first]);
    let second = rate_units(&book, &net, 1);
    assert_eq!(
        (second.credits_applied, second.total),
        (d("31.00"), d("88.00"))
    );
    assert_eq!(second.credit_balance, d("0.00"));
    // Without the first period's draws it would have paid 119.00 again.
    let again = rate_units(&book, &account, 1);
    assert_eq!(again.credits_applied, d("119.00"));
}
