//! The draft invoice and [`rate`], which builds it: one line per base fee, charge and
//! minimum true-up, each rounded once, then tax per line, then credits as payment.

use super::account::Account;
use super::credits::{apply_credits, remaining_balance, CreditApplication};
use super::input::{segment_days, RatingInput};
pub use super::line::{Line, LineKind, Proration};
use super::lines::{segment_lines, LineDraft};
use super::money::{FxTable, Rounding};
use super::plan::PriceBook;
use super::tax::TaxTreatment;
use super::RatingError;
use crate::period::Period;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Whether an invoice may still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Final,
}

/// A rated period. `subtotal + tax − credits_applied = total`, to the minor unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub customer_id: String,
    pub price_book_version: String,
    pub status: InvoiceStatus,
    pub period: Period,
    pub currency: String,
    /// The currency prices are written in, and the rate applied to reach `currency`.
    pub price_currency: String,
    pub fx_rate: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fx_as_of: Option<String>,
    pub rounding: Rounding,
    pub lines: Vec<Line>,
    /// Sum of the lines' net amounts.
    pub subtotal: Decimal,
    /// Sum of the lines' tax.
    pub tax: Decimal,
    pub credits_applied: Decimal,
    pub credits: Vec<CreditApplication>,
    /// What is left to pay.
    pub total: Decimal,
    /// Usable credit left after this invoice, in `currency`.
    pub credit_balance: Decimal,
    /// False for a test-mode customer's invoice, which never mixes with live ones.
    #[serde(default = "live")]
    pub livemode: bool,
    /// The sequential number a final invoice gets; a draft has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
}

fn live() -> bool {
    true
}

impl Invoice {
    /// The same invoice marked final; rating only ever produces drafts.
    pub fn finalize(mut self) -> Invoice {
        self.status = InvoiceStatus::Final;
        self
    }
}

/// Rates `input` for `account` under `book` into a draft invoice. Pure: same inputs,
/// same invoice. Fails, naming the JSON path, when the account does not fit the book or
/// the input is inconsistent (unknown plan, usage no charge prices, bad segments).
pub fn rate(
    book: &PriceBook,
    account: &Account,
    input: &RatingInput,
) -> Result<Invoice, RatingError> {
    account.check(book).map_err(|e| e.in_document("account"))?;
    let input = &super::lines::fold_unpriced(book, input);
    super::lines::check_input(book, input).map_err(|e| e.in_document("input"))?;
    let currency = account.currency(book).to_string();
    let fx = book.fx_rate(&currency).ok_or_else(|| {
        RatingError::new("$.invoice_currency".into(), "no FX rate").in_document("account")
    })?;
    let tax = TaxTreatment::resolve(&book.tax, account).ok_or_else(|| {
        RatingError::new("$.country".into(), "not in the tax table").in_document("account")
    })?;
    let days = segment_days(&input.period, &input.segments);
    let period_days = super::input::period_days(&input.period);
    let mut drafts: Vec<LineDraft> = Vec::new();
    for (i, segment) in input.segments.iter().enumerate() {
        let proration = Proration {
            days: days[i],
            period_days,
        };
        drafts.extend(segment_lines(book, segment, proration, fx, &currency));
    }
    let lines: Vec<Line> = drafts
        .into_iter()
        .map(|d| d.finish(&tax, book.rounding, &currency))
        .chain(input.adjustments.iter().map(Line::adjustment))
        .collect();
    let zero = book.rounding.round(Decimal::ZERO, &currency);
    let subtotal = lines.iter().fold(zero, |s, l| s + l.net);
    let tax_total = lines.iter().fold(zero, |s, l| s + l.tax);
    let credits = apply_credits(
        book,
        account,
        &currency,
        subtotal + tax_total,
        input.as_of_ms,
    );
    let credits_applied = credits.iter().fold(zero, |s, c| s + c.applied);
    let mut after = account.clone();
    for c in &credits {
        if let Some(g) = after.grants.iter_mut().find(|g| g.id == c.grant_id) {
            g.amount = c.remaining;
        }
    }
    Ok(Invoice {
        customer_id: account.customer_id.clone(),
        price_book_version: book.version.clone(),
        status: InvoiceStatus::Draft,
        period: input.period,
        price_currency: book.currency.clone(),
        fx_rate: fx,
        fx_as_of: (currency != book.currency)
            .then(|| book.fx.as_ref().map(|f: &FxTable| f.as_of.clone()))
            .flatten(),
        rounding: book.rounding,
        lines,
        subtotal,
        tax: tax_total,
        credits_applied,
        credits,
        total: subtotal + tax_total - credits_applied,
        credit_balance: remaining_balance(book, &after, input.as_of_ms),
        currency,
        livemode: true,
        number: None,
    })
}
