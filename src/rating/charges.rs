//! The charge models as pure arithmetic on exact decimals. Nothing here rounds: an
//! invoice line is rounded once, after these amounts are summed and converted.
//!
//! Quantities are `Decimal` so PRICING.md rule 1's fractional case is expressible:
//! a tier covers `(previous up_to, up_to]`, so 100.5 units lie above a bound of 100.

use super::plan::{PercentageTerms, Tier, ZeroUsageFlatFee};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One tier's share of a tiered charge, in the price book currency, for the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPart {
    #[serde(with = "super::bound::option")]
    pub up_to: Option<Decimal>,
    pub units: Decimal,
    pub unit_price: Decimal,
    pub flat_fee: Decimal,
    pub amount: Decimal,
}

/// `quantity × unit_price / per`.
pub fn per_unit(quantity: Decimal, unit_price: Decimal, per: u64) -> Decimal {
    quantity * unit_price / Decimal::from(per)
}

/// The lower bound (exclusive) of tier `i`.
fn lower_bound(tiers: &[Tier], i: usize) -> Decimal {
    match i {
        0 => Decimal::ZERO,
        _ => tiers[i - 1].up_to.unwrap_or(Decimal::MAX),
    }
}

/// The first tier's part at zero usage: only its flat fee, and only when charged.
fn zero_usage(tiers: &[Tier], zero: ZeroUsageFlatFee) -> Vec<TierPart> {
    let first = &tiers[0];
    let fee = match zero {
        ZeroUsageFlatFee::Charge => first.flat_fee,
        ZeroUsageFlatFee::Waive => Decimal::ZERO,
    };
    vec![TierPart {
        up_to: first.up_to,
        units: Decimal::ZERO,
        unit_price: first.unit_price,
        flat_fee: fee,
        amount: fee,
    }]
}

/// Graduated: each tier's units at its price, plus the whole flat fee of every tier
/// that any unit entered. At exactly a bound the next tier is not entered.
pub fn graduated(
    quantity: Decimal,
    tiers: &[Tier],
    per: u64,
    zero: ZeroUsageFlatFee,
) -> Vec<TierPart> {
    if quantity <= Decimal::ZERO {
        return zero_usage(tiers, zero);
    }
    let mut parts = Vec::new();
    for (i, tier) in tiers.iter().enumerate() {
        let lower = lower_bound(tiers, i);
        if quantity <= lower {
            break;
        }
        let upper = tier.up_to.map_or(quantity, |u| quantity.min(u));
        let units = upper - lower;
        let amount = per_unit(units, tier.unit_price, per) + tier.flat_fee;
        parts.push(TierPart {
            up_to: tier.up_to,
            units,
            unit_price: tier.unit_price,
            flat_fee: tier.flat_fee,
            amount,
        });
    }
    parts
}

/// Volume: every unit at the price of the one tier the total lands in, plus that
/// tier's flat fee. The total can fall as usage crosses a bound, by design.
pub fn volume(quantity: Decimal, tiers: &[Tier], per: u64, zero: ZeroUsageFlatFee) -> TierPart {
    if quantity <= Decimal::ZERO {
        return zero_usage(tiers, zero).remove(0);
    }
    // The first tier whose (inclusive) bound reaches the total; validation guarantees an
    // open last tier, so there always is one.
    let i = tiers
        .iter()
        .position(|t| t.up_to.is_none_or(|u| quantity <= u))
        .unwrap_or(tiers.len() - 1);
    let tier = &tiers[i];
    TierPart {
        up_to: tier.up_to,
        units: quantity,
        unit_price: tier.unit_price,
        flat_fee: tier.flat_fee,
        amount: per_unit(quantity, tier.unit_price, per) + tier.flat_fee,
    }
}

/// Package: free units come off first, the rest is rounded up to whole packages.
/// Returns (packages, amount); both are 0 when the free units cover all usage.
pub fn package(
    quantity: Decimal,
    size: Decimal,
    price: Decimal,
    free: Decimal,
) -> (Decimal, Decimal) {
    let billable = quantity - free;
    if billable <= Decimal::ZERO {
        return (Decimal::ZERO, Decimal::ZERO);
    }
    let packages = (billable / size).ceil();
    (packages, packages * price)
}

/// What a percentage charge came to over a period's transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PercentageOutcome {
    pub transactions: u64,
    /// Transactions that were entirely free (cost 0, no minimum).
    pub free_transactions: u64,
    /// Value the rate applied to, after the free amount.
    pub chargeable_value: Decimal,
    pub amount: Decimal,
}

/// Percentage: per transaction, in order, `rate × chargeable value + fixed_fee`
/// clamped to the per-transaction minimum and maximum. The allowance is the first
/// `free_transactions`, or the first `free_amount` of value; with both, it is the value
/// of the first `free_transactions`, up to `free_amount`, and ends when either runs
/// out (PRICING.md rule 5). A transaction it covers entirely costs 0 and the minimum
/// does not apply to it.
pub fn percentage(values: &[Decimal], terms: &PercentageTerms) -> PercentageOutcome {
    let mut out = PercentageOutcome::default();
    let mut free_left = terms.free_amount;
    let both = terms.free_transactions > 0 && terms.free_amount > Decimal::ZERO;
    for (i, &value) in values.iter().enumerate() {
        out.transactions += 1;
        let counted = (i as u64) < terms.free_transactions;
        if counted && !both {
            out.free_transactions += 1;
            continue;
        }
        // With both, only the counted transactions draw on the free amount.
        let covered = if both && !counted {
            Decimal::ZERO
        } else {
            free_left
        };
        let free = value.min(covered).max(Decimal::ZERO);
        free_left -= free;
        let chargeable = value - free;
        // Covered entirely: by the free amount, or (with both) counted with nothing to
        // cover, like a zero-value transaction among the free ones.
        let within = free > Decimal::ZERO || (both && counted && free_left > Decimal::ZERO);
        if within && chargeable <= Decimal::ZERO {
            out.free_transactions += 1;
            continue;
        }
        let mut fee = terms.rate * chargeable + terms.fixed_fee;
        if let Some(min) = terms.min_per_transaction {
            fee = fee.max(min);
        }
        if let Some(max) = terms.max_per_transaction {
            fee = fee.min(max);
        }
        out.chargeable_value += chargeable;
        out.amount += fee;
    }
    out
}
