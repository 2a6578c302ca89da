//! Price book and account validation: every rejection names its JSON path.

use super::fixtures::*;
use crate::rating::*;
use serde_json::json;

fn path_of(patch: impl Fn(&mut serde_json::Value)) -> (String, String) {
    let e = book_with(patch).unwrap_err();
    assert_eq!(e.document, "price_book");
    (e.path, e.message)
}

#[test]
fn demo_book_is_valid_with_defaults() {
    let b = book();
    assert_eq!(b.rounding, Rounding::HalfEven);
    assert_eq!(b.zero_usage_flat_fee, ZeroUsageFlatFee::Charge);
    assert_eq!(b.plans.len(), 3);
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let (path, msg) = path_of(|v| v["plans"]["pro"]["base_fees"] = json!("1"));
    assert_eq!(path, "$.plans.pro.base_fees");
    assert!(msg.contains("base_fees"), "{msg}");
    let (path, _) =
        path_of(|v| v["plans"]["payg"]["charges"][2]["pricing"]["tiers"][0]["upto"] = json!(5));
    assert_eq!(path, "$.plans.payg.charges[2].pricing.tiers[0].upto");
    // inside the `kind`-tagged pricing object too, down to the field
    let (path, msg) = path_of(|v| v["plans"]["pro"]["charges"][1]["pricing"]["free"] = json!(1));
    assert_eq!(path, "$.plans.pro.charges[1].pricing.free");
    assert!(
        msg.contains("unknown field `free`") && !msg.contains("line"),
        "{msg}"
    );
    let (path, _) = path_of(|v| {
        v["plans"]["pro"]["charges"][0]["pricing"]["tiers"][1]["unit_price"] = json!("x")
    });
    assert_eq!(path, "$.plans.pro.charges[0].pricing.tiers[1].unit_price");
    let (path, msg) =
        path_of(|v| v["plans"]["pro"]["charges"][0]["pricing"]["kind"] = json!("stairstep"));
    assert_eq!(path, "$.plans.pro.charges[0].pricing.kind");
    assert!(msg.contains("stairstep"), "{msg}");
}

#[test]
fn bad_values_are_rejected_with_their_path() {
    let (path, _) = path_of(|v| v["plans"]["pro"]["base_fee"] = json!("4x"));
    assert_eq!(path, "$.plans.pro.base_fee");
    let (path, _) = path_of(|v| v["rounding"] = json!("half_down"));
    assert_eq!(path, "$.rounding");
    let (path, _) = path_of(|v| v["plans"]["pro"]["charges"][0]["meter"] = json!("tokens"));
    assert_eq!(path, "$.plans.pro.charges[0].meter");
}

#[test]
fn overlapping_tiers_are_rejected() {
    let (path, msg) = path_of(|v| {
        v["plans"]["payg"]["charges"][2]["pricing"]["tiers"] = json!([
            { "up_to": 100, "unit_price": "1" }, { "up_to": 100, "unit_price": "1" }, { "up_to": null, "unit_price": "1" } ]);
    });
    assert_eq!(path, "$.plans.payg.charges[2].pricing.tiers[1].up_to");
    assert!(msg.contains("overlaps"), "{msg}");
    let (path, msg) = path_of(|v| {
        v["plans"]["payg"]["charges"][2]["pricing"]["tiers"] = json!([
            { "up_to": null, "unit_price": "1" }, { "up_to": null, "unit_price": "1" } ]);
    });
    assert_eq!(path, "$.plans.payg.charges[2].pricing.tiers[0].up_to");
    assert!(msg.contains("only the last tier"), "{msg}");
    let (path, msg) = path_of(|v| {
        v["plans"]["pro"]["charges"][0]["pricing"]["tiers"] =
            json!([{ "up_to": 0, "unit_price": "1" }, { "up_to": null, "unit_price": "1" }]);
    });
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "$.plans.pro.charges[0].pricing.tiers[0].up_to",
            "must be above 0"
        )
    );
}

#[test]
fn gapped_tiers_are_rejected() {
    let (path, msg) = path_of(|v| {
        v["plans"]["payg"]["charges"][2]["pricing"]["tiers"] = json!([
            { "up_to": 100, "unit_price": "1" }, { "up_to": 1000, "unit_price": "1" } ]);
    });
    assert_eq!(path, "$.plans.payg.charges[2].pricing.tiers[1].up_to");
    assert!(msg.contains("gap") && msg.contains("1000"), "{msg}");
    let (path, _) = path_of(|v| v["plans"]["payg"]["charges"][2]["pricing"]["tiers"] = json!([]));
    assert_eq!(path, "$.plans.payg.charges[2].pricing.tiers");
}

#[test]
fn negative_prices_are_rejected() {
    type Patch = fn(&mut serde_json::Value);
    let cases: [(&str, Patch); 5] = [
        ("$.plans.payg.charges[0].pricing.unit_price", |v| {
            v["plans"]["payg"]["charges"][0]["pricing"]["unit_price"] = json!("-0.01")
        }),
        ("$.plans.payg.charges[2].pricing.tiers[1].flat_fee", |v| {
            v["plans"]["payg"]["charges"][2]["pricing"]["tiers"][1]["flat_fee"] = json!("-1")
        }),
        ("$.plans.pro.base_fee", |v| {
            v["plans"]["pro"]["base_fee"] = json!("-49")
        }),
        ("$.plans.pro.minimum_commitment", |v| {
            v["plans"]["pro"]["minimum_commitment"] = json!("-1")
        }),
        ("$.plans.pro.charges[2].pricing.min_per_transaction", |v| {
            v["plans"]["pro"]["charges"][2]["pricing"]["min_per_transaction"] = json!("-1")
        }),
    ];
    for (want, patch) in cases {
        let (path, msg) = path_of(patch);
        assert_eq!(path, want);
        assert!(msg.contains("negative"), "{msg}");
    }
    // -0 is zero, not negative
    assert!(book_with(|v| v["plans"]["pro"]["base_fee"] = json!("-0")).is_ok());
}

#[test]
fn unknown_currencies_and_bad_fx_are_rejected() {
    assert_eq!(path_of(|v| v["currency"] = json!("XYZ")).0, "$.currency");
    assert_eq!(
        path_of(|v| v["fx"]["rates"]["USD"]["ZZZ"] = json!("1")).0,
        "$.fx.rates.USD.ZZZ"
    );
    assert_eq!(
        path_of(|v| v["fx"]["rates"]["USD"]["EUR"] = json!("0")).0,
        "$.fx.rates.USD.EUR"
    );
    assert_eq!(
        path_of(|v| v["fx"]["as_of"] = json!("2026-13-01")).0,
        "$.fx.as_of"
    );
}

#[test]
fn tax_table_problems_are_rejected() {
    assert_eq!(
        path_of(|v| v["tax"]["countries"]["DE"]["rate"] = json!("1.5")).0,
        "$.tax.countries.DE.rate"
    );
    assert_eq!(
        path_of(|v| v["tax"]["countries"]["de"] = json!({ "rate": "0.1" })).0,
        "$.tax.countries.de"
    );
    assert_eq!(
        path_of(|v| v["tax"]["countries"]["US"]["regions"]["NY"]["rate"] = json!("-0.1")).0,
        "$.tax.countries.US.regions.NY.rate"
    );
}

#[test]
fn charge_shape_problems_are_rejected() {
    let (path, msg) = path_of(|v| v["plans"]["pro"]["charges"][2]["meter"] = json!("requests"));
    assert_eq!(path, "$.plans.pro.charges[2].pricing.kind");
    assert!(msg.contains("transaction_value"), "{msg}");
    assert_eq!(
        path_of(|v| v["plans"]["pro"]["charges"][1]["price_per"] = json!(10)).0,
        "$.plans.pro.charges[1].price_per"
    );
    assert_eq!(
        path_of(|v| v["plans"]["payg"]["charges"][0]["price_per"] = json!(0)).0,
        "$.plans.payg.charges[0].price_per"
    );
    assert_eq!(
        path_of(|v| v["plans"]["pro"]["charges"][1]["pricing"]["package_size"] = json!(0)).0,
        "$.plans.pro.charges[1].pricing.package_size"
    );
    let (path, msg) = path_of(|v| v["plans"]["payg"]["charges"][1]["model"] = json!("gpt-4o"));
    assert_eq!(path, "$.plans.payg.charges[1]");
    assert!(msg.contains("charges[0]"), "{msg}");
    assert_eq!(
        path_of(
            |v| v["plans"]["pro"]["charges"][2]["pricing"]["max_per_transaction"] = json!("0.01")
        )
        .0,
        "$.plans.pro.charges[2].pricing.max_per_transaction"
    );
    assert_eq!(path_of(|v| v["plans"] = json!({})).0, "$.plans");
    let (path, _) = path_of(|v| v["plans"]["pro"]["base_fee"] = json!("1000000.01"));
    assert_eq!(path, "$.plans.pro.base_fee");
}

fn account_err(json: serde_json::Value) -> RatingError {
    let e = Account::parse(&json.to_string(), &book()).unwrap_err();
    assert_eq!(e.document, "account");
    e
}

#[test]
fn an_account_must_fit_the_book() {
    let ok = json!({ "customer_id": "c", "country": "DE", "business": true, "tax_id": "DE1",
        "invoice_currency": "EUR", "grants": [ { "id": "g", "amount": "5", "currency": "USD", "expires_at_ms": 10 } ] });
    assert!(Account::parse(&ok.to_string(), &book()).is_ok());
    let e = account_err(json!({ "customer_id": "c", "country": "FR" }));
    assert_eq!(e.path, "$.country");
    assert!(
        e.message.contains("tax table") && e.message.contains("FR"),
        "{}",
        e.message
    );
    // the book converts USD -> EUR, -> JPY and EUR -> USD, but not USD -> GBP or JPY -> USD
    let e = account_err(json!({ "customer_id": "c", "country": "DE", "invoice_currency": "GBP" }));
    assert_eq!(e.path, "$.invoice_currency");
    let e = account_err(json!({ "customer_id": "c", "country": "DE", "grants": [
        { "id": "g", "amount": "5", "currency": "EUR" }, { "id": "h", "amount": "5", "currency": "JPY" } ] }));
    assert_eq!(e.path, "$.grants[1].currency");
    assert!(e.message.contains("no FX rate JPY -> USD"), "{}", e.message);
    let e = account_err(
        json!({ "customer_id": "c", "country": "DE", "grants": [ { "id": "g", "amount": "5" } ] }),
    );
    assert_eq!(e.path, "$.grants[0]");
    let e = account_err(json!({ "customer_id": "c", "country": "DE", "grants": [
        { "id": "g", "amount": "-5", "credit_rate": "0.01" } ] }));
    assert_eq!(e.path, "$.grants[0].amount");
    let e = account_err(json!({ "customer_id": "c", "country": "DE", "grants": [
        { "id": "g", "amount": "5", "credit_rate": "0.01", "effective_at_ms": 9, "expires_at_ms": 9 } ] }));
    assert_eq!(e.path, "$.grants[0].expires_at_ms");
    let e = account_err(
        json!({ "customer_id": "c", "country": "DE", "grants": [ { "id": "g", "amount": "5", "credit_rate": "1", "prio": 1 } ] }),
    );
    assert_eq!(e.path, "$.grants[0].prio");
}
