//! The Ledger's rated invoices. A period is rated as its usage arrives and the invoice
//! stored, so reading one is a single row. A stored invoice serves while the price
//! book has the version it was rated under and no credit grant has started or ended
//! since; changing the account or its grants forgets them all. Credits are balances: a
//! period draws on what the invoices of earlier periods left, so re-rating a period
//! forgets the stored invoices after it.

use super::ledger::{rating, stored, Ledger};
use crate::error::ApiError;
use crate::rating::{rate, Invoice};

impl Ledger {
    /// Rates the period starting at `start` and stores its invoice (final once the
    /// period's final record arrived).
    pub(super) fn rate_and_store(&self, start: i64, now_ms: i64) -> Result<Invoice, ApiError> {
        let c = self.context(start, now_ms)?;
        let mut invoice = rate(&c.book, &c.account, &c.input).map_err(rating)?;
        invoice.livemode = self.livemode()?;
        let invoice = if c.is_final {
            invoice.finalize()
        } else {
            invoice
        };
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
    pub(super) fn rate_periods(&self, starts: &[i64], now_ms: i64) {
        for &start in starts {
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
