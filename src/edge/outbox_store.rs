//! The FlushShard's outbox table as a `crate::flush::outbox::OutboxStore` (what goes in
//! it is `crate::flush::outbox::accept`'s decision), and the shard's schema.

use super::sql::text;
use crate::flush::outbox::{recorded_at, OutboxStore};
use crate::flush::UsageRecord;
use worker::{Result, SqlStorage};

// outbox.state: 0 waiting to be sent, 1 acknowledged by the receiver, 2 kept aside.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, customer TEXT NOT NULL, record TEXT NOT NULL,
  recorded_ms INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0, done_ms INTEGER);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (state, customer);
CREATE INDEX IF NOT EXISTS outbox_customer ON outbox (customer, state);
CREATE TABLE IF NOT EXISTS dead (batch_id TEXT PRIMARY KEY, customers TEXT NOT NULL, record_ids TEXT NOT NULL,
  records INTEGER NOT NULL, content_type TEXT NOT NULL, body TEXT NOT NULL, error TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (owner TEXT PRIMARY KEY, customer TEXT NOT NULL, livemode INTEGER NOT NULL,
  last_ms INTEGER NOT NULL);
";

pub(super) const WAITING: i64 = 0;
pub(super) const ACKNOWLEDGED: i64 = 1;
pub(super) const KEPT_ASIDE: i64 = 2;

/// The content type a dead letter of an unreadable outbox row is kept under.
pub(super) const UNREADABLE: &str = "application/x-edgemeter-unreadable-row";

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
            let at = recorded_at(r, self.now_ms);
            let binds = vec![r.id.as_str().into(), owner.into(), record.into(), at.into()];
            super::sql::exec(self.sql, q, binds)?;
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
