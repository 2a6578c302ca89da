//! `Ledger`: one Durable Object per customer on the rating side. It stores flushed
//! records once each (deduplicated by record id), keeps running totals per period,
//! meter and model, and rates a period with the pure rating engine as its records
//! arrive, keeping the invoice (`ledger_rated`).

use super::http;
use super::ledger_store::SqlStore;
use crate::error::ApiError;
use crate::flush::UsageRecord;
use crate::ledger::books::{self, Books};
use crate::ledger::ingest;
use crate::protocol::LedgerCall;
use serde_json::{json, Value};
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, SqlStorage,
    SqlStorageValue, State,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, period_start INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS totals (period_start INTEGER NOT NULL, period_end INTEGER NOT NULL, meter TEXT NOT NULL,
  model TEXT NOT NULL, tally TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (period_start, meter, model));
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rated (period_start INTEGER PRIMARY KEY, book_version TEXT NOT NULL,
  valid_until_ms INTEGER, invoice TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS finals (period_start INTEGER PRIMARY KEY, number TEXT NOT NULL, invoice TEXT NOT NULL,
  finalized_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS billed (period_start INTEGER PRIMARY KEY, charges TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reports (period_start INTEGER PRIMARY KEY, report TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refused (id TEXT PRIMARY KEY, period_start INTEGER NOT NULL, reason TEXT NOT NULL);
";

type Answer = std::result::Result<Response, ApiError>;

#[durable_object]
pub struct Ledger {
    pub(super) state: State,
    pub(super) env: Env,
    pub(super) sql: SqlStorage,
    ready: std::cell::Cell<bool>,
}

pub(super) fn stored(e: worker::Error) -> ApiError {
    ApiError::internal(format!("ledger storage: {e}")).caused_by(e)
}

impl DurableObject for Ledger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        Ledger {
            state,
            env,
            sql,
            ready: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if let Err(e) = super::sql::ensure_schema(&self.sql, SCHEMA, &self.ready) {
            return http::error_response(
                &ApiError::unavailable(format!("ledger storage: {e}")),
                &[],
            );
        }
        let bytes = req.bytes().await.unwrap_or_default();
        let call = match serde_json::from_slice::<LedgerCall>(&bytes) {
            Ok(call) => call,
            Err(e) => return http::error_response(&ApiError::invalid_json(e), &[]),
        };
        let now_ms = super::clock::now_ms();
        let changes = matches!(
            call,
            LedgerCall::Ingest(_)
                | LedgerCall::AddGrant(_)
                | LedgerCall::VoidGrant(_)
                | LedgerCall::SetAccount(_)
        );
        let result = match call {
            LedgerCall::Ingest(records) => self.ingest(&records, now_ms),
            LedgerCall::SetAccount(doc) => self.set_account(&doc),
            LedgerCall::AddGrant(grant) => self.add_grant(&grant),
            LedgerCall::ListGrants => self.list_grants(now_ms),
            LedgerCall::VoidGrant(id) => self.void_grant(&id, now_ms),
            LedgerCall::Reconcile {
                customer,
                livemode,
                at_ms,
            } => {
                self.reconciliation(&customer, livemode, at_ms, now_ms)
                    .await
            }
            LedgerCall::Invoice { period_start_ms } => {
                // A final invoice is served as stored, whatever else cannot be rated.
                match self.final_text(period_start_ms) {
                    Ok(Some(text)) => Ok(http::raw_json(text)),
                    _ => match self.finalize_due(now_ms).await {
                        Ok(_) => self.invoice(period_start_ms, None, now_ms),
                        Err(e) => Err(e),
                    },
                }
            }
            LedgerCall::Preview {
                period_start_ms,
                price_book,
            } => self.invoice(period_start_ms, Some(&price_book), now_ms),
        };
        if result.is_ok() && changes {
            self.after_change(now_ms).await;
        }
        http::respond(result)
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(e) = super::sql::ensure_schema(&self.sql, SCHEMA, &self.ready) {
            return Err(worker::Error::RustError(e.to_string()));
        }
        self.after_change(super::clock::now_ms()).await;
        Response::ok("")
    }
}

impl Ledger {
    pub(super) fn rows(
        &self,
        q: &str,
        binds: Vec<SqlStorageValue>,
    ) -> std::result::Result<Vec<Vec<SqlStorageValue>>, ApiError> {
        super::sql::rows(&self.sql, q, binds).map_err(stored)
    }

    /// Takes a batch into the ledger (`crate::ledger::ingest` decides) and rates the
    /// periods it changed.
    fn ingest(&self, records: &[UsageRecord], now_ms: i64) -> Answer {
        let mut store = SqlStore(&self.sql);
        let out = ingest(&mut store, records, &self.finality(), now_ms).map_err(stored)?;
        books::rate_periods(self, &out.periods, now_ms);
        let answer =
            json!({"stored": out.stored, "duplicates": out.duplicates, "refused": out.refused});
        http::json_response(&answer, 200).map_err(http::internal)
    }

    pub(super) fn meta(&self, k: &str) -> std::result::Result<Option<Value>, ApiError> {
        SqlStore(&self.sql).meta(k).map_err(stored)
    }

    pub(super) fn set_meta(&self, k: &str, v: &Value) -> std::result::Result<(), ApiError> {
        SqlStore(&self.sql).set_meta(k, v).map_err(stored)
    }
}
