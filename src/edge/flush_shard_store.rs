//! The FlushShard's SQLite reads beside its outbox store: the records waiting to be
//! sent, marking them, and the shard's stats.

use super::delivery::Rendered;
use super::flush_shard::FlushShard;
use super::outbox_store::{UNREADABLE, WAITING};
use super::sql::{integer, text, Row};
use crate::flush::delivery::{ShardStats, MAX_RECORDS_PER_RUN};
use crate::flush::UsageRecord;
use worker::{Result, SqlStorageValue};

fn int(row: &Row, i: usize) -> i64 {
    integer(row, i).unwrap_or(0)
}

impl FlushShard {
    pub(super) fn rows(&self, q: &str, binds: Vec<SqlStorageValue>) -> Result<Vec<Row>> {
        super::sql::rows(&self.sql, q, binds)
    }

    pub(super) fn load_stats(&self) -> Result<ShardStats> {
        let rows = self.rows("SELECT v FROM meta WHERE k = 'stats'", vec![])?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&text(r, 0)).ok())
            .unwrap_or_default())
    }

    pub(super) fn save_stats(&self, s: &ShardStats) -> Result<()> {
        let q = "INSERT INTO meta (k, v) VALUES ('stats', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v";
        self.sql
            .exec(q, vec![serde_json::to_string(s).unwrap_or_default().into()])?;
        Ok(())
    }

    /// Stats with the live counts: records waiting and their customers, the oldest
    /// waiting record, dead letters.
    pub(super) fn stats(&self, now_ms: i64) -> Result<ShardStats> {
        let mut s = self.load_stats()?;
        let q = "SELECT COUNT(DISTINCT customer), COUNT(*), MIN(recorded_ms) FROM outbox WHERE state = ?";
        let waiting = self.rows(q, vec![WAITING.into()])?;
        let w = waiting.first();
        s.pending_customers = w.map_or(0, |r| int(r, 0)) as u64;
        s.pending_records = w.map_or(0, |r| int(r, 1)) as u64;
        s.oldest_unflushed_ms = w.filter(|r| int(r, 1) > 0).map(|r| now_ms - int(r, 2));
        let dead = self.rows("SELECT COUNT(*) FROM dead", vec![])?;
        s.dead_letters = dead.first().map_or(0, |r| int(r, 0)) as u64;
        Ok(s)
    }

    /// The waiting records, grouped by customer, at most `MAX_RECORDS_PER_RUN`. A row
    /// that no longer parses is set aside as a dead letter, never skipped in place.
    pub(super) fn waiting(&self, now_ms: i64) -> Result<Vec<(String, Vec<UsageRecord>)>> {
        let q = "SELECT customer, record, id FROM outbox WHERE state = ? ORDER BY customer LIMIT ?";
        let rows = self.rows(q, vec![WAITING.into(), MAX_RECORDS_PER_RUN.into()])?;
        let mut out: Vec<(String, Vec<UsageRecord>)> = Vec::new();
        for row in &rows {
            let record = match serde_json::from_str::<UsageRecord>(&text(row, 1)) {
                Ok(record) => record,
                Err(e) => {
                    let (customer, raw, id) = (text(row, 0), text(row, 1), text(row, 2));
                    let rendered = Rendered {
                        batch_id: format!("unreadable-{id}"),
                        content_type: UNREADABLE.to_string(),
                        body: raw.into_bytes(),
                    };
                    let why = format!("unreadable outbox row: {e}");
                    let ids = [id.as_str()];
                    self.keep_aside(&rendered, &ids, &[customer], &why, now_ms)?;
                    continue;
                }
            };
            // Grouped by owner: a customer's test usage is a group of its own.
            let owner = text(row, 0);
            match out.last_mut() {
                Some((o, recs)) if *o == owner => recs.push(record),
                _ => out.push((owner, vec![record])),
            }
        }
        Ok(out)
    }

    pub(super) fn mark_ids(&self, ids: &[&str], state: i64, now_ms: i64) -> Result<()> {
        let q = "UPDATE outbox SET state = ?, done_ms = ? WHERE id = ?";
        for id in ids {
            self.sql
                .exec(q, vec![state.into(), now_ms.into(), (*id).into()])?;
        }
        Ok(())
    }
}
