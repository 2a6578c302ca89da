//! `Ledger`: a shard of the rating side's ledgers (`crate::ledger::ledger_shard` says
//! which customers it keeps; `LEDGER_SHARDS` of them). Each customer's rows are its
//! own (every table is keyed by the owner), and a [`CustomerLedger`] is one customer's
//! view. It stores flushed records once each (deduplicated by record id), keeps
//! running totals per period, meter and model, and rates a period when its invoice is
//! read, keeping it until new usage or a new grant makes it stale (`ledger_rated`).

use super::http;
use super::sql::Row;
use crate::error::ApiError;
use crate::protocol::{LedgerAsk, LedgerCall};
use serde_json::Value;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, SqlStorage,
    SqlStorageValue, State,
};

// The tables a batch reads and writes row by row are WITHOUT ROWID: keyed by their
// primary key alone, each row is one B-tree entry, not a row plus an index entry.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (customer TEXT NOT NULL, id TEXT NOT NULL, period_start INTEGER NOT NULL,
  PRIMARY KEY (customer, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (customer TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,
  meter TEXT NOT NULL, model TEXT NOT NULL, tally TEXT NOT NULL, final INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (customer, period_start, meter, model)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS periods (customer TEXT NOT NULL, period_start INTEGER NOT NULL, final_at INTEGER,
  plan TEXT, plan_seq INTEGER, late INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (customer, period_start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (customer TEXT NOT NULL, k TEXT NOT NULL, v TEXT NOT NULL, PRIMARY KEY (customer, k));
CREATE TABLE IF NOT EXISTS credit_watch (customer TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS rated (customer TEXT NOT NULL, period_start INTEGER NOT NULL, book_version TEXT NOT NULL,
  valid_until_ms INTEGER, invoice TEXT NOT NULL, PRIMARY KEY (customer, period_start));
CREATE TABLE IF NOT EXISTS finals (customer TEXT NOT NULL, period_start INTEGER NOT NULL, number TEXT NOT NULL,
  invoice TEXT NOT NULL, finalized_ms INTEGER NOT NULL, PRIMARY KEY (customer, period_start));
CREATE TABLE IF NOT EXISTS billed (customer TEXT NOT NULL, period_start INTEGER NOT NULL, charges TEXT NOT NULL,
  PRIMARY KEY (customer, period_start));
CREATE TABLE IF NOT EXISTS reports (customer TEXT NOT NULL, period_start INTEGER NOT NULL, report TEXT NOT NULL,
  PRIMARY KEY (customer, period_start));
CREATE TABLE IF NOT EXISTS refused (customer TEXT NOT NULL, id TEXT NOT NULL, period_start INTEGER NOT NULL,
  reason TEXT NOT NULL, PRIMARY KEY (customer, id));
CREATE TABLE IF NOT EXISTS due (customer TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS due_at ON due (at_ms);
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
        http::respond(match call {
            LedgerCall::Ingest(records) => self.ingest(records, now_ms).await,
            LedgerCall::Customer { owner, ask } => {
                let customer = CustomerLedger {
                    shard: self,
                    owner: &owner,
                };
                customer.answer(ask, now_ms).await
            }
        })
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(e) = super::sql::ensure_schema(&self.sql, SCHEMA, &self.ready) {
            return Err(worker::Error::RustError(e.to_string()));
        }
        self.finalize_due_customers(super::clock::now_ms()).await;
        Response::ok("")
    }
}

/// One customer's ledger in its shard: every query it makes is scoped to its owner key
/// (`flush::owner_key`), which is the first parameter of each.
pub(super) struct CustomerLedger<'a> {
    pub(super) shard: &'a Ledger,
    pub(super) owner: &'a str,
}

impl CustomerLedger<'_> {
    async fn answer(&self, ask: LedgerAsk, now_ms: i64) -> Answer {
        let changes = matches!(
            ask,
            LedgerAsk::AddGrant(_) | LedgerAsk::VoidGrant(_) | LedgerAsk::SetAccount(_)
        );
        let result = match ask {
            LedgerAsk::SetAccount(doc) => self.set_account(&doc),
            LedgerAsk::AddGrant(grant) => self.add_grant(&grant),
            LedgerAsk::ListGrants => self.list_grants(now_ms),
            LedgerAsk::VoidGrant(id) => self.void_grant(&id, now_ms),
            LedgerAsk::Reconcile {
                customer,
                livemode,
                at_ms,
            } => {
                self.reconciliation(&customer, livemode, at_ms, now_ms)
                    .await
            }
            LedgerAsk::Invoice { period_start_ms } => {
                // A final invoice is served as stored, whatever else cannot be rated.
                match self.final_text(period_start_ms) {
                    Ok(Some(text)) => Ok(http::raw_json(text)),
                    _ => match self.finalize_due(now_ms).await {
                        Ok(_) => self.invoice(period_start_ms, None, now_ms),
                        Err(e) => Err(e),
                    },
                }
            }
            LedgerAsk::Preview {
                period_start_ms,
                price_book,
            } => self.invoice(period_start_ms, Some(&price_book), now_ms),
        };
        if result.is_ok() && changes {
            self.after_change(now_ms).await;
        }
        result
    }

    fn scoped(&self, mut binds: Vec<SqlStorageValue>) -> Vec<SqlStorageValue> {
        binds.insert(0, self.owner.into());
        binds
    }

    /// Every row of `q`, whose first parameter is the owner, followed by `binds`.
    pub(super) fn rows(
        &self,
        q: &str,
        binds: Vec<SqlStorageValue>,
    ) -> std::result::Result<Vec<Row>, ApiError> {
        super::sql::rows(&self.shard.sql, q, self.scoped(binds)).map_err(stored)
    }

    /// Runs `q`, whose first parameter is the owner, followed by `binds`.
    pub(super) fn exec(
        &self,
        q: &str,
        binds: Vec<SqlStorageValue>,
    ) -> std::result::Result<(), ApiError> {
        super::sql::exec(&self.shard.sql, q, self.scoped(binds)).map_err(stored)?;
        Ok(())
    }

    pub(super) fn meta(&self, k: &str) -> std::result::Result<Option<Value>, ApiError> {
        let rows = self.rows(
            "SELECT v FROM meta WHERE customer = ? AND k = ?",
            vec![k.into()],
        )?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&super::sql::text(r, 0)).ok()))
    }

    pub(super) fn set_meta(&self, k: &str, v: &Value) -> std::result::Result<(), ApiError> {
        let q = "INSERT INTO meta (customer, k, v) VALUES (?, ?, ?)
                 ON CONFLICT(customer, k) DO UPDATE SET v = excluded.v";
        self.exec(q, vec![k.into(), v.to_string().into()])
    }
}
