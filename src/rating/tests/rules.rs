//! PRICING.md rules 3 to 7 through `rate`, at their boundaries. Rules 1, 2 and the arithmetic
//! of 4 and 5 are also covered model by model in `charges.rs`.

use super::fixtures::*;
use crate::rating::*;
use serde_json::json;

/// One `p` plan charging `units` of `meter` at `price` per unit, in `settings`' book.
pub(super) fn per_unit_book(price: &str, settings: serde_json::Value) -> PriceBook {
    single(
        json!({ "meter": "requests", "pricing": { "kind": "per_unit", "unit_price": price } }),
        settings,
    )
}

pub(super) fn rate_units(book: &PriceBook, acct: &Account, units: u64) -> Invoice {
    let inv = rate(
        book,
        acct,
        &input("p", vec![usage(BillableMeter::Requests, "m", units)]),
    )
    .unwrap();
    assert_reconciles(&inv);
    inv
}

#[test]
fn rule3_zero_usage_flat_fee_setting() {
    let charge = json!({ "meter": "requests", "included_units": 100, "pricing": { "kind": "graduated",
        "tiers": [ { "up_to": 10, "unit_price": "1", "flat_fee": "5" }, { "up_to": null, "unit_price": "0.5" } ] } });
    let charged = single(charge.clone(), json!({}));
    let waived = single(charge, json!({ "zero_usage_flat_fee": "waive" }));
    // default "charge": nothing used, tier 1's flat fee 5.00 anyway
    assert_eq!(rate_units(&charged, &account("US"), 0).total, d("5.00"));
    // included units cover all 100 used: billable usage is zero, same rule
    assert_eq!(rate_units(&charged, &account("US"), 100).total, d("5.00"));
    assert_eq!(rate_units(&waived, &account("US"), 0).total, d("0.00"));
    assert_eq!(rate_units(&waived, &account("US"), 100).total, d("0.00"));
    // 101 used: 1 billable unit * 1 + fee 5 = 6.00 under either setting
    assert_eq!(rate_units(&waived, &account("US"), 101).total, d("6.00"));
}

#[test]
fn rule4_package_through_an_invoice() {
    let book = single(
        json!({ "meter": "requests", "pricing": { "kind": "package", "package_size": 10, "package_price": "0.50", "free_units": 10 } }),
        json!({}),
    );
    // (121 - 10) / 10 = 11.1 -> 12 packages * 0.50 = 6.00
    assert_eq!(rate_units(&book, &account("US"), 121).total, d("6.00"));
    assert_eq!(rate_units(&book, &account("US"), 10).total, d("0.00")); // all free
}

#[test]
fn rule5_percentage_through_an_invoice() {
    let mut inp = input("pro", vec![]);
    inp.segments[0].transactions = ["10", "0.10", "100"]
        .iter()
        .map(|v| Transaction {
            model: "gpt-4o".into(),
            value: d(v),
        })
        .collect();
    let inv = rate(&book(), &account("US"), &inp).unwrap();
    let line = inv
        .lines
        .iter()
        .find(|l| l.meter == Some(BillableMeter::TransactionValue))
        .unwrap();
    // 10*0.2 + 0.01 = 2.01; 0.10*0.2 + 0.01 = 0.03 -> min 0.05; 100*0.2 + 0.01 = 20.01 -> max 5
    // 2.01 + 0.05 + 5 = 7.06
    assert_eq!(line.amount, d("7.06"));
    assert_eq!(line.quantity, d("3"));
}

#[test]
fn rule6_ties_round_by_the_named_mode() {
    let cases = [
        // (currency, unit price, half_even, half_up)
        ("USD", "0.125", "0.12", "0.13"), // tie at 2 decimals: even 2 vs away from zero
        ("USD", "0.135", "0.14", "0.14"), // even neighbour is up here
        ("JPY", "2.5", "2", "3"),         // JPY has no minor unit
        ("KWD", "0.0125", "0.012", "0.013"), // KWD has 3
        ("EUR", "0.124999", "0.12", "0.12"), // not a tie
    ];
    for (currency, price, even, up) in cases {
        let cur = json!({ "currency": currency, "fx": null });
        let even_book = per_unit_book(price, cur.clone());
        let mut up_settings = cur;
        up_settings["rounding"] = json!("half_up");
        let up_book = per_unit_book(price, up_settings);
        assert_eq!(
            rate_units(&even_book, &account("US"), 1).total,
            d(even),
            "{currency} {price}"
        );
        assert_eq!(
            rate_units(&up_book, &account("US"), 1).total,
            d(up),
            "{currency} {price}"
        );
    }
}

#[test]
fn rule6_half_up_is_away_from_zero_for_negative_amounts() {
    assert_eq!(Rounding::HalfUp.round(d("-0.125"), "USD"), d("-0.13"));
    assert_eq!(Rounding::HalfEven.round(d("-0.125"), "USD"), d("-0.12"));
    assert_eq!(Rounding::HalfUp.round(d("-2.5"), "JPY"), d("-3"));
}

#[test]
fn rule6_a_line_is_rounded_once_not_per_tier() {
    let book = single(
        json!({ "meter": "requests", "pricing": { "kind": "graduated", "tiers": [
            { "up_to": 1, "unit_price": "0.005" }, { "up_to": null, "unit_price": "0.005" } ] } }),
        json!({}),
    );
    // 0.005 + 0.005 = 0.010 -> 0.01; rounding each tier (half-even) would give 0.00
    let inv = rate_units(&book, &account("US"), 2);
    assert_eq!(inv.lines[0].exact_amount, d("0.010"));
    assert_eq!(inv.lines[0].amount, d("0.01"));
}

#[test]
fn rule7_exclusive_inclusive_and_regional_tax() {
    let book = per_unit_book("100", json!({}));
    let de = rate_units(&book, &account("DE"), 1);
    // exclusive: 100.00 + round(100 * 0.19) = 100.00 + 19.00
    assert_eq!(
        (de.subtotal, de.tax, de.total),
        (d("100.00"), d("19.00"), d("119.00"))
    );
    let au = rate_units(&book, &account("AU"), 10);
    // inclusive: gross 1000, tax = round(1000 * 0.10 / 1.10) = 90.91, net 909.09
    assert_eq!(
        (au.subtotal, au.tax, au.total),
        (d("909.09"), d("90.91"), d("1000.00"))
    );
    let ny = Account {
        region: Some("NY".into()),
        ..account("US")
    };
    let small = per_unit_book("10", json!({}));
    // NY overrides US's 0: 10.00 * 0.08875 = 0.8875 -> 0.89
    assert_eq!(rate_units(&small, &ny, 1).tax, d("0.89"));
    let ca = Account {
        region: Some("CA".into()),
        ..account("US")
    };
    assert_eq!(rate_units(&small, &ca, 1).tax, d("0.00")); // unlisted region: country rate
}

#[test]
fn rule7_tax_is_rounded_per_line_and_summed() {
    let book = book_with(|v| {
        v["plans"] = json!({ "p": { "charges": [
            { "meter": "requests", "pricing": { "kind": "per_unit", "unit_price": "0.05" } },
            { "meter": "images", "pricing": { "kind": "per_unit", "unit_price": "0.05" } } ] } });
    })
    .unwrap();
    let mut inp = input(
        "p",
        vec![
            usage(BillableMeter::Requests, "m", 1),
            usage(BillableMeter::Images, "m", 1),
        ],
    );
    inp.as_of_ms = day(30);
    let inv = rate(&book, &account("JP"), &inp).unwrap();
    // each line: 0.05 * 0.10 = 0.005 -> 0.00 (half-even); invoice tax 0.00 + 0.00, not round(0.10 * 0.10) = 0.01
    assert_eq!(inv.tax, d("0.00"));
    assert_eq!(inv.total, d("0.10"));
    assert_reconciles(&inv);
}

#[test]
fn rule7_reverse_charge_needs_a_business_with_a_tax_id_where_allowed() {
    let book = per_unit_book("100", json!({}));
    let with = |country: &str, business: bool, tax_id: Option<&str>| Account {
        business,
        tax_id: tax_id.map(str::to_string),
        ..account(country)
    };
    let rc = rate_units(&book, &with("DE", true, Some("DE123456789")), 1);
    assert_eq!((rc.tax, rc.total), (d("0.00"), d("100.00")));
    assert_eq!(rc.lines[0].note.as_deref(), Some(REVERSE_CHARGE_NOTE));
    // 100 * 0.19 = 19.00 in every other case
    for acct in [
        with("DE", true, None),
        with("DE", true, Some(" ")),
        with("DE", false, Some("DE1")),
    ] {
        let inv = rate_units(&book, &acct, 1);
        assert_eq!(inv.tax, d("19.00"));
        assert_eq!(inv.lines[0].note, None);
    }
    // JP does not allow reverse charge: 100 * 0.10
    assert_eq!(
        rate_units(&book, &with("JP", true, Some("T1")), 1).tax,
        d("10.00")
    );
}

/// Rule 14: bounds are decimals, so a 0.1-unit tier, a half-unit allowance and a
/// half-unit package can be written; usage is still whole units.
#[test]
fn rule14_decimal_bounds_price_fractions_of_a_unit_exactly() {
    let tiered = single(
        json!({ "meter": "requests", "included_units": "0.5", "pricing": { "kind": "graduated",
            "tiers": [ { "up_to": "0.1", "unit_price": "10" }, { "up_to": null, "unit_price": "1" } ] } }),
        json!({}),
    );
    // 2 used, 0.5 included: 1.5 billable = 0.1 at 10 + 1.4 at 1 = 2.40
    let inv = rate_units(&tiered, &account("US"), 2);
    assert_eq!(inv.total, d("2.40"));
    assert_eq!(
        (inv.lines[0].included_used, inv.lines[0].overage),
        (d("0.5"), d("1.5"))
    );
    let json = serde_json::to_value(&inv).unwrap();
    assert_eq!(json["lines"][0]["included_units"], "0.5");
    assert_eq!(json["lines"][0]["tiers"][0]["up_to"], "0.1");
    assert_eq!(
        json["lines"][0]["tiers"][1]["up_to"],
        serde_json::Value::Null
    );
    // at exactly the included half unit nothing is billable
    let packaged = single(
        json!({ "meter": "requests", "pricing": { "kind": "package", "package_size": "0.5",
            "package_price": "0.30", "free_units": "1.5" } }),
        json!({}),
    );
    // 3 used, 1.5 free: 1.5 / 0.5 = 3 packages at 0.30
    assert_eq!(rate_units(&packaged, &account("US"), 3).total, d("0.90"));
    assert_eq!(rate_units(&packaged, &account("US"), 1).total, d("0.00"));
    // a tier bound of 0 or one not above the previous still overlaps
    let zero = book_with(|v| {
        v["plans"] = json!({ "p": { "charges": [{ "meter": "requests", "pricing": { "kind": "graduated",
            "tiers": [ { "up_to": "0.1", "unit_price": "1" }, { "up_to": "0.1", "unit_price": "1" },
                       { "up_to": null, "unit_price": "1" } ] } }] } });
    });
    let e = zero.unwrap_err();
    assert!(e.path.ends_with("tiers[1].up_to"), "{e:?}");
    let negative = book_with(|v| {
        v["plans"] = json!({ "p": { "charges": [{ "meter": "requests", "included_units": "-1",
            "pricing": { "kind": "per_unit", "unit_price": "1" } }] } });
    });
    assert!(negative.is_err());
    // a package of a millionth would overflow a charge: refused, as is a float bound
    for (size, field) in [("\"0.0009\"", "package_size"), ("0.5", "package_size")] {
        let book = book_with(|v| {
            let size: serde_json::Value = serde_json::from_str(size).unwrap();
            v["plans"] = json!({ "p": { "charges": [{ "meter": "requests", "pricing": {
                "kind": "package", "package_size": size, "package_price": "1" } }] } });
        });
        let e = book.unwrap_err();
        assert!(e.path.contains(field), "{e:?}");
    }
}

/// Rule 14: durations are counted in milliseconds and priced per second, so 2.5 s is
/// billed as 2.5 s, never rounded up to 3.
#[test]
fn rule14_seconds_are_priced_from_milliseconds_exactly() {
    let book = single(
        json!({ "meter": "seconds", "pricing": { "kind": "per_unit", "unit_price": "0.006" } }),
        json!({}),
    );
    let inp = input("p", vec![usage(BillableMeter::Seconds, "whisper-1", 2_500)]);
    let inv = rate(&book, &account("US"), &inp).unwrap();
    assert_eq!(inv.lines[0].quantity, d("2.5"));
    assert_eq!(inv.lines[0].exact_amount, d("0.015"));
}
