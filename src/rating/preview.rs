//! Rating the same usage under the current and a draft price book, side by side, so a
//! price change can be checked before it ships. Pure: nothing is stored or changed.

use super::account::Account;
use super::input::RatingInput;
use super::invoice::{rate, Invoice};
use super::plan::PriceBook;
use super::RatingError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Draft minus current, per invoice total. Positive means the draft charges more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub subtotal: Decimal,
    pub tax: Decimal,
    pub credits_applied: Decimal,
    pub total: Decimal,
}

/// Both invoices and their difference; `difference` is `None` when the two invoices are
/// in different currencies, where a difference would mean nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub current: Invoice,
    pub draft: Invoice,
    pub difference: Option<Difference>,
}

/// Rates `input` under `current` and under `draft`. An error under the draft book says
/// so in its document name (`input (draft price book)`).
pub fn preview(
    current: &PriceBook,
    draft: &PriceBook,
    account: &Account,
    input: &RatingInput,
) -> Result<Preview, RatingError> {
    let now = rate(current, account, input)?;
    let next = rate(draft, account, input).map_err(|e| {
        let document = format!("{} (draft price book)", e.document);
        e.in_document(&document)
    })?;
    let difference = (now.currency == next.currency).then(|| Difference {
        subtotal: next.subtotal - now.subtotal,
        tax: next.tax - now.tax,
        credits_applied: next.credits_applied - now.credits_applied,
        total: next.total - now.total,
    });
    Ok(Preview {
        current: now,
        draft: next,
        difference,
    })
}
