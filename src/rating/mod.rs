//! The rating engine: prices a customer's aggregated usage under a price book and
//! returns a draft invoice. Pure: no Workers runtime import, no I/O, no clock (instants are
//! parameters), so it is tested natively and gives the same invoice for the same input.
//!
//! Flow: [`PriceBook::parse`] and [`Account::parse`] validate the JSON (errors carry a
//! JSON path); [`rate`] turns a [`RatingInput`] into an [`Invoice`]; [`preview`] rates
//! the same input under a draft book too; [`remaining_balance`] and [`usage_blocked`]
//! tell the edge whether a prepaid customer may go on.
//!
//! # Pricing rules (PRICING.md, which the tests follow rule by rule)
//!
//! 1. **Tier bounds.** A tier covers `(previous up_to, up_to]`: the upper bound is
//!    inclusive, and fractional usage above a bound (100.5 over `up_to: 100`) is in the
//!    next tier. The last tier has `up_to: null`. Overlapping tiers (a bound not above
//!    the previous one) and gaps (a closed last tier) are rejected. Bounds are exact
//!    decimals ([`bound`], rule 14), so a 0.1-unit tier can be written.
//! 2. **Flat fee per tier.** Charged whole as soon as any unit enters the tier; at
//!    exactly a bound the next tier's fee is not charged. So a volume total can fall
//!    as usage crosses a bound, and that is correct.
//! 3. **Zero usage.** `zero_usage_flat_fee: "charge" | "waive"` (default `"charge"`, as
//!    Stripe, and Lago since 2026) decides whether a first-tier flat fee is charged
//!    when a charge's billable usage (after included units) is zero.
//! 4. **Package.** Free units come off first, then the rest is rounded up to whole
//!    packages: (121 − 10) units at 10 per package is 12 packages. If the free units
//!    cover all usage the charge is 0.
//! 5. **Percentage.** Per transaction, `rate × value + fixed_fee`, then the
//!    per-transaction minimum and maximum. A transaction that is entirely free (among
//!    `free_transactions`, or covered by `free_amount`) costs 0 and the minimum does not
//!    apply to it. With both, the allowance ends when either runs out.
//! 6. **Rounding.** Amounts stay exact `Decimal`s through the calculation; each invoice
//!    line is rounded once to the currency's ISO 4217 minor units (USD, EUR 2; JPY 0;
//!    KWD, BHD 3). `rounding: "half_even"` (the default: ties to the even digit) or
//!    `"half_up"`, which means **ties round away from zero** (rust_decimal's
//!    `MidpointAwayFromZero`: 0.125 → 0.13 and −0.125 → −0.13). **Stripe and Lago use
//!    half-up; edgemeter defaults to half-even**, so an invoice compared with theirs can
//!    differ by one minor unit on a tie unless the book says `half_up`.
//! 7. **Tax.** Rates per customer country, and per region where the table lists it.
//!    Exclusive: tax = round(net × rate). Inclusive: tax = round(gross × rate / (1 +
//!    rate)) and net = gross − tax (1000 at 10% is 909.09 + 90.91). Tax is rounded per
//!    line and the invoice tax is the sum of the lines'. Reverse charge (the country
//!    allows it, the customer is a business with a tax id) gives tax 0 and a note.
//! 8. **Prepaid credits.** Drawn promotional before paid, then by priority ascending,
//!    then earliest expiry (a grant that never expires after all that do), then
//!    creation order. A grant is usable from `effective_at_ms` and unusable from
//!    `expires_at_ms` or `voided_at_ms` on. Credits apply after tax,
//!    as a payment toward the total; a grant pays at most its value floored to minor
//!    units, so no balance goes negative.
//! 9. **Minimum commitment.** If base fee plus usage of a plan segment, before tax and
//!    credits, is below the plan's `minimum_commitment`, a "Minimum commitment true-up"
//!    line makes up the difference; a charge's `minimum` does the same for one charge
//!    (and counts as usage for the plan's minimum). Both are prorated by days.
//! 10. **Proration.** Day-based: amount × days used / days in the period, counted in
//!     UTC days, the change day counting for the new plan. Base fees and minimums are
//!     prorated; included units and tiers are not. Each prorated line is rounded once.
//!
//! # Usage mapping
//! Usage arrives per plan segment × meter × model as integer [`MeterTotal`]s; see
//! [`BillableMeter`] for how a response's tokens, images and durations (counted in
//! milliseconds, priced per second) map to meters, and [`meter_totals`] for the
//! conversion from [`crate::usage::Usage`]. Final invoices, late usage and corrections
//! (rules 15 to 17) are `crate::finality`'s; the engine only adds the [`Adjustment`]
//! lines it is given.
//!
//! # Bounds
//! Prices and fees are at most [`MAX_PRICE`], FX rates at most [`MAX_FX`], a segment's
//! units per meter below 2^53 and its transaction values at most 1e15 in total, and a
//! period has at most [`MAX_SEGMENTS`] segments. Inside those bounds no amount can leave
//! `Decimal`'s range, so rating returns an error for bad input and never panics.

mod account;
mod balances;
pub mod bound;
mod charges;
mod credits;
mod input;
mod invoice;
mod line;
mod lines;
mod money;
mod plan;
mod preview;
mod spend;
mod tax;
mod validate;

#[cfg(test)]
mod tests;

pub use account::{Account, CreditGrant, GrantCategory};
pub use balances::{grant_balances, net_of_draws, GrantBalance, GrantStatus};
pub use charges::{graduated, package, per_unit, percentage, volume, PercentageOutcome, TierPart};
pub use credits::{apply_credits, draw_order, remaining_balance, usage_blocked, CreditApplication};
pub use input::{
    meter_totals, segment_days, usage_totals, utc_day, Adjustment, BillableMeter, MeterTotal,
    RatingInput, Segment, Transaction, DAY_MS,
};
pub use invoice::{rate, Invoice, InvoiceStatus, Line, LineKind, Proration};
pub use money::{floor_minor, minor_units, FxTable, Rounding};
pub use plan::{
    BookPlan, Charge, ChargeModel, PackageTerms, PerUnit, PercentageTerms, PriceBook, RegionRule,
    TaxMode, TaxRule, TaxTable, Tier, Tiered, ZeroUsageFlatFee,
};
pub use preview::{preview, Difference, Preview};
pub use spend::usage_amount;
pub use tax::{TaxSplit, TaxTreatment, REVERSE_CHARGE_NOTE};
pub use validate::{MAX_FX, MAX_PRICE, MAX_SEGMENTS};

/// A rating problem: which document (`price_book`, `account`, `input`), the JSON path
/// of the offending value in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatingError {
    pub document: String,
    pub path: String,
    pub message: String,
}

impl RatingError {
    /// An error in the price book; [`RatingError::in_document`] re-targets it.
    pub fn new(path: String, message: impl Into<String>) -> RatingError {
        RatingError {
            document: "price_book".into(),
            path,
            message: message.into(),
        }
    }

    /// The same error, attributed to another document.
    pub fn in_document(mut self, document: &str) -> RatingError {
        self.document = document.to_string();
        self
    }
}

impl std::fmt::Display for RatingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.document, self.path, self.message)
    }
}

impl std::error::Error for RatingError {}
