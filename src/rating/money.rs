//! Currencies, the one rounding step, and the dated FX table. Amounts stay exact
//! `Decimal`s until [`Rounding::round`] turns a line into ISO 4217 minor units.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a tie (exactly half a minor unit) is rounded. A price book setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Ties go to the even neighbour (banker's rounding): 0.125 -> 0.12, 0.135 -> 0.14.
    /// The default, because it does not drift upward over many lines.
    #[default]
    HalfEven,
    /// Ties go away from zero (rust_decimal's `MidpointAwayFromZero`): 0.125 -> 0.13 and
    /// -0.125 -> -0.13. What Stripe and Lago do.
    HalfUp,
}

impl Rounding {
    /// `amount` rounded to the minor units of `currency` (2 for USD, 0 for JPY, 3 for
    /// KWD). Unknown currencies are rejected at validation, so this falls back to 2.
    pub fn round(self, amount: Decimal, currency: &str) -> Decimal {
        let dp = minor_units(currency).unwrap_or(2);
        let strategy = match self {
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
        };
        let mut rounded = amount.round_dp_with_strategy(dp, strategy);
        // Keep the scale fixed (`5` -> `5.00`) so serialized amounts read as money.
        rounded.rescale(dp);
        rounded
    }
}

/// ISO 4217 minor units of a supported currency (the catalog's list), `None` otherwise.
pub fn minor_units(currency: &str) -> Option<u32> {
    crate::catalog::minor_units(currency)
}

/// `amount` truncated toward zero to whole minor units: the most of a balance that can
/// be spent without overdrawing it.
pub fn floor_minor(amount: Decimal, currency: &str) -> Decimal {
    let dp = minor_units(currency).unwrap_or(2);
    let mut floored = amount.round_dp_with_strategy(dp, RoundingStrategy::ToZero);
    floored.rescale(dp);
    floored
}

/// Explicit exchange rates, valid as of one date. `rates[from][to]` is how many `to`
/// one `from` buys. Inverse rates are never derived: every pair used must be listed,
/// so a converted invoice always cites a rate someone wrote down.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxTable {
    /// The date the rates were taken (`YYYY-MM-DD`), recorded on every converted invoice.
    pub as_of: String,
    pub rates: BTreeMap<String, BTreeMap<String, Decimal>>,
}

impl FxTable {
    /// The rate from `from` to `to`: 1 for the same currency, `None` when not listed.
    pub fn rate(&self, from: &str, to: &str) -> Option<Decimal> {
        if from == to {
            return Some(Decimal::ONE);
        }
        self.rates.get(from)?.get(to).copied()
    }
}

/// Whether `text` looks like a calendar date `YYYY-MM-DD` (month 1-12, day 1-31).
pub(crate) fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return false;
    }
    if !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Whether a decimal is below zero (a `-0` is not).
pub(crate) fn negative(value: Decimal) -> bool {
    value.is_sign_negative() && !value.is_zero()
}
