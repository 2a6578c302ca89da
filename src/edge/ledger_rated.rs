//! The Ledger's books in SQLite: what `crate::ledger::books` rates a period from, and
//! where it keeps the invoices. Which invoice serves, what a period draws and what a
//! final period's correction is are decided there.

use super::config;
use super::ledger::CustomerLedger;
use super::sql::{integer, text};
use crate::error::ApiError;
use crate::finality::{Charges, Finality};
use crate::ledger::books::{rating_error, Books, Kept, MeterTotals};
use crate::rating::{Account, Invoice, PriceBook};
use crate::tally::Tally;
use serde_json::Value;
use std::rc::Rc;

/// Meta key of how many of a period's late records a final invoice's correction billed.
pub(super) fn carried_key(start: i64) -> String {
    format!("late_carried:{start}")
}

fn starts(rows: Vec<Vec<worker::SqlStorageValue>>) -> Vec<i64> {
    rows.iter().filter_map(|r| integer(r, 0)).collect()
}

impl Books for CustomerLedger<'_> {
    fn book(&self) -> Result<Rc<PriceBook>, ApiError> {
        config::price_book(&self.shard.env)
    }

    fn account(&self, book: &PriceBook) -> Result<Option<(Account, String)>, ApiError> {
        let Some(doc) = self.meta("account")? else {
            return Ok(None);
        };
        let account = Account::parse(&doc["account"].to_string(), book).map_err(rating_error)?;
        let plan = doc["plan"].as_str().unwrap_or_default().to_string();
        Ok(Some((account, plan)))
    }

    fn livemode(&self) -> Result<bool, ApiError> {
        Ok(self.meta("livemode")? != Some(Value::Bool(false)))
    }

    fn finality(&self) -> Finality {
        self.shard.finality()
    }

    fn recorded_plan(&self, start: i64) -> Result<Option<String>, ApiError> {
        let q = "SELECT plan FROM periods WHERE customer = ? AND period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        Ok(rows
            .first()
            .map(|r| text(r, 0))
            .filter(|plan| !plan.is_empty()))
    }

    fn totals(&self, start: i64) -> Result<(Vec<MeterTotals>, Option<i64>), ApiError> {
        let q = "SELECT meter, model, tally, period_end FROM totals WHERE customer = ? AND period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        let tally = |r: &[worker::SqlStorageValue]| Tally::stored(&text(r, 2)).unwrap_or_default();
        let totals = rows
            .iter()
            .map(|r| (text(r, 0), text(r, 1), tally(r)))
            .collect();
        Ok((totals, rows.first().and_then(|r| integer(r, 3))))
    }

    fn starts_before(&self, before: i64) -> Result<Vec<i64>, ApiError> {
        let q = "SELECT DISTINCT period_start FROM totals WHERE customer = ? AND period_start < ?
                 ORDER BY period_start";
        Ok(starts(self.rows(q, vec![before.into()])?))
    }

    fn unfinal_starts(&self) -> Result<Vec<i64>, ApiError> {
        let q = "SELECT DISTINCT period_start FROM totals WHERE customer = ?1
                 AND period_start NOT IN (SELECT period_start FROM finals WHERE customer = ?1)";
        Ok(starts(self.rows(q, vec![])?))
    }

    fn latest_end(&self) -> Result<Option<i64>, ApiError> {
        let latest = self.rows(
            "SELECT MAX(period_end) FROM totals WHERE customer = ?",
            vec![],
        )?;
        Ok(latest.first().and_then(|r| integer(r, 0)))
    }

    fn finals_before(&self, before: i64) -> Result<Vec<i64>, ApiError> {
        let q = "SELECT period_start FROM finals WHERE customer = ? AND period_start < ? ORDER BY period_start";
        Ok(starts(self.rows(q, vec![before.into()])?))
    }

    fn final_invoice(&self, start: i64) -> Result<Option<Invoice>, ApiError> {
        let parse = |t: String| serde_json::from_str(&t).map_err(ApiError::unexpected);
        self.final_text(start)?.map(parse).transpose()
    }

    fn kept(&self, start: i64) -> Result<Option<Kept>, ApiError> {
        let q = "SELECT book_version, valid_until_ms, invoice FROM rated WHERE customer = ? AND period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        Ok(rows.first().and_then(|r| {
            let invoice = serde_json::from_str::<Invoice>(&text(r, 2)).ok()?;
            Some(Kept {
                book_version: text(r, 0),
                valid_until_ms: integer(r, 1),
                invoice,
            })
        }))
    }

    fn keep(&self, start: i64, kept: &Kept) -> Result<(), ApiError> {
        let invoice = serde_json::to_string(&kept.invoice).map_err(ApiError::unexpected)?;
        let q = "INSERT OR REPLACE INTO rated (customer, period_start, book_version, valid_until_ms, invoice)
                 VALUES (?, ?, ?, ?, ?)";
        let binds = vec![
            start.into(),
            kept.book_version.as_str().into(),
            kept.valid_until_ms.into(),
            invoice.into(),
        ];
        self.exec(q, binds)?;
        let later = "DELETE FROM rated WHERE customer = ? AND period_start > ?";
        self.exec(later, vec![start.into()])
    }

    fn late_records(&self, start: i64) -> Result<u64, ApiError> {
        let q = "SELECT late FROM periods WHERE customer = ? AND period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        Ok(rows.first().and_then(|r| integer(r, 0)).unwrap_or(0) as u64)
    }

    fn carried(&self, start: i64) -> Result<u64, ApiError> {
        let carried = self.meta(&carried_key(start))?;
        Ok(carried.and_then(|v| v.as_u64()).unwrap_or(0))
    }

    fn billed(&self, start: i64) -> Result<Charges, ApiError> {
        let q = "SELECT charges FROM billed WHERE customer = ? AND period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&text(r, 0)).ok())
            .unwrap_or_default())
    }

    fn note(&self, message: &str) {
        worker::console_error!("{message}");
    }
}

impl CustomerLedger<'_> {
    /// The account or its grants changed: every kept invoice is out of date.
    pub(super) fn forget_rated(&self) -> Result<(), ApiError> {
        self.exec("DELETE FROM rated WHERE customer = ?", vec![])
    }
}
