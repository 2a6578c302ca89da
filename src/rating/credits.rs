//! Prepaid credits: drawing grants down against an invoice total (after tax, as a
//! payment) and the remaining balance the edge checks before admitting usage.

use super::account::{Account, CreditGrant};
use super::money::floor_minor;
use super::plan::{BookPlan, PriceBook};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// What one grant paid toward an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditApplication {
    pub grant_id: String,
    /// Paid, in the invoice currency, in whole minor units.
    pub applied: Decimal,
    /// Taken from the grant, in the grant's own units.
    pub drawn: Decimal,
    /// Left on the grant afterwards, in its own units; never negative.
    pub remaining: Decimal,
}

/// Indices of the grants usable at `at_ms`, in draw-down order: promotional before
/// paid, priority ascending, then earliest expiry (a grant that never expires after all
/// that do), then creation order.
pub fn draw_order(grants: &[CreditGrant], at_ms: i64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..grants.len())
        .filter(|&i| grants[i].usable_at(at_ms) && grants[i].amount > Decimal::ZERO)
        .collect();
    // A stable sort keeps creation order among equals.
    order.sort_by(|&a, &b| {
        let (a, b) = (&grants[a], &grants[b]);
        (a.category, a.priority)
            .cmp(&(b.category, b.priority))
            .then(match (a.expires_at_ms, b.expires_at_ms) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
    });
    order
}

/// Pays `due` (a total in whole minor units of `currency`) from the account's grants in
/// draw-down order. A grant can pay at most its value floored to minor units, so it is
/// never overdrawn; the applied amounts sum to at most `due`.
pub fn apply_credits(
    book: &PriceBook,
    account: &Account,
    currency: &str,
    due: Decimal,
    at_ms: i64,
) -> Vec<CreditApplication> {
    let mut left = due.max(Decimal::ZERO);
    let mut applied = Vec::new();
    for i in draw_order(&account.grants, at_ms) {
        if left <= Decimal::ZERO {
            break;
        }
        let grant = &account.grants[i];
        let Some(unit) = grant.unit_value(book, currency) else {
            continue;
        };
        let pay = floor_minor(grant.amount * unit, currency).min(left);
        if pay <= Decimal::ZERO {
            continue;
        }
        let drawn = (pay / unit).min(grant.amount);
        left -= pay;
        applied.push(CreditApplication {
            grant_id: grant.id.clone(),
            applied: pay,
            drawn,
            remaining: (grant.amount - drawn).max(Decimal::ZERO),
        });
    }
    applied
}

/// The balance usable at `at_ms`, in the account's invoice currency, each grant floored
/// to minor units (what it could actually pay). The edge compares it with zero to block
/// usage on plans with `block_when_credits_exhausted`.
pub fn remaining_balance(book: &PriceBook, account: &Account, at_ms: i64) -> Decimal {
    let currency = account.currency(book);
    let zero = floor_minor(Decimal::ZERO, currency);
    draw_order(&account.grants, at_ms)
        .into_iter()
        .filter_map(|i| {
            let g = &account.grants[i];
            Some(floor_minor(
                g.amount * g.unit_value(book, currency)?,
                currency,
            ))
        })
        .fold(zero, |sum, v| sum + v)
}

/// Whether the edge must refuse usage: the plan blocks on exhausted credits and the
/// remaining balance is zero.
pub fn usage_blocked(plan: &BookPlan, remaining: Decimal) -> bool {
    plan.block_when_credits_exhausted && remaining <= Decimal::ZERO
}
