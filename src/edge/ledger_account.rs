//! The Ledger's account, invoices and what it tells the counter: each asks the core
//! (`crate::ledger::account`, `crate::ledger::books`) and stores or answers.

use super::client::call;
use super::ledger::CustomerLedger;
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

/// How long after a failed finalization it is tried again.
const FINALIZE_RETRY_MS: i64 = 60_000;

impl CustomerLedger<'_> {
    /// `{"plan", "account"}`: the customer's plan in the price book and billing account.
    pub(super) fn set_account(&self, v: &Value) -> Answer {
        let book = config::price_book(&self.shard.env)?;
        let livemode = account::check(&book, v)?;
        self.set_meta("account", v)?;
        self.set_meta("livemode", &Value::Bool(livemode))?;
        self.forget_rated()?;
        self.watch_credits(&book)?;
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

    /// After final records arrived or a new grant, and on the shard's alarm: finalizes
    /// what is due and keeps when the next finalization is (a failure is tried again
    /// a minute later), then tells the counter of its credits.
    pub(super) async fn after_change(&self, now_ms: i64) {
        let due = match self.finalize_due(now_ms).await {
            Ok(due) => due,
            Err(e) => {
                worker::console_error!("finalizing {}: {}", self.owner, e.message);
                Some(now_ms + FINALIZE_RETRY_MS)
            }
        };
        if let Err(e) = self.shard.set_due(self.owner, due).await {
            worker::console_error!("ledger alarm: {}", e.message);
        }
        self.tell_credit_state(now_ms).await;
    }

    /// Tells the counter of its credits when that may have changed; a failure is
    /// logged and tried again on the next change.
    pub(super) async fn tell_credit_state(&self, now_ms: i64) {
        if let Err(e) = self.push_credit_state(now_ms).await {
            worker::console_error!("credit state of {}: {e}", self.owner);
        }
    }

    /// After new usage or a new grant, on a plan that blocks when prepaid credits run
    /// out: tells the customer's counter whether usage must stop (or may go on again).
    async fn push_credit_state(&self, now_ms: i64) -> std::result::Result<(), ApiError> {
        let latest = self.rows(
            "SELECT MAX(period_start) FROM totals WHERE customer = ?",
            vec![],
        )?;
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
            &self.shard.env,
            &c.account.customer_id,
            &CounterCall::Credit(state),
        )
        .await?;
        if resp.status_code() < 300 {
            self.set_meta("blocked", &Value::Bool(blocked))?;
            self.watch_credits(&c.book)?;
        }
        Ok(())
    }

    /// Keeps the customer in its shard's credit watch while its counter may need to
    /// hear of credits (`account::may_need_news`: a plan that blocks when credits run
    /// out, or a counter told usage is blocked), so a batch asks only those.
    fn watch_credits(&self, book: &PriceBook) -> std::result::Result<(), ApiError> {
        let plan = self.meta("account")?.and_then(|doc| {
            let name = doc["plan"].as_str()?.to_string();
            book.plans.get(&name).cloned()
        });
        let told = self.meta("blocked")?.and_then(|v| v.as_bool());
        let watch =
            plan.is_some_and(|plan| account::may_need_news(&plan, told)) || told == Some(true);
        match watch {
            true => self.exec(
                "INSERT OR IGNORE INTO credit_watch (customer) VALUES (?)",
                vec![],
            ),
            false => self.exec("DELETE FROM credit_watch WHERE customer = ?", vec![]),
        }
    }
}
