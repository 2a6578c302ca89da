//! SQLite persistence of a customer's counter. Every method is synchronous, so a
//! read-modify-write in the Durable Object never yields and stays atomic.

use super::sql::{integer, text, Row};
use crate::counter_state::CounterState;
use crate::flush::push::PushState;
use crate::flush::snapshot::FlushRow;
use crate::period::Period;
use crate::protocol::Customer;
use crate::restore::{restore, Cursor, Rows};
use crate::tally::{MeterKey, Tally};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use worker::{Result, SqlStorage, SqlStorageValue};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, mode TEXT NOT NULL,
  created_ms INTEGER NOT NULL, revoked_ms INTEGER);
CREATE TABLE IF NOT EXISTS usage (period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
  meter TEXT NOT NULL, model TEXT NOT NULL, tally TEXT NOT NULL, flushed TEXT, closed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (period_start, meter, model));
CREATE TABLE IF NOT EXISTS reservations (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS expired (id INTEGER PRIMARY KEY, period_start INTEGER NOT NULL,
  body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, body_hash TEXT NOT NULL,
  reservation INTEGER, created_ms INTEGER NOT NULL, replay TEXT);
CREATE INDEX IF NOT EXISTS idempotency_reservation ON idempotency (reservation);
CREATE TABLE IF NOT EXISTS owned (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY (kind, id));
";

pub(super) fn int(v: i64) -> SqlStorageValue {
    SqlStorageValue::from(v)
}

pub(super) fn json<T: Serialize>(v: &T) -> SqlStorageValue {
    SqlStorageValue::from(serde_json::to_string(v).unwrap_or_default())
}

pub(super) fn parse<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| worker::Error::RustError(e.to_string()))
}

pub(super) fn stored_tally(text: &str) -> Result<Tally> {
    Tally::stored(text).map_err(|e| worker::Error::RustError(e.to_string()))
}

pub struct Store {
    pub(super) sql: SqlStorage,
    ready: std::cell::Cell<bool>,
}

impl Store {
    pub fn new(sql: SqlStorage) -> Store {
        Store {
            sql,
            ready: std::cell::Cell::new(false),
        }
    }

    /// Creates the tables if this object has not yet; call before any other method.
    pub fn ready(&self) -> Result<()> {
        super::sql::ensure_schema(&self.sql, SCHEMA, &self.ready)
    }

    pub(super) fn rows(&self, query: &str, binds: Vec<SqlStorageValue>) -> Result<Vec<Row>> {
        super::sql::rows(&self.sql, query, binds)
    }

    pub(super) fn meta<T: DeserializeOwned>(&self, k: &str) -> Result<Option<T>> {
        let rows = self.rows("SELECT v FROM meta WHERE k = ?", vec![k.into()])?;
        rows.first().map(|r| parse(&text(r, 0))).transpose()
    }

    pub(super) fn set_meta<T: Serialize>(&self, k: &str, v: &T) -> Result<()> {
        let q = "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v";
        super::sql::exec(&self.sql, q, vec![k.into(), json(v)])?;
        Ok(())
    }

    pub fn customer(&self) -> Result<Option<Customer>> {
        self.meta("customer")
    }

    pub fn save_customer(&self, c: &Customer) -> Result<()> {
        self.set_meta("customer", c)
    }

    /// The counter for the period containing `now_ms`, with in-flight reservations
    /// (`crate::restore::restore` decides what counts).
    pub fn load_state(&self, anchor_day: u32, now_ms: i64) -> Result<CounterState> {
        let cursor: Cursor = self.meta("cursor")?.unwrap_or_default();
        restore(anchor_day, now_ms, cursor, |period| self.rows_for(period))
    }

    fn rows_for(&self, period: Period) -> Result<Rows> {
        #[derive(Deserialize)]
        struct UsageRow {
            meter: String,
            model: String,
            tally: String,
        }
        #[derive(Deserialize)]
        struct BodyRow {
            body: String,
        }
        let start = || vec![int(period.start_ms)];
        let q = "SELECT meter, model, tally FROM usage WHERE period_start = ?";
        let usage: Vec<UsageRow> = super::sql::exec(&self.sql, q, start())?.to_array()?;
        let mut rows = Rows::default();
        for r in usage {
            rows.tallies
                .push(((r.meter, r.model), stored_tally(&r.tally)?));
        }
        let q = "SELECT body FROM reservations";
        let reservations: Vec<BodyRow> = super::sql::exec(&self.sql, q, vec![])?.to_array()?;
        for r in reservations {
            rows.reservations.push(parse(&r.body)?);
        }
        let q = "SELECT body FROM leases";
        let leases: Vec<BodyRow> = super::sql::exec(&self.sql, q, vec![])?.to_array()?;
        for r in leases {
            rows.leases.push(parse(&r.body)?);
        }
        let q = "SELECT body FROM expired WHERE period_start = ?";
        let expired: Vec<BodyRow> = super::sql::exec(&self.sql, q, start())?.to_array()?;
        for r in expired {
            rows.expired.push(parse(&r.body)?);
        }
        Ok(rows)
    }

    pub fn save_cursor(&self, s: &CounterState) -> Result<()> {
        self.set_meta("cursor", &Cursor::of(s))
    }

    pub fn save_tally(&self, period: Period, key: &MeterKey, t: &Tally) -> Result<()> {
        let q = "INSERT INTO usage (period_start, period_end, meter, model, tally) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT(period_start, meter, model) DO UPDATE SET tally = excluded.tally";
        let (meter, model) = key;
        let binds = vec![
            int(period.start_ms),
            int(period.end_ms),
            meter.as_str().into(),
            model.as_str().into(),
            t.stored_json().into(),
        ];
        super::sql::exec(&self.sql, q, binds)?;
        Ok(())
    }

    /// Usage rows whose period has not been closed by an acknowledged final record.
    pub fn flush_rows(&self) -> Result<Vec<FlushRow>> {
        let q = "SELECT period_start, period_end, meter, model, tally, flushed, closed FROM usage WHERE closed = 0";
        self.usage_rows(q, vec![])
    }

    /// The start of the latest period with usage that began at or before `at_ms`.
    pub fn period_start_at(&self, at_ms: i64) -> Result<Option<i64>> {
        let q = "SELECT MAX(period_start) FROM usage WHERE period_start <= ?";
        Ok(self
            .rows(q, vec![int(at_ms)])?
            .first()
            .and_then(|r| integer(r, 0)))
    }

    /// Every usage row of the period starting at `start`, closed ones too.
    pub fn rows_of(&self, start: i64) -> Result<Vec<FlushRow>> {
        let q = "SELECT period_start, period_end, meter, model, tally, flushed, closed FROM usage
                 WHERE period_start = ?";
        self.usage_rows(q, vec![int(start)])
    }

    fn usage_rows(&self, q: &str, binds: Vec<SqlStorageValue>) -> Result<Vec<FlushRow>> {
        let mut out = Vec::new();
        for r in self.rows(q, binds)? {
            let flushed = text(&r, 5);
            out.push(FlushRow {
                period: Period {
                    start_ms: integer(&r, 0).unwrap_or(0),
                    end_ms: integer(&r, 1).unwrap_or(0),
                },
                meter: text(&r, 2),
                model: text(&r, 3),
                tally: stored_tally(&text(&r, 4))?,
                flushed: if flushed.is_empty() {
                    Tally::default()
                } else {
                    stored_tally(&flushed)?
                },
                closed: integer(&r, 6) == Some(1),
            });
        }
        Ok(out)
    }

    /// Stores what is flushed of each row (and whether it is closed), as
    /// `snapshot::acknowledge` computed it.
    pub fn save_flushed(&self, rows: &[FlushRow]) -> Result<()> {
        for row in rows {
            let q = "UPDATE usage SET flushed = ?, closed = ? WHERE period_start = ? AND meter = ? AND model = ?";
            let binds = vec![
                row.flushed.stored_json().into(),
                int(i64::from(row.closed)),
                int(row.period.start_ms),
                row.meter.as_str().into(),
                row.model.as_str().into(),
            ];
            super::sql::exec(&self.sql, q, binds)?;
        }
        Ok(())
    }

    /// Moves the end of a period (closing it early).
    pub fn end_period(&self, period_start: i64, end_ms: i64) -> Result<()> {
        let q = "UPDATE usage SET period_end = ? WHERE period_start = ?";
        super::sql::exec(&self.sql, q, vec![int(end_ms), int(period_start)])?;
        Ok(())
    }

    pub fn push_state(&self) -> Result<PushState> {
        Ok(self.meta("flush")?.unwrap_or_default())
    }

    pub fn save_push_state(&self, f: &PushState) -> Result<()> {
        self.set_meta("flush", f)
    }
}
