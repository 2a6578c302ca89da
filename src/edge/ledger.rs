//! `Ledger`: one Durable Object per customer on the rating side. It stores flushed
//! records once each (deduplicated by record id), keeps running totals per period,
//! meter and model, and rates a period with the pure rating engine as its records
//! arrive, keeping the invoice (`ledger_rated`).

use super::client::call;
use super::ledger_store::SqlStore;
use super::sql::integer;
use super::{config, http};
use crate::error::ApiError;
use crate::flush::UsageRecord;
use crate::ledger::account;
use crate::ledger::books::{self, rating_error, Books};
use crate::ledger::ingest;
use crate::period::period_at;
use crate::protocol::{CounterCall, LedgerCall};
use crate::rating::{preview, PriceBook};
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
    state: State,
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
            LedgerCall::Ingest(_) | LedgerCall::AddGrant(_) | LedgerCall::VoidGrant(_)
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

    /// `{"plan", "account"}`: the customer's plan in the price book and billing account.
    fn set_account(&self, v: &Value) -> Answer {
        let book = config::price_book(&self.env)?;
        let livemode = account::check(&book, v)?;
        self.set_meta("account", v)?;
        self.set_meta("livemode", &Value::Bool(livemode))?;
        self.forget_rated()?;
        http::json_response(v, 200).map_err(http::internal)
    }

    /// The invoice of the period starting at `start`, under the book in force or, for a
    /// preview, next to it under a draft book. Final once the period's final flush arrived.
    fn invoice(&self, start: i64, draft: Option<&str>, now_ms: i64) -> Answer {
        let body = match draft {
            // A final invoice is answered exactly as it was stored.
            None if let Some(text) = self.final_text(start)? => {
                return Ok(http::raw_json(text));
            }
            None => serde_json::to_value(books::rated_invoice(self, start, now_ms)?),
            Some(text) => {
                let c = books::context(self, start, now_ms)?;
                let draft = PriceBook::parse(text)
                    .map_err(|e| rating_error(e.in_document("draft price book")))?;
                serde_json::to_value(
                    preview(&c.book, &draft, &c.account, &c.input).map_err(rating_error)?,
                )
            }
        };
        http::json_response(&body.map_err(ApiError::unexpected)?, 200).map_err(http::internal)
    }

    /// After new usage or a new grant, and on the alarm: finalizes what is due (waking
    /// again for the next), then pushes the credit state. Failures are logged and tried
    /// again on the next change or alarm.
    async fn after_change(&self, now_ms: i64) {
        match self.finalize_due(now_ms).await {
            Ok(Some(at)) => {
                let alarm = super::counter_alarm::alarm_at(at);
                if let Err(e) = self.state.storage().set_alarm(alarm).await {
                    worker::console_error!("ledger alarm: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => worker::console_error!("finalizing: {}", e.message),
        }
        if let Err(e) = self.push_credit_state(now_ms).await {
            worker::console_error!("credit state: {e}");
        }
    }

    /// After new usage or a new grant, on a plan that blocks when prepaid credits run
    /// out: tells the customer's counter whether usage must stop (or may go on again).
    async fn push_credit_state(&self, now_ms: i64) -> std::result::Result<(), ApiError> {
        let latest = self.rows("SELECT MAX(period_start) FROM totals", vec![])?;
        let start = latest
            .first()
            .and_then(|r| integer(r, 0))
            .unwrap_or_else(|| period_at(now_ms, 1).start_ms);
        let c = match books::context(self, start, now_ms) {
            Ok(c) => c,
            Err(e) if e.status == 404 => return Ok(()), // no account yet
            Err(e) => return Err(e),
        };
        let Some(plan) = c.book.plans.get(&c.plan) else {
            return Ok(());
        };
        if !plan.block_when_credits_exhausted {
            return Ok(()); // no need to rate it
        }
        let invoice = books::rated_invoice(self, start, now_ms)?;
        let told = self.meta("blocked")?.and_then(|v| v.as_bool());
        let (balance, currency) = (invoice.credit_balance, &invoice.currency);
        let Some(state) = account::credit_news(plan, balance, currency, told) else {
            return Ok(());
        };
        let blocked = state.blocked;
        let resp = call(
            &self.env,
            &c.account.customer_id,
            &CounterCall::Credit(state),
        )
        .await?;
        if resp.status_code() < 300 {
            self.set_meta("blocked", &Value::Bool(blocked))?;
        }
        Ok(())
    }
}
