//! `InvoiceNumbers`: the one Durable Object that numbers final invoices (one instance
//! for live invoices, one for test ones). A number is allocated once per (owner,
//! period): asking again, after a retry or a crash between allocating and storing the
//! invoice, gets the same number, so the sequence has no gap and no repeat.

use super::http;
use super::sql::integer;
use crate::error::ApiError;
use crate::invoice_numbers::{allocate, NumberStore};
use crate::protocol::NumberAsk;
use serde_json::json;
use std::cell::Cell;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, SqlStorage, State,
};

pub const NUMBERS_BINDING: &str = "INVOICE_NUMBERS";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS numbers (owner TEXT NOT NULL, period_start INTEGER NOT NULL,
  number INTEGER NOT NULL UNIQUE, PRIMARY KEY (owner, period_start));
";

#[durable_object]
pub struct InvoiceNumbers {
    sql: SqlStorage,
    ready: Cell<bool>,
}

impl DurableObject for InvoiceNumbers {
    fn new(state: State, _env: Env) -> Self {
        InvoiceNumbers {
            sql: state.storage().sql(),
            ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let answer = match req.json::<NumberAsk>().await {
            Ok(ask) => self
                .allocate(&ask)
                .map_err(|e| ApiError::unavailable(format!("invoice numbers: {e}"))),
            Err(e) => Err(ApiError::bad_request("invalid_request", e.to_string())),
        };
        http::respond(answer.and_then(|n| {
            http::json_response(&json!({ "number": n }), 200).map_err(http::internal)
        }))
    }
}

/// The numbers table as a `NumberStore`.
struct SqlNumbers<'a>(&'a SqlStorage);

impl NumberStore for SqlNumbers<'_> {
    type Error = worker::Error;

    fn given(&self, owner: &str, period_start: i64) -> Result<Option<u64>> {
        let q = "SELECT number FROM numbers WHERE owner = ? AND period_start = ?";
        let rows = super::sql::rows(self.0, q, vec![owner.into(), period_start.into()])?;
        Ok(rows.first().and_then(|r| integer(r, 0)).map(|n| n as u64))
    }

    fn highest(&self) -> Result<u64> {
        let rows = super::sql::rows(self.0, "SELECT MAX(number) FROM numbers", vec![])?;
        Ok(rows.first().and_then(|r| integer(r, 0)).unwrap_or(0) as u64)
    }

    fn give(&mut self, owner: &str, period_start: i64, number: u64) -> Result<()> {
        let q = "INSERT INTO numbers (owner, period_start, number) VALUES (?, ?, ?)";
        let binds = vec![owner.into(), period_start.into(), (number as i64).into()];
        self.0.exec(q, binds)?;
        Ok(())
    }
}

impl InvoiceNumbers {
    /// `crate::invoice_numbers::allocate` decides. Storage calls are synchronous, so no
    /// other request runs between reading and writing.
    fn allocate(&self, ask: &NumberAsk) -> Result<u64> {
        super::sql::ensure_schema(&self.sql, SCHEMA, &self.ready)?;
        allocate(&mut SqlNumbers(&self.sql), &ask.owner, ask.period_start_ms)
    }
}
