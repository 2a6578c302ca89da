//! The FlushShard's outbox table as a `crate::flush::outbox::OutboxStore`: what goes
//! in it is `crate::flush::outbox::accept`'s decision.

use super::flush_shard::ACKNOWLEDGED;
use super::sql::text;
use crate::flush::outbox::OutboxStore;
use crate::flush::UsageRecord;
use worker::{Result, SqlStorage};

/// The outbox table as a `crate::flush::outbox::OutboxStore`.
pub(super) struct SqlOutbox<'a> {
    pub(super) sql: &'a SqlStorage,
    pub(super) now_ms: i64,
}

impl OutboxStore for SqlOutbox<'_> {
    type Error = worker::Error;

    fn insert_new(&mut self, owner: &str, records: &[&UsageRecord]) -> Result<()> {
        let q =
            "INSERT OR IGNORE INTO outbox (id, customer, record, recorded_ms) VALUES (?, ?, ?, ?)";
        for r in records {
            let record = serde_json::to_string(r).unwrap_or_default();
            let at = r.recorded_at_ms.min(self.now_ms);
            let binds = vec![r.id.as_str().into(), owner.into(), record.into(), at.into()];
            self.sql.exec(q, binds)?;
        }
        Ok(())
    }

    fn acknowledged(&self, owner: &str) -> Result<Vec<String>> {
        let q = "SELECT id FROM outbox WHERE customer = ? AND state = ?";
        let rows = super::sql::rows(self.sql, q, vec![owner.into(), ACKNOWLEDGED.into()])?;
        Ok(rows.iter().map(|r| text(r, 0)).collect())
    }

    fn forget(&mut self, id: &str) -> Result<()> {
        self.sql
            .exec("DELETE FROM outbox WHERE id = ?", vec![id.into()])?;
        Ok(())
    }
}
