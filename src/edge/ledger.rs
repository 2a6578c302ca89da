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
use crate::ledger::ingest;
use crate::period::period_at;
use crate::protocol::{CounterCall, CreditState};
use crate::rating::{preview, usage_blocked, Account, PriceBook};
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

/// Everything rating one period takes.
pub(super) struct Rating {
    pub(super) book: std::rc::Rc<PriceBook>,
    pub(super) account: Account,
    pub(super) plan: String,
    pub(super) input: crate::rating::RatingInput,
}

#[durable_object]
pub struct Ledger {
    state: State,
    pub(super) env: Env,
    pub(super) sql: SqlStorage,
    ready: std::cell::Cell<bool>,
}

pub(super) fn stored(e: worker::Error) -> ApiError {
    ApiError::internal(format!("ledger storage: {e}"))
}

pub(super) fn rating(e: crate::rating::RatingError) -> ApiError {
    ApiError::bad_request(
        "rating_error",
        format!("{} {}: {}", e.document, e.path, e.message),
    )
    .with_param(e.path)
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
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let now_ms = super::clock::now_ms();
        let path = req.path();
        let result = match path.as_str() {
            "/ingest" => self.ingest(&bytes, now_ms),
            "/account" => self.set_account(&v),
            "/grants" => self.add_grant(&v),
            "/grants/list" => self.list_grants(now_ms),
            "/reconcile" => self.reconciliation(&v, now_ms).await,
            "/grants/void" => self.void_grant(v["grant_id"].as_str().unwrap_or_default(), now_ms),
            "/invoice" => {
                // A final invoice is served as stored, whatever else cannot be rated.
                let start = v["period_start_ms"].as_i64().unwrap_or(0);
                match self.final_text(start) {
                    Ok(Some(text)) => Ok(http::raw_json(text)),
                    _ => match self.finalize_due(now_ms).await {
                        Ok(_) => self.invoice(start, None, now_ms),
                        Err(e) => Err(e),
                    },
                }
            }
            "/preview" => self.invoice(
                v["period_start_ms"].as_i64().unwrap_or(0),
                v["price_book"].as_str(),
                now_ms,
            ),
            other => Err(ApiError::not_found(format!("no ledger route {other}"))),
        };
        if result.is_ok() && matches!(path.as_str(), "/ingest" | "/grants" | "/grants/void") {
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
    fn ingest(&self, bytes: &[u8], now_ms: i64) -> Answer {
        let records: Vec<UsageRecord> =
            serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
        let mut store = SqlStore(&self.sql);
        let out = ingest(&mut store, &records, &self.finality(), now_ms).map_err(stored)?;
        self.rate_periods(&out.periods, now_ms);
        let answer =
            json!({"stored": out.stored, "duplicates": out.duplicates, "refused": out.refused});
        http::json_response(&answer, 200).map_err(http::internal)
    }

    /// False for a test-mode customer's Ledger (`test:<customer>`).
    pub(super) fn livemode(&self) -> std::result::Result<bool, ApiError> {
        Ok(self.meta("livemode")? != Some(Value::Bool(false)))
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
        let plan = v["plan"].as_str().unwrap_or_default();
        if !book.plans.contains_key(plan) {
            return Err(ApiError::bad_request(
                "unknown_plan",
                format!("The price book has no plan `{plan}`."),
            )
            .with_param("plan"));
        }
        Account::parse(&v["account"].to_string(), &book).map_err(rating)?;
        self.set_meta("account", v)?;
        self.set_meta("livemode", &Value::Bool(v["livemode"] != false))?;
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
            None => serde_json::to_value(self.rated_invoice(start, now_ms)?),
            Some(text) => {
                let c = self.context(start, now_ms)?;
                let draft = PriceBook::parse(text)
                    .map_err(|e| rating(e.in_document("draft price book")))?;
                serde_json::to_value(
                    preview(&c.book, &draft, &c.account, &c.input).map_err(rating)?,
                )
            }
        };
        http::json_response(&body.map_err(|e| ApiError::internal(e.to_string()))?, 200)
            .map_err(http::internal)
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
        let c = match self.context(start, now_ms) {
            Ok(c) => c,
            Err(e) if e.status == 404 => return Ok(()), // no account yet
            Err(e) => return Err(e),
        };
        let Some(plan) = c
            .book
            .plans
            .get(&c.plan)
            .filter(|p| p.block_when_credits_exhausted)
        else {
            return Ok(());
        };
        let invoice = self.rated_invoice(start, now_ms)?;
        let blocked = usage_blocked(plan, invoice.credit_balance);
        if self.meta("blocked")? == Some(Value::Bool(blocked)) {
            return Ok(());
        }
        let state = CreditState {
            blocked,
            balance: invoice.credit_balance.to_string(),
            currency: invoice.currency.clone(),
        };
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
