//! Table tests of each charge model's arithmetic, at and around every tier bound, at
//! zero and at 1e12 units.

use super::fixtures::{d, tiers};
use crate::rating::*;
use rust_decimal::Decimal;

/// Tier 1 (0, 100] at 0.10 + fee 1; tier 2 (100, 1000] at 0.05 + fee 2; tier 3 above
/// at 0.01 + fee 5.
fn three_tiers() -> Vec<Tier> {
    tiers(&[
        (Some(100), "0.10", "1"),
        (Some(1000), "0.05", "2"),
        (None, "0.01", "5"),
    ])
}

fn graduated_total(q: &str, zero: ZeroUsageFlatFee) -> Decimal {
    graduated(d(q), &three_tiers(), 1, zero)
        .iter()
        .map(|t| t.amount)
        .sum()
}

#[test]
fn per_unit_table() {
    let cases = [
        // (units, unit price, per, expected)
        ("0", "2.50", 1_000_000, "0"),                  // nothing used
        ("1000", "0.002", 1, "2"),                      // 1000*0.002 = 2.000
        ("1500000", "2.50", 1_000_000, "3.75"),         // 1.5M * 2.50/1M = 3.75
        ("1", "0.15", 1_000_000, "0.00000015"),         // exact, not rounded: 1 * 0.15/1e6
        ("1000000000000", "0.15", 1_000_000, "150000"), // 1e12 * 0.15/1e6 = 150000
    ];
    for (q, price, per, want) in cases {
        assert_eq!(
            per_unit(d(q), d(price), per),
            d(want),
            "{q} units at {price}/{per}"
        );
    }
}

#[test]
fn graduated_table_around_every_bound() {
    use ZeroUsageFlatFee::Charge;
    let cases = [
        ("1", "1.10"),                    // 1*0.10 + fee1 1
        ("99", "10.90"),                  // 99*0.10 + 1
        ("100", "11"), // 100*0.10 + 1: exactly at the bound, tier 2's fee not charged
        ("100.5", "13.025"), // 11 + 0.5*0.05 + fee2 2: fractional usage is in tier 2
        ("101", "13.05"), // 11 + 1*0.05 + 2
        ("999", "57.95"), // 11 + 899*0.05 + 2 = 11 + 44.95 + 2
        ("1000", "58"), // 11 + 900*0.05 + 2 = 58, tier 3's fee not charged
        ("1001", "63.01"), // 58 + 1*0.01 + fee3 5
        ("1000000000000", "10000000053"), // 58 + (1e12 - 1000)*0.01 + 5 = 63 + 9999999990
    ];
    for (q, want) in cases {
        assert_eq!(graduated_total(q, Charge), d(want), "graduated at {q}");
    }
}

#[test]
fn graduated_breakdown_names_each_tier() {
    let parts = graduated(d("150"), &three_tiers(), 1, ZeroUsageFlatFee::Charge);
    assert_eq!(parts.len(), 2);
    // tier 1: 100 units * 0.10 + 1 = 11; tier 2: 50 * 0.05 + 2 = 4.50
    assert_eq!((parts[0].units, parts[0].amount), (d("100"), d("11")));
    assert_eq!((parts[1].units, parts[1].amount), (d("50"), d("4.50")));
    assert_eq!(parts[1].up_to, Some(Decimal::from(1000)));
}

#[test]
fn graduated_zero_usage_follows_the_setting() {
    // charge: tier 1's fee 1 at zero usage; waive: nothing
    assert_eq!(graduated_total("0", ZeroUsageFlatFee::Charge), d("1"));
    assert_eq!(graduated_total("0", ZeroUsageFlatFee::Waive), d("0"));
    // one unit charges the fee under either setting: 0.10 + 1
    assert_eq!(graduated_total("1", ZeroUsageFlatFee::Waive), d("1.10"));
}

#[test]
fn graduated_quotes_prices_per_million() {
    let t = tiers(&[(Some(10_000_000), "0.60", "0"), (None, "0.40", "0")]);
    let total = |q: u64| -> Decimal {
        graduated(Decimal::from(q), &t, 1_000_000, ZeroUsageFlatFee::Charge)
            .iter()
            .map(|p| p.amount)
            .sum()
    };
    assert_eq!(total(10_000_000), d("6")); // 10M * 0.60/1M
    assert_eq!(total(12_000_000), d("6.8")); // 6 + 2M * 0.40/1M
    assert_eq!(total(1_000_000_000_000), d("400002")); // 6 + (1e12 - 1e7) * 0.40/1e6 = 6 + 399996
}

#[test]
fn volume_table_around_every_bound() {
    let cases = [
        ("1", "1.10"),                    // 1*0.10 + 1
        ("99", "10.90"),                  // 99*0.10 + 1
        ("100", "11"),                    // 100*0.10 + 1: at the bound, still tier 1
        ("100.5", "7.025"),               // 100.5*0.05 + 2: tier 2, and the total falls (rule 2)
        ("101", "7.05"),                  // 101*0.05 + 2
        ("999", "51.95"),                 // 999*0.05 + 2
        ("1000", "52"),                   // 1000*0.05 + 2
        ("1001", "15.01"),                // 1001*0.01 + 5
        ("1000000000000", "10000000005"), // 1e12*0.01 + 5
    ];
    for (q, want) in cases {
        let part = volume(d(q), &three_tiers(), 1, ZeroUsageFlatFee::Charge);
        assert_eq!(part.amount, d(want), "volume at {q}");
        assert_eq!(part.units, d(q));
    }
    let zero = |z| volume(Decimal::ZERO, &three_tiers(), 1, z).amount;
    assert_eq!(zero(ZeroUsageFlatFee::Charge), d("1")); // tier 1's fee only
    assert_eq!(zero(ZeroUsageFlatFee::Waive), d("0"));
}

#[test]
fn package_table() {
    let cases = [
        // (units, size, price, free, packages, amount)
        (0u64, 10, "1.00", 10, 0u64, "0"),  // nothing used
        (5, 10, "1.00", 10, 0, "0"),        // free units cover it
        (10, 10, "1.00", 10, 0, "0"),       // exactly the free units
        (11, 10, "1.00", 10, 1, "1.00"),    // 1 unit left: one started package
        (20, 10, "1.00", 10, 1, "1.00"),    // 10 left: exactly one package
        (21, 10, "1.00", 10, 2, "2.00"),    // 11 left: two packages
        (121, 10, "1.00", 10, 12, "12.00"), // (121 - 10) / 10 = 11.1 -> 12 packages
        (
            1_000_000_000_000u64,
            1000,
            "0.50",
            0,
            1_000_000_000u64,
            "500000000",
        ), // 1e12/1000 * 0.50
    ];
    for (q, size, price, free, packages, amount) in cases {
        let (p, a) = package(Decimal::from(q), size.into(), d(price), free.into());
        assert_eq!((p, a), (Decimal::from(packages), d(amount)), "{q} units");
    }
}

fn terms(rate: &str, fixed: &str, min: &str, max: &str) -> PercentageTerms {
    PercentageTerms {
        rate: d(rate),
        fixed_fee: d(fixed),
        min_per_transaction: Some(d(min)),
        max_per_transaction: Some(d(max)),
        ..PercentageTerms::default()
    }
}

#[test]
fn percentage_table() {
    let t = terms("0.02", "0.30", "0.60", "10");
    let cases = [
        ("100", "2.30"), // 100*0.02 + 0.30
        ("15", "0.60"),  // 15*0.02 + 0.30 = 0.60, exactly the minimum
        ("10", "0.60"),  // 0.20 + 0.30 = 0.50 -> minimum 0.60
        ("0", "0.60"),   // not free: fixed fee 0.30 -> minimum 0.60
        ("485", "10"),   // 9.70 + 0.30 = 10.00, exactly the maximum
        ("1000", "10"),  // 20.30 -> maximum 10
    ];
    for (value, want) in cases {
        assert_eq!(percentage(&[d(value)], &t).amount, d(want), "value {value}");
    }
    // 1e12 of value, no maximum: 1e12*0.02 + 0.30
    let open = PercentageTerms {
        max_per_transaction: None,
        ..t
    };
    assert_eq!(
        percentage(&[d("1000000000000")], &open).amount,
        d("20000000000.30")
    );
}

#[test]
fn percentage_free_transactions_cost_nothing_and_skip_the_minimum() {
    let t = PercentageTerms {
        free_transactions: 1,
        ..terms("0.02", "0.30", "0.60", "10")
    };
    let out = percentage(&[d("100"), d("100")], &t);
    // first free (0, no minimum), second 100*0.02 + 0.30
    assert_eq!((out.amount, out.free_transactions), (d("2.30"), 1));
}

#[test]
fn percentage_free_amount_is_used_up_in_order() {
    let t = PercentageTerms {
        free_amount: d("50"),
        ..terms("0.02", "0.30", "0.60", "10")
    };
    let out = percentage(&[d("30"), d("30"), d("100")], &t);
    // 30 entirely free -> 0; 30 with 20 free -> 10*0.02 + 0.30 = 0.50 -> min 0.60;
    // 100 -> 2.30. Total 0 + 0.60 + 2.30 = 2.90
    assert_eq!(out.amount, d("2.90"));
    assert_eq!(out.free_transactions, 1);
    assert_eq!(out.chargeable_value, d("110"));
}

#[test]
fn percentage_allowance_with_a_count_and_an_amount_ends_when_either_runs_out() {
    let t = PercentageTerms {
        free_transactions: 3,
        free_amount: d("100"),
        ..terms("0.10", "0", "0", "1000")
    };
    // The amount runs out first: 60 free; 40 of 60 free (20 * 0.10 = 2); then 10 and
    // 10 charged in full (1 + 1), though the count allows a third free one.
    let out = percentage(&[d("60"), d("60"), d("10"), d("10")], &t);
    assert_eq!((out.amount, out.free_transactions), (d("4.00"), 1));
    // The count runs out first: 10, 10, 10 free (30 of the 100), the fourth 50 charged.
    let out = percentage(&[d("10"), d("10"), d("10"), d("50")], &t);
    assert_eq!((out.amount, out.free_transactions), (d("5.00"), 3));
    assert_eq!(out.chargeable_value, d("50"));
}

#[test]
fn a_zero_value_transaction_among_the_free_ones_costs_nothing() {
    let t = PercentageTerms {
        free_transactions: 2,
        free_amount: d("100"),
        ..terms("0.10", "0.30", "0.50", "10")
    };
    // counted and covered: no fixed fee, no minimum
    let out = percentage(&[d("0"), d("20")], &t);
    assert_eq!((out.amount, out.free_transactions), (d("0"), 2));
}
