//! When a period's invoice becomes final, what becomes of usage that arrives after it,
//! and the corrections later invoices carry. A final invoice never changes: usage for
//! its period that arrives within the backdating window, and a re-rating that changes
//! what the period owes, become an adjustment line on the next open invoice; usage
//! after the window is refused and counted.

use crate::period::{iso8601, Period};
use crate::rating::{Adjustment, Invoice, LineKind};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub const DAY_MS: i64 = 86_400_000;
/// Days after a period's final records arrive before its invoice is final.
pub const DEFAULT_GRACE_DAYS: u64 = 3;
/// Days after a period's end in which its usage is still taken (Stripe allows 35).
pub const DEFAULT_BACKDATING_DAYS: u64 = 35;

/// The two windows, from `INVOICE_GRACE_DAYS` and `BACKDATING_DAYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finality {
    pub grace_ms: i64,
    pub backdating_ms: i64,
}

/// What finalization does next, over the periods that are not final yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Finalize the period starting here now.
    Finalize(i64),
    /// Nothing is due before this instant.
    WaitUntil(i64),
    /// The earliest open period's final records have not come: nothing is due.
    Wait,
}

/// What becomes of a record for a period whose invoice is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Late {
    /// Taken: the difference lands on the next open invoice as an adjustment.
    Adjust,
    /// Past the backdating window: refused, with why.
    Refuse(String),
}

impl Finality {
    pub fn from_days(grace: Option<u64>, backdating: Option<u64>) -> Finality {
        let days = |d: u64| (d.min(3650) as i64) * DAY_MS;
        Finality {
            grace_ms: days(grace.unwrap_or(DEFAULT_GRACE_DAYS)),
            backdating_ms: days(backdating.unwrap_or(DEFAULT_BACKDATING_DAYS)),
        }
    }

    /// When a period whose final records first arrived at `final_at_ms` becomes final.
    pub fn final_at(&self, final_at_ms: i64) -> i64 {
        final_at_ms.saturating_add(self.grace_ms)
    }

    /// The next step over the open periods, in period order, each with the instant its
    /// final records first arrived. Periods become final in order: one whose final
    /// records have not come, or whose grace runs, holds back every later one, so
    /// credits are always drawn in period order.
    pub fn next(&self, open: &[(i64, Option<i64>)], now_ms: i64) -> Next {
        let mut open = open.to_vec();
        open.sort();
        match open.first() {
            None | Some((_, None)) => Next::Wait,
            Some(&(start, Some(arrived))) => match self.final_at(arrived) {
                at if at <= now_ms => Next::Finalize(start),
                at => Next::WaitUntil(at),
            },
        }
    }

    /// Whether a final period ending at `period_end_ms` is corrected on the next open
    /// invoice: always while late records came that no final invoice carried yet; for
    /// a changed book or account, only inside its backdating window.
    pub fn corrects(&self, period_end_ms: i64, late: u64, carried: u64, now_ms: i64) -> bool {
        late > carried || self.late(period_end_ms, now_ms) == Late::Adjust
    }

    /// A record for a final period ending at `period_end_ms`, arriving at `now_ms`.
    pub fn late(&self, period_end_ms: i64, now_ms: i64) -> Late {
        let closes = period_end_ms.saturating_add(self.backdating_ms);
        if now_ms < closes {
            return Late::Adjust;
        }
        Late::Refuse(format!(
            "the period ending {} is final and its backdating window closed {}",
            iso8601(period_end_ms),
            iso8601(closes)
        ))
    }
}

/// What an invoice charges before credits: the part a correction compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charges {
    pub net: Decimal,
    pub tax: Decimal,
}

impl Charges {
    pub fn plus(self, o: Charges) -> Charges {
        Charges {
            net: self.net + o.net,
            tax: self.tax + o.tax,
        }
    }

    /// The invoice's own charges, without the corrections of earlier periods it carries.
    pub fn own(invoice: &Invoice) -> Charges {
        invoice
            .lines
            .iter()
            .filter(|l| l.kind != LineKind::Adjustment)
            .fold(Charges::default(), |c, l| {
                c.plus(Charges {
                    net: l.net,
                    tax: l.tax,
                })
            })
    }
}

/// Why a final period is rated again: records that arrived after it was final, the
/// price book it is rated under, and the one it was final under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since<'a> {
    pub late_records: u64,
    pub final_under: &'a str,
    pub rated_under: &'a str,
}

/// The correction a final period needs: what it owes `now` less what was `billed` for
/// it (its final invoice and the corrections finalized since); none when they agree.
pub fn correction(
    period: Period,
    now: Charges,
    billed: Charges,
    since: Since,
) -> Option<Adjustment> {
    if now == billed {
        return None;
    }
    let mut causes = Vec::new();
    if since.late_records > 0 {
        causes.push(format!(
            "{} usage record(s) arrived after the invoice was final",
            since.late_records
        ));
    }
    if since.final_under != since.rated_under {
        causes.push(format!(
            "re-rated under price book {} (final under {})",
            since.rated_under, since.final_under
        ));
    }
    if causes.is_empty() {
        causes.push("the billing account changed after the invoice was final".into());
    }
    let reason = causes.join("; ");
    Some(Adjustment {
        period,
        reason,
        net: now.net - billed.net,
        tax: now.tax - billed.tax,
    })
}

/// The open period a correction of the final period starting at `final_start` lands
/// on: the first one after it that is not final (`open` lists them).
pub fn lands_on(final_start: i64, open: &[i64]) -> Option<i64> {
    open.iter().copied().filter(|&p| p > final_start).min()
}

/// The prefix of final invoice numbers: `INVOICE_PREFIX` (default `EM-`), with `TEST-`
/// after it for test-mode invoices, which are numbered apart.
pub fn invoice_prefix(setting: Option<&str>, livemode: bool) -> String {
    let prefix = setting.unwrap_or("EM-");
    match livemode {
        true => prefix.to_string(),
        false => format!("{prefix}TEST-"),
    }
}

/// A final invoice's number: the deployment's prefix and its place in the sequence.
pub fn invoice_number(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:06}")
}

#[cfg(test)]
#[path = "finality_tests.rs"]
mod tests;
