//! The Ledger's side of reconciliation: it asks the customer's counter for its view
//! of a period, adds its own totals and which of the counter's unacknowledged records
//! it already stored, and has `crate::reconcile` put them side by side. A final
//! invoice keeps the report made when it became final.

use super::client;
use super::ledger::CustomerLedger;
use super::sql::text;
use crate::error::ApiError;
use crate::flush::{owner_key, rated_by_builtin};
use crate::ledger::books::Books;
use crate::protocol::CounterCall;
use crate::reconcile::{at_finalization, report, CounterView, LedgerView, Report};
use serde_json::Value;
use worker::Response;

impl CustomerLedger<'_> {
    /// The report of the customer's period containing `at_ms`, made now; made once
    /// more when it finds an unexplained difference, since records ingested while the
    /// counter was asked can make the two views disagree for a moment.
    pub(super) async fn reconcile_settled(
        &self,
        customer: &str,
        livemode: bool,
        at_ms: i64,
        now_ms: i64,
    ) -> Result<Report, ApiError> {
        let whose = (customer, livemode);
        let first = self.reconcile(whose, at_ms, now_ms).await?;
        match first.needs_second_look() {
            false => Ok(first),
            true => self.reconcile(whose, at_ms, now_ms).await,
        }
    }

    async fn reconcile(
        &self,
        (customer, livemode): (&str, bool),
        at_ms: i64,
        now_ms: i64,
    ) -> Result<Report, ApiError> {
        let owner = owner_key(customer, livemode);
        let mut resp =
            client::call(&self.shard.env, &owner, &CounterCall::Reconcile(at_ms)).await?;
        if resp.status_code() >= 300 {
            let detail = resp.text().await.unwrap_or_default();
            let e = ApiError::unavailable(format!(
                "the counter of {owner} answered {}: {detail}",
                resp.status_code()
            ));
            return Err(ApiError {
                status: resp.status_code(),
                ..e
            });
        }
        let counter: CounterView = resp.json().await.map_err(super::http::internal)?;
        let route = super::config::test_usage_route(&self.shard.env);
        let builtin = rated_by_builtin(route.receiver_is_internal, livemode, route.export_test);
        let view = match builtin {
            true => Some(self.ledger_view(&counter)?),
            false => None,
        };
        Ok(report(customer, livemode, &counter, view.as_ref(), now_ms))
    }

    fn ledger_view(&self, counter: &CounterView) -> Result<LedgerView, ApiError> {
        let (totals, _) = self.totals(counter.period.start_ms)?;
        let mut view = LedgerView {
            totals,
            ..LedgerView::default()
        };
        for r in &counter.held {
            let q = "SELECT 1 FROM records WHERE customer = ? AND id = ?";
            if !self.rows(q, vec![r.id.as_str().into()])?.is_empty() {
                view.stored_held.insert(r.id.clone());
            }
            let q = "SELECT reason FROM refused WHERE customer = ? AND id = ?";
            if let Some(row) = self.rows(q, vec![r.id.as_str().into()])?.first() {
                view.refused_held.insert(r.id.clone(), text(row, 0));
            }
        }
        Ok(view)
    }

    /// Keeps the report of a period made when it became final.
    pub(super) fn keep_report(&self, start: i64, r: &Report) -> Result<(), ApiError> {
        let q = "INSERT OR IGNORE INTO reports (customer, period_start, report) VALUES (?, ?, ?)";
        let text = serde_json::to_string(r).map_err(ApiError::unexpected)?;
        self.exec(q, vec![start.into(), text.into()])
    }

    /// `{customer, livemode, at_ms}`: the report made now, and for a final period the
    /// one kept when it became final.
    pub(super) async fn reconciliation(
        &self,
        customer: &str,
        livemode: bool,
        at_ms: i64,
        now_ms: i64,
    ) -> Result<Response, ApiError> {
        let now = self
            .reconcile_settled(customer, livemode, at_ms, now_ms)
            .await?;
        let start = now.period.start_ms;
        let q = "SELECT report FROM reports WHERE customer = ? AND period_start = ?";
        let kept = self.rows(q, vec![start.into()])?;
        let kept: Option<Value> = kept
            .first()
            .and_then(|r| serde_json::from_str(&text(r, 0)).ok());
        let is_final = self.final_text(start)?.is_some();
        let mut body = serde_json::to_value(&now).map_err(ApiError::unexpected)?;
        let (kept, keep_now) = at_finalization(kept, is_final, body.clone());
        if keep_now {
            // Finalized while the counter could not be asked: kept at its first read.
            self.keep_report(start, &now)?;
        }
        body["at_finalization"] = kept.unwrap_or(Value::Null);
        super::http::json_response(&body, 200).map_err(super::http::internal)
    }
}
