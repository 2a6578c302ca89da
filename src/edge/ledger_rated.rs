//! The Ledger's rated invoices. A period is rated as its usage arrives and the invoice
//! stored, so reading one is a single row. A stored invoice serves while the price
//! book has the version it was rated under and no credit grant has started or ended
//! since; changing the account or its grants forgets them all. Credits are balances: a
//! period draws on what the invoices of earlier periods left, so re-rating a period
//! forgets the stored invoices after it.

use super::config;
use super::ledger::{rating, stored, Ledger, Rating};
use super::sql::{integer, text};
use crate::error::ApiError;
use crate::ledger::rating_input;
use crate::period::{day_of_month, period_at, Period};
use crate::rating::{rate, Account, Invoice};
use crate::tally::Tally;

/// A period's running total of one meter and model.
type MeterTotals = (String, String, Tally);

impl Ledger {
    /// What rating a period needs: the book, the account with what earlier periods
    /// left of its credits, its plan, and the input with the corrections of earlier
    /// final invoices that land on it.
    pub(super) fn context(&self, start: i64, now_ms: i64) -> Result<Rating, ApiError> {
        let mut c = self.period_input(start, now_ms)?;
        // Credits earlier periods drew are spent: this period draws on what is left.
        let earlier = self.earlier_invoices(start, now_ms)?;
        c.account = crate::rating::net_of_draws(&c.account, &earlier);
        c.input.adjustments = self.adjustments_for(start, now_ms)?;
        Ok(c)
    }

    /// The period's own rating input: its totals under the plan its records carry, the
    /// account as granted (no draws netted, no corrections).
    pub(super) fn period_input(&self, start: i64, now_ms: i64) -> Result<Rating, ApiError> {
        let book = config::price_book(&self.env)?;
        let v = self
            .meta("account")?
            .ok_or_else(|| ApiError::not_found("This customer has no billing account."))?;
        let account = Account::parse(&v["account"].to_string(), &book).map_err(rating)?;
        // The plan the period's records carry; the account's only for older records.
        let recorded = self.meta(&super::ledger_store::plan_key(start))?;
        let recorded = recorded.and_then(|p| p["plan"].as_str().map(String::from));
        let plan = recorded.unwrap_or_else(|| v["plan"].as_str().unwrap_or_default().to_string());
        let (totals, end) = self.period_totals(start)?;
        let end = end.unwrap_or_else(|| period_at(start, day_of_month(start)).end_ms);
        let input = rating_input(
            &plan,
            Period {
                start_ms: start,
                end_ms: end,
            },
            &totals,
            // Credits pay a period as of its own end, not as of whenever it is rated
            // again: a later top-up never pays an earlier period, nor does an expiry
            // take back what it paid.
            now_ms.min(end - 1),
        );
        Ok(Rating {
            book,
            account,
            plan,
            input,
        })
    }

    /// The period's totals per (meter, model), and its end when it has any.
    pub(super) fn period_totals(
        &self,
        start: i64,
    ) -> Result<(Vec<MeterTotals>, Option<i64>), ApiError> {
        let q = "SELECT meter, model, tally, period_end FROM totals WHERE period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        let tally = |r: &[worker::SqlStorageValue]| Tally::stored(&text(r, 2)).unwrap_or_default();
        let totals = rows
            .iter()
            .map(|r| (text(r, 0), text(r, 1), tally(r)))
            .collect();
        Ok((totals, rows.first().and_then(|r| integer(r, 3))))
    }

    /// Rates the period starting at `start` and stores its invoice (final once the
    /// period's final record arrived).
    pub(super) fn rate_and_store(&self, start: i64, now_ms: i64) -> Result<Invoice, ApiError> {
        if let Some(final_invoice) = self.final_invoice(start)? {
            return Ok(final_invoice);
        }
        let c = self.context(start, now_ms)?;
        // A draft until `finalize` stores it for good, numbered.
        let mut invoice = rate(&c.book, &c.account, &c.input).map_err(rating)?;
        invoice.livemode = self.livemode()?;
        let text =
            serde_json::to_string(&invoice).map_err(|e| ApiError::internal(e.to_string()))?;
        let until = c.account.next_credit_change(now_ms);
        let q = "INSERT OR REPLACE INTO rated (period_start, book_version, valid_until_ms, invoice) VALUES (?, ?, ?, ?)";
        let binds = vec![
            start.into(),
            c.book.version.as_str().into(),
            until.into(),
            text.into(),
        ];
        self.sql.exec(q, binds).map_err(stored)?;
        // Later periods drew on what this one left: they are rated again when read.
        let later = "DELETE FROM rated WHERE period_start > ?";
        self.sql.exec(later, vec![start.into()]).map_err(stored)?;
        Ok(invoice)
    }

    /// The invoices of every earlier period with usage, in period order.
    pub(super) fn earlier_invoices(
        &self,
        start: i64,
        now_ms: i64,
    ) -> Result<Vec<Invoice>, ApiError> {
        let q =
            "SELECT DISTINCT period_start FROM totals WHERE period_start < ? ORDER BY period_start";
        let rows = self.rows(q, vec![start.into()])?;
        let starts: Vec<i64> = rows
            .iter()
            .filter_map(|r| super::sql::integer(r, 0))
            .collect();
        // A period that cannot be rated (its plan left the book, say) draws nothing
        // here rather than blocking every later invoice; it is logged, and reading it
        // says why.
        let rated = starts
            .into_iter()
            .filter_map(|p| match self.rated_invoice(p, now_ms) {
                Ok(invoice) => Some(invoice),
                Err(e) => {
                    worker::console_error!("rating period {p}: {}", e.message);
                    None
                }
            });
        Ok(rated.collect())
    }

    /// The period's invoice: the stored one while it holds, else rated now and stored.
    pub(super) fn rated_invoice(&self, start: i64, now_ms: i64) -> Result<Invoice, ApiError> {
        if let Some(final_invoice) = self.final_invoice(start)? {
            return Ok(final_invoice);
        }
        let version = super::config::price_book(&self.env)?.version.clone();
        let q = "SELECT invoice FROM rated WHERE period_start = ? AND book_version = ?
                 AND (valid_until_ms IS NULL OR valid_until_ms > ?)";
        let rows = self.rows(q, vec![start.into(), version.into(), now_ms.into()])?;
        let kept = rows
            .first()
            .and_then(|r| serde_json::from_str::<Invoice>(&super::sql::text(r, 0)).ok());
        match kept {
            Some(invoice) => Ok(invoice),
            None => self.rate_and_store(start, now_ms),
        }
    }

    /// Rates the periods new records arrived for. A customer without a billing account
    /// yet has nothing to rate; other failures are logged and rated again on read.
    /// A final period is never rated again: the open period its correction lands on is.
    pub(super) fn rate_periods(&self, starts: &[i64], now_ms: i64) {
        let open = match self.open_periods() {
            Ok(open) => open,
            Err(e) => return worker::console_error!("open periods: {}", e.message),
        };
        let mut targets: Vec<i64> = starts
            .iter()
            .filter_map(|&s| match open.contains(&s) {
                true => Some(s),
                false => crate::finality::lands_on(s, &open),
            })
            .collect();
        targets.sort();
        targets.dedup();
        for start in targets {
            match self.rate_and_store(start, now_ms) {
                Ok(_) => {}
                Err(e) if e.status == 404 => return,
                Err(e) => worker::console_error!("rating period {start}: {}", e.message),
            }
        }
    }

    /// The account or its grants changed: every stored invoice is out of date.
    pub(super) fn forget_rated(&self) -> Result<(), ApiError> {
        self.sql.exec("DELETE FROM rated", None).map_err(stored)?;
        Ok(())
    }
}
