//! The Ledger's SQLite tables as a `crate::ledger::LedgerStore`: records by id,
//! totals per (period, meter, model), and each period's book in `meta` rows. What goes
//! in them is `crate::ledger::ingest`'s decision.

use super::sql::text;
use crate::flush::UsageRecord;
use crate::ledger::{LedgerStore, PeriodBook, Total, TotalKey};
use crate::tally::Tally;
use serde_json::{json, Value};
use worker::{SqlStorage, SqlStorageValue};

/// Meta key of the instant a period's final records first arrived.
pub(super) fn final_key(start: i64) -> String {
    format!("final_at:{start}")
}

/// Meta key of the count of records stored for a period after it was final.
pub(super) fn late_key(start: i64) -> String {
    format!("late:{start}")
}

/// Meta key of the plan a period's latest record carries, and its sequence.
pub(super) fn plan_key(start: i64) -> String {
    format!("plan:{start}")
}

pub(super) struct SqlStore<'a>(pub(super) &'a SqlStorage);

impl SqlStore<'_> {
    fn rows(&self, q: &str, binds: Vec<SqlStorageValue>) -> worker::Result<Vec<super::sql::Row>> {
        super::sql::rows(self.0, q, binds)
    }

    pub(super) fn meta(&self, k: &str) -> worker::Result<Option<Value>> {
        let rows = self.rows("SELECT v FROM meta WHERE k = ?", vec![k.into()])?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&text(r, 0)).ok()))
    }

    pub(super) fn set_meta(&self, k: &str, v: &Value) -> worker::Result<()> {
        let q = "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v";
        self.0.exec(q, vec![k.into(), v.to_string().into()])?;
        Ok(())
    }
}

impl LedgerStore for SqlStore<'_> {
    type Error = worker::Error;

    fn insert_new(&mut self, records: &[&UsageRecord]) -> worker::Result<Vec<bool>> {
        let q = "INSERT OR IGNORE INTO records (id, period_start) VALUES (?, ?)";
        records
            .iter()
            .map(|r| {
                let binds = vec![r.id.as_str().into(), r.period_start_ms.into()];
                Ok(self.0.exec(q, binds)?.rows_written() > 0)
            })
            .collect()
    }

    fn seen(&self, id: &str) -> worker::Result<bool> {
        Ok(!self
            .rows("SELECT 1 FROM records WHERE id = ?", vec![id.into()])?
            .is_empty())
    }

    fn period(&self, start: i64) -> worker::Result<PeriodBook> {
        let is_final = !self
            .rows(
                "SELECT 1 FROM finals WHERE period_start = ?",
                vec![start.into()],
            )?
            .is_empty();
        let plan = self
            .meta(&plan_key(start))?
            .and_then(|v| Some((v["plan"].as_str()?.to_string(), v["seq"].as_u64()?)));
        Ok(PeriodBook {
            invoiced: is_final,
            final_arrived_ms: self.meta(&final_key(start))?.and_then(|v| v.as_i64()),
            plan,
            late_records: self
                .meta(&late_key(start))?
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
        })
    }

    fn put_period(&mut self, start: i64, book: &PeriodBook) -> worker::Result<()> {
        if let Some(at) = book.final_arrived_ms {
            self.set_meta(&final_key(start), &json!(at))?;
        }
        if let Some((plan, seq)) = &book.plan {
            self.set_meta(&plan_key(start), &json!({"plan": plan, "seq": seq}))?;
        }
        if book.late_records > 0 {
            self.set_meta(&late_key(start), &json!(book.late_records))?;
        }
        Ok(())
    }

    fn total(&self, key: &TotalKey) -> worker::Result<Tally> {
        let q = "SELECT tally FROM totals WHERE period_start = ? AND meter = ? AND model = ?";
        let binds = vec![key.0.into(), key.1.as_str().into(), key.2.as_str().into()];
        Ok(self
            .rows(q, binds)?
            .first()
            .and_then(|row| Tally::stored(&text(row, 0)).ok())
            .unwrap_or_default())
    }

    fn put_total(&mut self, key: &TotalKey, total: &Total) -> worker::Result<()> {
        let q = "INSERT INTO totals (period_start, period_end, meter, model, tally, final) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(period_start, meter, model) DO UPDATE SET tally = excluded.tally,
                 period_end = excluded.period_end, final = MAX(final, excluded.final)";
        let binds = vec![
            key.0.into(),
            total.period_end.into(),
            key.1.as_str().into(),
            key.2.as_str().into(),
            serde_json::to_string(&total.tally)
                .unwrap_or_default()
                .into(),
            i64::from(total.is_final).into(),
        ];
        self.0.exec(q, binds)?;
        Ok(())
    }

    fn keep_refused(&mut self, r: &UsageRecord, reason: &str) -> worker::Result<()> {
        let q = "INSERT OR IGNORE INTO refused (id, period_start, reason) VALUES (?, ?, ?)";
        let binds = vec![
            r.id.as_str().into(),
            r.period_start_ms.into(),
            reason.into(),
        ];
        self.0.exec(q, binds)?;
        Ok(())
    }

    fn mark_test_mode(&mut self) -> worker::Result<()> {
        if self.meta("livemode")?.is_none() {
            self.set_meta("livemode", &Value::Bool(false))?;
        }
        Ok(())
    }
}
