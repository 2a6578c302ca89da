//! A Ledger's invoices, over its [`Books`]: a period is rated when its invoice is read
//! and the invoice kept, so reading it again is a single row. New usage forgets the
//! kept invoices from its period on (ingestion stays a few writes a batch, however many
//! customers it holds). A kept invoice serves while the price book has the version it
//! was rated under and no credit grant has started or ended since. Credits are balances: a period draws on what the invoices of earlier
//! periods left, so keeping a period's invoice forgets those after it. A final invoice
//! never changes; what a final period owes later becomes a correction on the next open
//! one ([`adjustments_for`]).

use crate::error::ApiError;
use crate::finality::{correction, lands_on, Charges, Finality, Since};
use crate::period::{day_of_month, period_at, Period};
use crate::rating::RatingInput;
use crate::rating::{net_of_draws, rate, Account, Adjustment, Invoice, PriceBook, RatingError};
use crate::tally::Tally;
use std::rc::Rc;

/// A period's running total of one meter and model.
pub type MeterTotals = (String, String, Tally);

/// Everything rating one period takes.
pub struct Rating {
    pub book: Rc<PriceBook>,
    pub account: Account,
    pub plan: String,
    pub input: RatingInput,
}

/// An invoice kept from an earlier rating, with what it was rated under.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub book_version: String,
    /// When a credit grant next starts or ends: the invoice is stale from then.
    pub valid_until_ms: Option<i64>,
    pub invoice: Invoice,
}

/// What a Ledger's invoices are made of and where they are kept. Its errors are the
/// Ledger's answers already (a storage failure is a 500).
pub trait Books {
    fn book(&self) -> Result<Rc<PriceBook>, ApiError>;
    /// The billing account and the plan it names; `None` before one is set.
    fn account(&self, book: &PriceBook) -> Result<Option<(Account, String)>, ApiError>;
    /// False for a test-mode customer's books.
    fn livemode(&self) -> Result<bool, ApiError>;
    fn finality(&self) -> Finality;
    /// The plan the period's records carry (none for records older than plans).
    fn recorded_plan(&self, start: i64) -> Result<Option<String>, ApiError>;
    /// The period's totals per (meter, model), and its end when it has any.
    fn totals(&self, start: i64) -> Result<(Vec<MeterTotals>, Option<i64>), ApiError>;
    /// Starts of the periods with usage before `before`, in order.
    fn starts_before(&self, before: i64) -> Result<Vec<i64>, ApiError>;
    /// Starts of the periods with usage and no final invoice.
    fn unfinal_starts(&self) -> Result<Vec<i64>, ApiError>;
    /// The latest end of a period with usage.
    fn latest_end(&self) -> Result<Option<i64>, ApiError>;
    /// Starts of the final periods before `before`, in order.
    fn finals_before(&self, before: i64) -> Result<Vec<i64>, ApiError>;
    fn final_invoice(&self, start: i64) -> Result<Option<Invoice>, ApiError>;
    fn kept(&self, start: i64) -> Result<Option<Kept>, ApiError>;
    /// Keeps the period's invoice, and forgets the kept invoices after it.
    fn keep(&self, start: i64, kept: &Kept) -> Result<(), ApiError>;
    /// Records stored for a final period after it was final.
    fn late_records(&self, start: i64) -> Result<u64, ApiError>;
    /// How many of those a correction has billed.
    fn carried(&self, start: i64) -> Result<u64, ApiError>;
    /// What was billed for the period: its final invoice and its corrections.
    fn billed(&self, start: i64) -> Result<Charges, ApiError>;
    /// Something was skipped so that the rest could go on; says why (a log line).
    fn note(&self, message: &str);
}

/// A rating failure as the Ledger answers it.
pub fn rating_error(e: RatingError) -> ApiError {
    let msg = format!("{} {}: {}", e.document, e.path, e.message);
    ApiError::bad_request("rating_error", msg).with_param(e.path)
}

/// The period's own rating input: its totals under the plan its records carry (the
/// account's only for older records), the account as granted (no draws netted, no
/// corrections).
pub fn period_input<B: Books + ?Sized>(b: &B, start: i64, now_ms: i64) -> Result<Rating, ApiError> {
    let book = b.book()?;
    let no_account = || ApiError::not_found("This customer has no billing account.");
    let (account, account_plan) = b.account(&book)?.ok_or_else(no_account)?;
    let plan = b.recorded_plan(start)?.unwrap_or(account_plan);
    let (totals, end) = b.totals(start)?;
    let end = end.unwrap_or_else(|| period_at(start, day_of_month(start)).end_ms);
    let period = Period {
        start_ms: start,
        end_ms: end,
    };
    // Credits pay a period as of its own end, not as of whenever it is rated again: a
    // later top-up never pays an earlier period, nor does an expiry take back what it
    // paid.
    let input = super::rating_input(&plan, period, &totals, now_ms.min(end - 1));
    Ok(Rating {
        book,
        account,
        plan,
        input,
    })
}

/// What rating a period needs: its input, the account with what earlier periods left
/// of its credits, and the corrections of earlier final invoices that land on it.
pub fn context<B: Books + ?Sized>(b: &B, start: i64, now_ms: i64) -> Result<Rating, ApiError> {
    let mut c = period_input(b, start, now_ms)?;
    let earlier = earlier_invoices(b, start, now_ms)?;
    c.account = net_of_draws(&c.account, &earlier);
    c.input.adjustments = adjustments_for(b, start, now_ms)?;
    Ok(c)
}

/// Rates an open period and keeps its invoice (a draft until it is finalized).
fn rate_and_keep<B: Books + ?Sized>(b: &B, start: i64, now_ms: i64) -> Result<Invoice, ApiError> {
    if let Some(final_invoice) = b.final_invoice(start)? {
        return Ok(final_invoice); // a final invoice is never rated again
    }
    let c = context(b, start, now_ms)?;
    let mut invoice = rate(&c.book, &c.account, &c.input).map_err(rating_error)?;
    invoice.livemode = b.livemode()?;
    let kept = Kept {
        book_version: c.book.version.clone(),
        valid_until_ms: c.account.next_credit_change(now_ms),
        invoice,
    };
    b.keep(start, &kept)?;
    Ok(kept.invoice)
}

/// The period's invoice: final, or kept while it holds, or rated now and kept.
pub fn rated_invoice<B: Books + ?Sized>(
    b: &B,
    start: i64,
    now_ms: i64,
) -> Result<Invoice, ApiError> {
    if let Some(final_invoice) = b.final_invoice(start)? {
        return Ok(final_invoice);
    }
    let version = b.book()?.version.clone();
    let holds = |k: &Kept| k.book_version == version && k.valid_until_ms.is_none_or(|u| u > now_ms);
    match b.kept(start)?.filter(holds) {
        Some(kept) => Ok(kept.invoice),
        None => rate_and_keep(b, start, now_ms),
    }
}

/// A period made final: its invoice, numbered, and what it bills on which period (its
/// own charges on itself, each correction's on the period it corrects).
pub struct Final {
    pub invoice: Invoice,
    pub billed: Vec<(i64, Charges)>,
    /// The final periods whose late records its corrections carried.
    pub carried: Vec<i64>,
}

/// Rates the period at `start` once more, with its corrections, as final invoice
/// `number` under `prefix`.
pub fn finalize<B: Books + ?Sized>(
    b: &B,
    start: i64,
    number: &str,
    now_ms: i64,
) -> Result<Final, ApiError> {
    let c = context(b, start, now_ms)?;
    let mut invoice = rate(&c.book, &c.account, &c.input)
        .map_err(rating_error)?
        .finalize();
    invoice.livemode = b.livemode()?;
    invoice.number = Some(number.to_string());
    let mut billed = vec![(start, Charges::own(&invoice))];
    let mut carried = Vec::new();
    for a in &c.input.adjustments {
        let charges = Charges {
            net: a.net,
            tax: a.tax,
        };
        billed.push((a.period.start_ms, charges));
        carried.push(a.period.start_ms);
    }
    Ok(Final {
        invoice,
        billed,
        carried,
    })
}

/// The invoices of every earlier period with usage, in period order. A period that
/// cannot be rated (its plan left the book, say) draws nothing here rather than
/// blocking every later invoice; it is noted, and reading it says why.
pub fn earlier_invoices<B: Books + ?Sized>(
    b: &B,
    start: i64,
    now_ms: i64,
) -> Result<Vec<Invoice>, ApiError> {
    let mut out = Vec::new();
    for p in b.starts_before(start)? {
        match rated_invoice(b, p, now_ms) {
            Ok(invoice) => out.push(invoice),
            Err(e) => b.note(&format!("rating period {p}: {}", e.message)),
        }
    }
    Ok(out)
}

/// Periods not final yet: those with usage, and the one after the latest.
pub fn open_periods<B: Books + ?Sized>(b: &B) -> Result<Vec<i64>, ApiError> {
    let mut open = b.unfinal_starts()?;
    open.extend(b.latest_end()?);
    Ok(open)
}

/// The corrections of earlier final periods that land on the period at `start`.
pub fn adjustments_for<B: Books + ?Sized>(
    b: &B,
    start: i64,
    now_ms: i64,
) -> Result<Vec<Adjustment>, ApiError> {
    let finals = b.finals_before(start)?;
    if finals.is_empty() {
        return Ok(Vec::new());
    }
    let open = open_periods(b)?;
    let mut out = Vec::new();
    for f in finals
        .into_iter()
        .filter(|&f| lands_on(f, &open) == Some(start))
    {
        if let Some(adjustment) = correction_of(b, f, now_ms)? {
            out.push(adjustment);
        }
    }
    Ok(out)
}

/// What the final period at `f` owes beyond what was billed, if it is to be corrected.
fn correction_of<B: Books + ?Sized>(
    b: &B,
    f: i64,
    now_ms: i64,
) -> Result<Option<Adjustment>, ApiError> {
    let Some(billed_invoice) = b.final_invoice(f)? else {
        return Ok(None);
    };
    // Late records no final invoice has carried yet are always carried; a changed book
    // or account corrects a final period only inside its window.
    let late_records = b.late_records(f)?;
    let end = billed_invoice.period.end_ms;
    if !b
        .finality()
        .corrects(end, late_records, b.carried(f)?, now_ms)
    {
        return Ok(None);
    }
    let mut now = period_input(b, f, now_ms)?;
    // Charges only: credits are drawn where the correction lands. A period that cannot
    // be rated now corrects nothing rather than blocking every later invoice.
    now.account.grants.clear();
    let rated = match rate(&now.book, &now.account, &now.input) {
        Ok(rated) => rated,
        Err(e) => {
            b.note(&format!(
                "correcting period {f}: {}",
                rating_error(e).message
            ));
            return Ok(None);
        }
    };
    if rated.currency != billed_invoice.currency {
        b.note(&format!(
            "period {f}: the invoice currency changed after it was final; no correction"
        ));
        return Ok(None);
    }
    let period = Period {
        start_ms: f,
        end_ms: end,
    };
    let since = Since {
        late_records,
        final_under: &billed_invoice.price_book_version,
        rated_under: &now.book.version,
    };
    Ok(correction(
        period,
        Charges::own(&rated),
        b.billed(f)?,
        since,
    ))
}

#[cfg(test)]
#[path = "books_tests.rs"]
mod tests;
