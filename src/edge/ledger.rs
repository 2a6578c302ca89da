//! `Ledger`: one Durable Object per customer on the rating side. It stores flushed
//! records once each (deduplicated by record id), keeps running totals per period,
//! meter and model, and rates a period with the pure rating engine as its records
//! arrive, keeping the invoice (`ledger_rated`).

use super::client::call;
use super::sql::{integer, text};
use super::{config, http};
use crate::counter_state::Tally;
use crate::error::ApiError;
use crate::flush::UsageRecord;
use crate::ledger::{rating_input, tally_of};
use crate::period::{day_of_month, period_at, Period};
use crate::rating::{preview, usage_blocked, Account, CreditGrant, PriceBook};
use serde_json::{json, Value};
use worker::Method;
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
";

type Answer = std::result::Result<Response, ApiError>;

/// Everything rating one period takes.
pub(super) struct Rating {
    pub(super) book: std::rc::Rc<PriceBook>,
    pub(super) account: Account,
    plan: String,
    pub(super) input: crate::rating::RatingInput,
    pub(super) is_final: bool,
}

#[durable_object]
pub struct Ledger {
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

fn int(row: &[SqlStorageValue], i: usize) -> i64 {
    integer(row, i).unwrap_or(0)
}

impl DurableObject for Ledger {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        Ledger {
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
        let result = match req.path().as_str() {
            "/ingest" => match self.ingest(&bytes, now_ms) {
                Ok(r) => {
                    self.credit_state(now_ms).await;
                    Ok(r)
                }
                Err(e) => Err(e),
            },
            "/account" => self.set_account(&v),
            "/grants" => match self.add_grant(&v) {
                Ok(r) => {
                    self.credit_state(now_ms).await;
                    Ok(r)
                }
                Err(e) => Err(e),
            },
            "/invoice" => self.invoice(v["period_start_ms"].as_i64().unwrap_or(0), None, now_ms),
            "/preview" => self.invoice(
                v["period_start_ms"].as_i64().unwrap_or(0),
                v["price_book"].as_str(),
                now_ms,
            ),
            other => Err(ApiError::not_found(format!("no ledger route {other}"))),
        };
        http::respond(result)
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

    /// Stores each record once; a record seen before changes nothing.
    fn ingest(&self, bytes: &[u8], now_ms: i64) -> Answer {
        let records: Vec<UsageRecord> =
            serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
        let (mut fresh, mut duplicates) = (0, 0);
        let mut periods: Vec<i64> = Vec::new();
        for r in &records {
            let q = "INSERT OR IGNORE INTO records (id, period_start) VALUES (?, ?)";
            let written = self
                .sql
                .exec(q, vec![r.id.as_str().into(), r.period_start_ms.into()])
                .map_err(stored)?
                .rows_written();
            if written == 0 {
                duplicates += 1;
                continue;
            }
            fresh += 1;
            if !r.livemode && self.meta("livemode")?.is_none() {
                self.set_meta("livemode", &Value::Bool(false))?;
            }
            if !periods.contains(&r.period_start_ms) {
                periods.push(r.period_start_ms);
            }
            if !r.plan.is_empty() {
                // The counter's plan assignment: the period is rated under the plan of
                // its latest record (by sequence), so a late or requeued older record
                // never brings an earlier plan back.
                let key = format!("plan:{}", r.period_start_ms);
                let held = self.meta(&key)?.and_then(|v| v["seq"].as_u64());
                if held.is_none_or(|seq| seq <= r.seq_to) {
                    self.set_meta(&key, &json!({"plan": r.plan, "seq": r.seq_to}))?;
                }
            }
            let q = "SELECT tally FROM totals WHERE period_start = ? AND meter = ? AND model = ?";
            let key = vec![
                r.period_start_ms.into(),
                r.meter.as_str().into(),
                r.model.as_str().into(),
            ];
            let old: Tally = self
                .rows(q, key)?
                .first()
                .and_then(|row| serde_json::from_str(&text(row, 0)).ok())
                .unwrap_or_default();
            let total = old.plus(&tally_of(r));
            let q = "INSERT INTO totals (period_start, period_end, meter, model, tally, final) VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT(period_start, meter, model) DO UPDATE SET tally = excluded.tally,
                     period_end = excluded.period_end, final = MAX(final, excluded.final)";
            let binds = vec![
                r.period_start_ms.into(),
                r.period_end_ms.into(),
                r.meter.as_str().into(),
                r.model.as_str().into(),
                serde_json::to_string(&total).unwrap_or_default().into(),
                i64::from(r.is_final).into(),
            ];
            self.sql.exec(q, binds).map_err(stored)?;
        }
        self.rate_periods(&periods, now_ms);
        http::json_response(&json!({"stored": fresh, "duplicates": duplicates}), 200)
            .map_err(http::internal)
    }

    /// False for a test-mode customer's Ledger (`test:<customer>`).
    pub(super) fn livemode(&self) -> std::result::Result<bool, ApiError> {
        Ok(self.meta("livemode")? != Some(Value::Bool(false)))
    }

    pub(super) fn meta(&self, k: &str) -> std::result::Result<Option<Value>, ApiError> {
        let rows = self.rows("SELECT v FROM meta WHERE k = ?", vec![k.into()])?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&text(r, 0)).ok()))
    }

    pub(super) fn set_meta(&self, k: &str, v: &Value) -> std::result::Result<(), ApiError> {
        let q = "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v";
        self.sql
            .exec(q, vec![k.into(), v.to_string().into()])
            .map_err(stored)?;
        Ok(())
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

    /// A prepaid credit grant or top-up, validated against the book with the others.
    fn add_grant(&self, grant: &Value) -> Answer {
        let book = config::price_book(&self.env)?;
        let mut v = self
            .meta("account")?
            .ok_or_else(|| ApiError::not_found("Set the customer's account first."))?;
        let g: CreditGrant =
            serde_json::from_value(grant.clone()).map_err(ApiError::invalid_json)?;
        let grants = v["account"]["grants"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if grants.iter().any(|x| x["id"] == g.id.as_str()) {
            return Err(ApiError::conflict(
                "grant_exists",
                format!("A grant `{}` exists already.", g.id),
            ));
        }
        v["account"]["grants"] = Value::Array([grants, vec![grant.clone()]].concat());
        Account::parse(&v["account"].to_string(), &book).map_err(rating)?;
        self.set_meta("account", &v)?;
        self.forget_rated()?;
        http::json_response(&v, 201).map_err(http::internal)
    }

    /// What rating a period needs: the book, the account, its plan and the input.
    pub(super) fn context(&self, start: i64, now_ms: i64) -> std::result::Result<Rating, ApiError> {
        let book = config::price_book(&self.env)?;
        let v = self
            .meta("account")?
            .ok_or_else(|| ApiError::not_found("This customer has no billing account."))?;
        let account = Account::parse(&v["account"].to_string(), &book).map_err(rating)?;
        // Credits earlier periods drew are spent: this period draws on what is left.
        let earlier = self.earlier_invoices(start, now_ms)?;
        let account = crate::rating::net_of_draws(&account, &earlier);
        // The plan the period's records carry; the account's only for older records.
        let recorded = self.meta(&format!("plan:{start}"))?;
        let recorded = recorded.and_then(|p| p["plan"].as_str().map(String::from));
        let plan = recorded.unwrap_or_else(|| v["plan"].as_str().unwrap_or_default().to_string());
        let q = "SELECT meter, model, tally, period_end, final FROM totals WHERE period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        let totals: Vec<(String, String, Tally)> = rows
            .iter()
            .map(|r| {
                (
                    text(r, 0),
                    text(r, 1),
                    serde_json::from_str(&text(r, 2)).unwrap_or_default(),
                )
            })
            .collect();
        let end = rows
            .first()
            .map(|r| int(r, 3))
            .unwrap_or_else(|| period_at(start, day_of_month(start)).end_ms);
        let is_final = rows.iter().any(|r| int(r, 4) == 1);
        let input = rating_input(
            &plan,
            Period {
                start_ms: start,
                end_ms: end,
            },
            &totals,
            // Credits pay a period as of its own end, not as of whenever it is rated
            // again: a later top-up never pays an earlier period, nor does an expiry
            // take back what it paid.
            now_ms.min(end - 1),
        );
        Ok(Rating {
            book,
            account,
            plan,
            input,
            is_final,
        })
    }

    /// The invoice of the period starting at `start`, under the book in force or, for a
    /// preview, next to it under a draft book. Final once the period's final flush arrived.
    fn invoice(&self, start: i64, draft: Option<&str>, now_ms: i64) -> Answer {
        let body = match draft {
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

    /// Pushes the credit state; a failure is logged and tried again on the next change.
    async fn credit_state(&self, now_ms: i64) {
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
        let state = json!({"blocked": blocked, "balance": invoice.credit_balance, "currency": invoice.currency});
        let resp = call(
            &self.env,
            &c.account.customer_id,
            Method::Post,
            "/credit",
            Some(&state),
        )
        .await?;
        if resp.status_code() < 300 {
            self.set_meta("blocked", &Value::Bool(blocked))?;
        }
        Ok(())
    }
}
