//! The Ledger's account, invoices and what it tells the counter: each asks the core
//! (`crate::ledger::account`, `crate::ledger::books`) and stores or answers.

use super::client::call;
use super::ledger::Ledger;
use super::sql::integer;
use super::{config, http};
use crate::error::ApiError;
use crate::ledger::account;
use crate::ledger::books::{self, rating_error};
use crate::period::period_at;
use crate::protocol::CounterCall;
use crate::rating::{preview, PriceBook};
use serde_json::Value;
use worker::Response;

type Answer = std::result::Result<Response, ApiError>;

impl Ledger {
    /// `{"plan", "account"}`: the customer's plan in the price book and billing account.
    pub(super) fn set_account(&self, v: &Value) -> Answer {
        let book = config::price_book(&self.env)?;
        let livemode = account::check(&book, v)?;
        self.set_meta("account", v)?;
        self.set_meta("livemode", &Value::Bool(livemode))?;
        self.forget_rated()?;
        http::json_response(v, 200).map_err(http::internal)
    }

    /// The invoice of the period starting at `start`, under the book in force or, for a
    /// preview, next to it under a draft book. Final once the period's final flush arrived.
    pub(super) fn invoice(&self, start: i64, draft: Option<&str>, now_ms: i64) -> Answer {
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
    pub(super) async fn after_change(&self, now_ms: i64) {
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
        let told = self.meta("blocked")?.and_then(|v| v.as_bool());
        if !account::may_need_news(plan, told) {
            return Ok(()); // no need to rate it
        }
        let invoice = books::rated_invoice(self, start, now_ms)?;
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
