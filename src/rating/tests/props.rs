//! Properties that hold for any input: monotone graduated totals, volume = graduated on
//! one tier, invoices that reconcile, credits that never go negative, determinism.

use super::fixtures::*;
use crate::rating::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

/// A price with up to 4 decimals, 0 to 100.
fn price() -> impl Strategy<Value = Decimal> {
    (0u64..1_000_000).prop_map(|n| Decimal::new(n as i64, 4))
}

/// 1 to 4 valid tiers: increasing bounds, last open.
fn tier_list() -> impl Strategy<Value = Vec<Tier>> {
    prop::collection::vec((1u64..1_000_000, price(), price()), 1..5).prop_map(|raw| {
        let mut bound = 0;
        let n = raw.len();
        raw.into_iter()
            .enumerate()
            .map(|(i, (step, unit_price, flat_fee))| {
                bound += step;
                Tier {
                    up_to: (i + 1 < n).then_some(bound.into()),
                    unit_price,
                    flat_fee,
                }
            })
            .collect()
    })
}

fn zero_setting() -> impl Strategy<Value = ZeroUsageFlatFee> {
    prop_oneof![
        Just(ZeroUsageFlatFee::Charge),
        Just(ZeroUsageFlatFee::Waive)
    ]
}

fn total(parts: &[TierPart]) -> Decimal {
    parts.iter().map(|p| p.amount).sum()
}

proptest! {
    #[test]
    fn graduated_is_monotone_in_usage(
        tiers in tier_list(), a in 0u64..5_000_000, b in 0u64..5_000_000, zero in zero_setting()
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        let at = |q: u64| total(&graduated(Decimal::from(q), &tiers, 1000, zero));
        prop_assert!(at(lo) <= at(hi), "{} at {lo} > {} at {hi}", at(lo), at(hi));
    }

    #[test]
    fn volume_equals_graduated_with_one_tier(
        unit_price in price(), flat_fee in price(), q in 0u64..1_000_000_000_000, per in 1u64..1_000_000, zero in zero_setting()
    ) {
        let one = vec![Tier { up_to: None, unit_price, flat_fee }];
        let q = Decimal::from(q);
        prop_assert_eq!(volume(q, &one, per, zero).amount, total(&graduated(q, &one, per, zero)));
    }

    #[test]
    fn invoices_reconcile_and_rating_is_deterministic(
        input_tokens in 0u64..2_000_000_000, images in 0u64..10_000, output in 0u64..50_000_000,
        values in prop::collection::vec(0u64..100_000, 0..6),
        country in prop_oneof![Just("US"), Just("DE"), Just("AU"), Just("JP")],
        currency in prop_oneof![Just("USD"), Just("EUR"), Just("JPY"), Just("KWD")],
        half_up in any::<bool>(), change_day in 1i64..30, grant in 0u64..50_000,
    ) {
        let book = book_with(|v| if half_up { v["rounding"] = "half_up".into() }).unwrap();
        let acct = Account {
            invoice_currency: Some(currency.into()),
            grants: vec![CreditGrant { id: "g".into(), amount: Decimal::new(grant as i64, 2), credit_rate: Some(d("0.37")), ..CreditGrant::default() }],
            ..account(country)
        };
        let mut inp = input("pro", vec![usage(BillableMeter::InputTokens, "gpt-4o", input_tokens), usage(BillableMeter::Images, "x", images)]);
        inp.segments[0].transactions = values.iter().map(|&v| Transaction { model: "m".into(), value: Decimal::new(v as i64, 2) }).collect();
        inp.segments.push(Segment { plan: "payg".into(), from_ms: day(change_day), usage: vec![usage(BillableMeter::OutputTokens, "m", output)], ..Segment::default() });
        let inv = rate(&book, &acct, &inp).unwrap();
        assert_reconciles(&inv);
        prop_assert!(inv.total >= Decimal::ZERO);
        let again = rate(&book, &acct, &inp).unwrap();
        prop_assert_eq!(serde_json::to_string(&inv).unwrap(), serde_json::to_string(&again).unwrap());
        prop_assert_eq!(inv, again);
    }

    #[test]
    fn credits_never_go_negative_or_overpay(
        grants in prop::collection::vec((0u64..10_000_000, 0u32..3, prop::option::of(0i64..60), any::<bool>(), 1u64..5_000), 0..6),
        due in 0u64..100_000_000, at in 0i64..60,
    ) {
        let book = book();
        let grants: Vec<CreditGrant> = grants.into_iter().enumerate().map(|(i, (amount, priority, expires, eur, rate))| CreditGrant {
            id: format!("g{i}"),
            amount: Decimal::new(amount as i64, 3),
            currency: eur.then(|| "EUR".to_string()),
            credit_rate: (!eur).then(|| Decimal::new(rate as i64, 4)),
            priority,
            effective_at_ms: day(0),
            expires_at_ms: expires.map(|e| day(e + 1)),
            ..CreditGrant::default()
        }).collect();
        let acct = Account { grants, ..account("US") };
        let due = Decimal::new(due as i64, 2);
        let applied = apply_credits(&book, &acct, "USD", due, day(at));
        let paid: Decimal = applied.iter().map(|c| c.applied).sum();
        prop_assert!(paid <= due);
        for c in &applied {
            let g = acct.grants.iter().find(|g| g.id == c.grant_id).unwrap();
            prop_assert!(c.applied > Decimal::ZERO && c.remaining >= Decimal::ZERO);
            prop_assert!(c.drawn <= g.amount);
            prop_assert!(g.usable_at(day(at)));
        }
        // whatever is not paid, the usable balance could not cover
        if paid < due {
            prop_assert_eq!(paid, remaining_balance(&book, &acct, day(at)));
        }
    }
}
