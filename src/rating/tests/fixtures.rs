//! Shared test data: a price book covering every charge model, accounts and inputs.

use crate::period::Period;
use crate::rating::*;
use rust_decimal::Decimal;
use std::str::FromStr;

/// A decimal from its text.
pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// 2026-04-01T00:00:00Z as a UTC day number: 56 years with 14 leap days to 2026-01-01,
/// then 31 + 28 + 31 days.
pub const APR1: i64 = 56 * 365 + 14 + 90;

/// Midnight UTC of day `APR1 + n`.
pub fn day(n: i64) -> i64 {
    (APR1 + n) * DAY_MS
}

/// April 2026: 30 days.
pub fn april() -> Period {
    Period {
        start_ms: day(0),
        end_ms: day(30),
    }
}

pub const BOOK: &str = r#"{
  "version": "2026-04",
  "currency": "USD",
  "fx": { "as_of": "2026-03-31", "rates": { "USD": { "EUR": "0.92", "JPY": "151.37", "KWD": "0.3075" }, "EUR": { "USD": "1.08" } } },
  "tax": { "countries": {
    "US": { "rate": "0", "regions": { "NY": { "rate": "0.08875" } } },
    "DE": { "rate": "0.19", "reverse_charge": true },
    "AU": { "rate": "0.10", "mode": "inclusive" },
    "JP": { "rate": "0.10" }
  } },
  "plans": {
    "payg": { "charges": [
      { "meter": "input_tokens", "model": "gpt-4o", "price_per": 1000000,
        "pricing": { "kind": "per_unit", "unit_price": "2.50" } },
      { "meter": "input_tokens", "price_per": 1000000,
        "pricing": { "kind": "per_unit", "unit_price": "0.15" } },
      { "meter": "output_tokens", "price_per": 1000000,
        "pricing": { "kind": "graduated", "tiers": [
          { "up_to": 10000000, "unit_price": "0.60" },
          { "up_to": null, "unit_price": "0.40" } ] } }
    ] },
    "pro": { "base_fee": "49.00", "minimum_commitment": "100.00", "charges": [
      { "meter": "input_tokens", "included_units": 5000000, "price_per": 1000000,
        "pricing": { "kind": "volume", "tiers": [
          { "up_to": 100000000, "unit_price": "1.00" },
          { "up_to": null, "unit_price": "0.80", "flat_fee": "10.00" } ] } },
      { "meter": "images",
        "pricing": { "kind": "package", "package_size": 10, "package_price": "0.50", "free_units": 10 } },
      { "meter": "transaction_value",
        "pricing": { "kind": "percentage", "rate": "0.2", "fixed_fee": "0.01",
                     "min_per_transaction": "0.05", "max_per_transaction": "5" } }
    ] },
    "prepaid": { "block_when_credits_exhausted": true, "charges": [
      { "meter": "output_tokens", "price_per": 1000, "pricing": { "kind": "per_unit", "unit_price": "0.002" } }
    ] }
  }
}"#;

pub fn book() -> PriceBook {
    PriceBook::parse(BOOK).unwrap()
}

/// The demo book with a JSON patch applied, parsed and validated.
pub fn book_with(patch: impl Fn(&mut serde_json::Value)) -> Result<PriceBook, RatingError> {
    let mut v: serde_json::Value = serde_json::from_str(BOOK).unwrap();
    patch(&mut v);
    PriceBook::parse(&serde_json::to_string_pretty(&v).unwrap())
}

/// A one-plan book whose only charge is `charge` (JSON), with `settings` merged in.
pub fn single(charge: serde_json::Value, settings: serde_json::Value) -> PriceBook {
    book_with(|v| {
        v["plans"] = serde_json::json!({ "p": { "charges": [charge.clone()] } });
        for (k, val) in settings.as_object().unwrap() {
            v[k] = val.clone();
        }
    })
    .unwrap()
}

pub fn account(country: &str) -> Account {
    Account {
        customer_id: "cus_1".into(),
        country: country.into(),
        ..Account::default()
    }
}

pub fn usage(meter: BillableMeter, model: &str, units: u64) -> MeterTotal {
    MeterTotal {
        meter,
        model: model.into(),
        units,
    }
}

/// One plan for all of April.
pub fn input(plan: &str, usage: Vec<MeterTotal>) -> RatingInput {
    RatingInput {
        period: april(),
        segments: vec![Segment {
            plan: plan.into(),
            from_ms: day(0),
            usage,
            transactions: Vec::new(),
        }],
        as_of_ms: day(30),
        adjustments: Vec::new(),
    }
}

/// Tiers from `(up_to, unit_price, flat_fee)`.
pub fn tiers(spec: &[(Option<u64>, &str, &str)]) -> Vec<Tier> {
    spec.iter()
        .map(|&(up_to, price, fee)| Tier {
            up_to: up_to.map(Decimal::from),
            unit_price: d(price),
            flat_fee: d(fee),
        })
        .collect()
}

/// Lines, subtotal, tax and credits add up to the total, to the minor unit.
pub fn assert_reconciles(inv: &Invoice) {
    let net: Decimal = inv.lines.iter().map(|l| l.net).sum();
    let tax: Decimal = inv.lines.iter().map(|l| l.tax).sum();
    assert_eq!(net, inv.subtotal, "lines' net = subtotal");
    assert_eq!(tax, inv.tax, "lines' tax = tax");
    assert_eq!(inv.subtotal + inv.tax - inv.credits_applied, inv.total);
    let dp = minor_units(&inv.currency).unwrap();
    for l in &inv.lines {
        assert_eq!(
            l.net + l.tax,
            if l.amount == l.net {
                l.amount + l.tax
            } else {
                l.amount
            }
        );
        for v in [l.amount, l.net, l.tax] {
            assert_eq!(v, v.round_dp(dp), "{v} has at most {dp} decimals");
        }
    }
}
