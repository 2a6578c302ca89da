//! The price book: plans, their charges, tax rates and FX rates. Parsed strictly like the
//! catalog: unknown fields are rejected, and every semantic problem (a tier gap, a
//! negative price, an unknown currency) names its JSON path. See `validate.rs`.

use super::input::BillableMeter;
use super::money::{FxTable, Rounding};
use super::RatingError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A complete, validated set of prices. Rate usage against it with [`super::rate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceBook {
    /// Free-form label, recorded on every invoice so a price change is traceable.
    pub version: String,
    /// ISO 4217 currency every price in the book is written in.
    pub currency: String,
    /// Rounding of each invoice line to minor units; default `half_even`.
    #[serde(default)]
    pub rounding: Rounding,
    /// Whether a first-tier flat fee is charged when a charge's billable usage is zero;
    /// default `charge`.
    #[serde(default)]
    pub zero_usage_flat_fee: ZeroUsageFlatFee,
    /// Rates for invoicing or granting credits in another currency than `currency`.
    #[serde(default)]
    pub fx: Option<FxTable>,
    pub tax: TaxTable,
    pub plans: BTreeMap<String, BookPlan>,
}

/// PRICING.md rule 3: what a first-tier flat fee does when no unit was used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroUsageFlatFee {
    /// Charge it anyway (Stripe's rule, and Lago's since 2026).
    #[default]
    Charge,
    /// Charge nothing when nothing was used.
    Waive,
}

/// A plan: a recurring base fee, usage charges (each with optional included units, so
/// a plan is hybrid by adding a base fee and allowances), and an optional commitment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookPlan {
    /// Flat recurring fee per full period, prorated by days for a partial one.
    #[serde(default)]
    pub base_fee: Decimal,
    /// Invoice-level minimum for base fee plus usage, before tax and credits; prorated.
    #[serde(default)]
    pub minimum_commitment: Option<Decimal>,
    /// Whether the edge should block usage once the customer's credits are exhausted
    /// (prepaid plans); see [`super::usage_blocked`].
    #[serde(default)]
    pub block_when_credits_exhausted: bool,
    #[serde(default)]
    pub charges: Vec<Charge>,
}

/// How one meter is priced, for one model or (without `model`) for every model that has
/// no charge of its own on this meter. Usage of all the models a charge covers is added
/// up before tiers apply, so tiers see the meter's total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    pub meter: BillableMeter,
    #[serde(default)]
    pub model: Option<String>,
    /// Units included in the plan, subtracted before any pricing (the hybrid allowance).
    /// Not prorated. A decimal ([`super::bound`]).
    #[serde(default, with = "super::bound")]
    pub included_units: Decimal,
    /// Prices are quoted per this many units (1_000_000 for per-million-token prices).
    /// Tier bounds stay in units. Only for `per_unit`, `graduated` and `volume`.
    #[serde(default)]
    pub price_per: Option<u64>,
    /// Per-charge minimum per full period, prorated by days like the plan's.
    #[serde(default)]
    pub minimum: Option<Decimal>,
    pub pricing: ChargeModel,
}

/// The charge models, tagged by `kind`: `per_unit`, `graduated`, `volume`, `package`,
/// `percentage`. Each variant's fields sit beside `kind` in the same object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChargeModel {
    /// Every unit at one price.
    PerUnit(PerUnit),
    /// Each tier's units at that tier's price, plus each entered tier's flat fee.
    Graduated(Tiered),
    /// All units at the price of the tier the total lands in, plus that tier's flat fee.
    Volume(Tiered),
    /// `package_price` per started block of `package_size` units, after `free_units`.
    Package(PackageTerms),
    /// Per transaction: see [`PercentageTerms`].
    Percentage(PercentageTerms),
}

/// Per-unit pricing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerUnit {
    pub unit_price: Decimal,
}

/// Graduated or volume tiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiered {
    pub tiers: Vec<Tier>,
}

/// Package pricing: free units first, then whole packages rounded up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageTerms {
    #[serde(with = "super::bound")]
    pub package_size: Decimal,
    pub package_price: Decimal,
    #[serde(default, with = "super::bound")]
    pub free_units: Decimal,
}

/// A percentage charge, per transaction: `rate × value + fixed_fee`, clamped to
/// `[min_per_transaction, max_per_transaction]`. The first `free_transactions`
/// transactions, or the first `free_amount` of value, are free; with both, the
/// allowance ends when either runs out. A transaction that is entirely free costs 0
/// and the minimum does not apply to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentageTerms {
    /// A fraction of the value: `0.2` is 20%.
    pub rate: Decimal,
    #[serde(default)]
    pub fixed_fee: Decimal,
    #[serde(default)]
    pub min_per_transaction: Option<Decimal>,
    #[serde(default)]
    pub max_per_transaction: Option<Decimal>,
    #[serde(default)]
    pub free_transactions: u64,
    #[serde(default)]
    pub free_amount: Decimal,
}

/// A tier covering `(previous up_to, up_to]`; the last tier has `up_to: null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    #[serde(with = "super::bound::option")]
    pub up_to: Option<Decimal>,
    pub unit_price: Decimal,
    /// Charged whole as soon as any unit enters the tier.
    #[serde(default)]
    pub flat_fee: Decimal,
}

/// Tax rates by customer country (ISO 3166-1 alpha-2), with optional regional rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxTable {
    pub countries: BTreeMap<String, TaxRule>,
}

/// The tax of one country.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRule {
    /// A fraction: `0.19` is 19%.
    pub rate: Decimal,
    #[serde(default)]
    pub mode: TaxMode,
    /// Business customers with a tax id pay no tax here; their lines carry a note.
    #[serde(default)]
    pub reverse_charge: bool,
    /// Rates that replace `rate` for customers in a region (state, province).
    #[serde(default)]
    pub regions: BTreeMap<String, RegionRule>,
}

/// A regional rate; mode and reverse charge are the country's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionRule {
    pub rate: Decimal,
}

/// Whether prices are before tax (`exclusive`, the default) or include it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxMode {
    #[default]
    Exclusive,
    Inclusive,
}

impl PriceBook {
    /// Parses and validates a price book; the error names the JSON path of the first
    /// problem.
    pub fn parse(json: &str) -> Result<PriceBook, RatingError> {
        let book: PriceBook = serde_json::from_str(json).map_err(|e| {
            let path = crate::json_path::path_at(json, e.line(), e.column());
            match refine_tagged(json, &path) {
                Some((path, message)) => RatingError::new(path, message),
                None => RatingError::new(path, e.to_string()),
            }
        })?;
        book.validate()?;
        Ok(book)
    }

    /// The rate converting book prices into `currency`, if there is one.
    pub fn fx_rate(&self, currency: &str) -> Option<Decimal> {
        if currency == self.currency {
            return Some(Decimal::ONE);
        }
        self.fx.as_ref()?.rate(&self.currency, currency)
    }
}

impl Charge {
    /// The units prices are quoted per (1 when not set).
    pub fn per(&self) -> u64 {
        self.price_per.unwrap_or(1)
    }

    /// A short description: the meter, and the model when the charge has one.
    pub fn label(&self) -> String {
        match &self.model {
            Some(m) => format!("{} ({m})", self.meter.name()),
            None => self.meter.name().to_string(),
        }
    }
}

/// serde reads a `kind`-tagged object whole before it picks the variant, so an error
/// inside `pricing` is reported at the object, not at the field. This re-reads that one
/// object (without its tag) as the variant's own type, where positions are exact, and
/// returns the full path and the message. `None` when `path` is not such an object.
fn refine_tagged(json: &str, path: &str) -> Option<(String, String)> {
    let root: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut value = &root;
    for step in path.strip_prefix('$')?.split('.').filter(|s| !s.is_empty()) {
        let mut parts = step.split('[');
        let key = parts.next()?;
        if !key.is_empty() {
            value = value.get(key)?;
        }
        for index in parts {
            value = value.get(index.strip_suffix(']')?.parse::<usize>().ok()?)?;
        }
    }
    let mut object = value.as_object()?.clone();
    let kind = object.remove("kind")?;
    let text = serde_json::to_string_pretty(&object).ok()?;
    let e = match kind.as_str()? {
        "per_unit" => serde_json::from_str::<PerUnit>(&text).err(),
        "graduated" | "volume" => serde_json::from_str::<Tiered>(&text).err(),
        "package" => serde_json::from_str::<PackageTerms>(&text).err(),
        "percentage" => serde_json::from_str::<PercentageTerms>(&text).err(),
        _ => None,
    }?;
    let inner = crate::json_path::path_at(&text, e.line(), e.column());
    let message = e.to_string();
    // The line and column refer to the re-serialized object: drop them.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    Some((format!("{path}{}", &inner[1..]), message.to_string()))
}
