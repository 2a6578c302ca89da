//! What admission reads from the counter's SQLite: the customer's keys, the prepaid
//! credit state, and requests stored under an Idempotency-Key.

use super::counter_store::{int, json, Store};
use super::sql::{integer, text, Row};
use crate::admission::{KeyRow, Prior, IDEMPOTENCY_TTL_MS};
use crate::protocol::{CreditState, KeyInfo, Replay};
use worker::{Result, SqlStorageValue};

impl Store {
    pub fn credit_state(&self) -> Result<Option<CreditState>> {
        self.meta("credit")
    }

    pub fn save_credit_state(&self, c: &CreditState) -> Result<()> {
        self.set_meta("credit", c)
    }

    pub fn keys(&self) -> Result<Vec<KeyRow>> {
        let q = "SELECT hash, id, mode, created_ms, revoked_ms FROM keys ORDER BY created_ms";
        let rows = self.rows(q, vec![])?;
        let key = |r: &Row| KeyRow {
            hash: text(r, 0),
            id: text(r, 1),
            mode: text(r, 2),
            created_ms: integer(r, 3).unwrap_or(0),
            revoked_ms: integer(r, 4),
        };
        Ok(rows.iter().map(key).collect())
    }

    pub fn insert_key(&self, hash: &str, info: &KeyInfo) -> Result<()> {
        let q = "INSERT INTO keys (hash, id, mode, created_ms) VALUES (?, ?, ?, ?)";
        let binds = vec![
            hash.into(),
            info.id.as_str().into(),
            info.mode.as_str().into(),
            int(info.created_ms),
        ];
        super::sql::exec(&self.sql, q, binds)?;
        Ok(())
    }

    /// Marks a key revoked; returns whether a live key with that id existed.
    pub fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool> {
        let q = "UPDATE keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL";
        let cursor = super::sql::exec(&self.sql, q, vec![int(now_ms), id.into()])?;
        Ok(cursor.rows_written() > 0)
    }

    /// The request stored under an idempotency key; the core decides if it still counts.
    pub fn idempotency(&self, key: &str) -> Result<Option<Prior>> {
        let q = "SELECT body_hash, created_ms, replay FROM idempotency WHERE key = ?";
        let rows = self.rows(q, vec![key.into()])?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let replay = match r.get(2) {
            Some(SqlStorageValue::String(stored)) => Some(stored.clone()),
            _ => None,
        };
        Ok(Some(Prior {
            body_hash: text(r, 0),
            created_ms: integer(r, 1).unwrap_or(0),
            replay,
        }))
    }

    pub fn begin_idempotent(
        &self,
        key: &str,
        body_hash: &str,
        reservation: u64,
        now_ms: i64,
    ) -> Result<()> {
        let q = "INSERT INTO idempotency (key, body_hash, reservation, created_ms, replay) VALUES (?, ?, ?, ?, NULL)
                 ON CONFLICT(key) DO UPDATE SET body_hash = excluded.body_hash,
                 reservation = excluded.reservation, created_ms = excluded.created_ms, replay = NULL";
        super::sql::exec(
            &self.sql,
            q,
            vec![
                key.into(),
                body_hash.into(),
                int(reservation as i64),
                int(now_ms),
            ],
        )?;
        Ok(())
    }

    /// Stores the response of a settled idempotent request for replay.
    pub fn finish_idempotent(&self, reservation: u64, replay: &Replay) -> Result<()> {
        let q = "UPDATE idempotency SET replay = ?, reservation = NULL WHERE reservation = ?";
        self.sql
            .exec(q, vec![json(replay), int(reservation as i64)])?;
        Ok(())
    }

    /// Forgets an idempotent request that failed, so a retry can run.
    pub fn forget_idempotent(&self, reservation: u64, now_ms: i64) -> Result<()> {
        super::sql::exec(
            &self.sql,
            "DELETE FROM idempotency WHERE reservation = ? OR created_ms < ?",
            vec![int(reservation as i64), int(now_ms - IDEMPOTENCY_TTL_MS)],
        )?;
        Ok(())
    }
}
