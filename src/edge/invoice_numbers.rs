//! `InvoiceNumbers`: the one Durable Object that numbers final invoices (one instance
//! for live invoices, one for test ones). A number is allocated once per (owner,
//! period): asking again, after a retry or a crash between allocating and storing the
//! invoice, gets the same number, so the sequence has no gap and no repeat.

use super::http;
use super::sql::integer;
use crate::error::ApiError;
use serde::Deserialize;
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

#[derive(Deserialize)]
struct Ask {
    owner: String,
    period_start_ms: i64,
}

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
        let answer = match req.json::<Ask>().await {
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

impl InvoiceNumbers {
    /// The number of (owner, period): the one it was given, or the next. Storage calls
    /// are synchronous, so no other request runs between reading and writing.
    fn allocate(&self, ask: &Ask) -> Result<i64> {
        super::sql::ensure_schema(&self.sql, SCHEMA, &self.ready)?;
        let q = "SELECT number FROM numbers WHERE owner = ? AND period_start = ?";
        let key = || vec![ask.owner.as_str().into(), ask.period_start_ms.into()];
        if let Some(n) = super::sql::rows(&self.sql, q, key())?
            .first()
            .and_then(|r| integer(r, 0))
        {
            return Ok(n);
        }
        let q = "INSERT INTO numbers (owner, period_start, number)
                 SELECT ?, ?, COALESCE(MAX(number), 0) + 1 FROM numbers RETURNING number";
        let rows = super::sql::rows(&self.sql, q, key())?;
        rows.first()
            .and_then(|r| integer(r, 0))
            .ok_or_else(|| worker::Error::RustError("no number returned".into()))
    }
}
