//! An invoice line: what it charges for, its quantities, prices and amounts. A leaf
//! of the rating engine: charges build lines, invoices hold them.

use super::input::{Adjustment, BillableMeter};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What a line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    BaseFee,
    Usage,
    /// Tops a charge or the whole plan up to its minimum commitment.
    MinimumTrueUp,
    /// Corrects an earlier period's final invoice (late usage, say).
    Adjustment,
}

/// Days used out of the days of the period, for a prorated line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proration {
    pub days: i64,
    pub period_days: i64,
}

/// One invoice line. Quantities and unit prices are in units and in the price book's
/// currency; `exact_amount`, `amount`, `net` and `tax` are in the invoice currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub kind: LineKind,
    pub plan: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<BillableMeter>,
    /// The charge's model; `None` for a charge covering every other model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Units used (or transactions, for a percentage charge).
    pub quantity: Decimal,
    #[serde(with = "super::bound")]
    pub included_units: Decimal,
    /// Units the allowance covered.
    pub included_used: Decimal,
    /// Units priced after the allowance.
    pub overage: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<super::charges::TierPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proration: Option<Proration>,
    /// The line before its one rounding.
    pub exact_amount: Decimal,
    /// The line, rounded once to minor units, as priced (gross if prices include tax).
    pub amount: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Line {
    /// A line of `kind` with its amounts and nothing else filled in.
    pub(super) fn bare(
        kind: LineKind,
        plan: &str,
        description: String,
        exact: Decimal,
        amount: Decimal,
    ) -> Line {
        Line {
            kind,
            plan: plan.to_string(),
            description,
            meter: None,
            model: None,
            quantity: Decimal::ZERO,
            included_units: Decimal::ZERO,
            included_used: Decimal::ZERO,
            overage: Decimal::ZERO,
            unit_price: None,
            price_per: None,
            tiers: Vec::new(),
            proration: None,
            exact_amount: exact,
            amount,
            net: amount,
            tax: Decimal::ZERO,
            note: None,
        }
    }

    /// The line an [`Adjustment`] becomes: its net and tax as given, the corrected
    /// period in its note.
    pub(super) fn adjustment(a: &Adjustment) -> Line {
        let mut line = Line::bare(LineKind::Adjustment, "", a.reason.clone(), a.net, a.net);
        line.quantity = Decimal::ONE;
        line.tax = a.tax;
        line.note = Some(format!(
            "corrects the period {} to {}",
            crate::period::iso8601(a.period.start_ms),
            crate::period::iso8601(a.period.end_ms)
        ));
        line
    }
}
