//! The Ledger's final invoices. A period becomes final `INVOICE_GRACE_DAYS` after its
//! final records first arrive: it is rated once more, numbered by `InvoiceNumbers`,
//! and stored as it is, never to change. Usage for it arriving later is taken within
//! `BACKDATING_DAYS` of the period's end, and what the period owes beyond what was
//! billed becomes an adjustment line on the next open invoice; after the window it is
//! refused and counted. The decisions are `crate::finality`'s.

use super::client::call_object;
use super::invoice_numbers::NUMBERS_BINDING;
use super::ledger::{stored, CustomerLedger, Ledger};
use super::ledger_rated::carried_key;
use super::sql::{integer, text};
use crate::error::ApiError;
use crate::finality::{invoice_number, invoice_prefix, Charges, Next};
use crate::ledger::books::{self, Books};
use crate::protocol::NumberAsk;
use serde_json::{json, Value};
use worker::Method;

impl CustomerLedger<'_> {
    /// The final invoice of the period starting at `start`, as stored, byte for byte.
    pub(super) fn final_text(&self, start: i64) -> Result<Option<String>, ApiError> {
        let q = "SELECT invoice FROM finals WHERE customer = ? AND period_start = ?";
        Ok(self
            .rows(q, vec![start.into()])?
            .first()
            .map(|r| text(r, 0)))
    }

    /// Finalizes periods in order while each one's grace is over; returns when the next
    /// one is due. A period that is not final yet (its final records have not all come,
    /// or its grace runs) holds back every later one, so credits are always drawn in
    /// period order.
    pub(super) async fn finalize_due(&self, now_ms: i64) -> Result<Option<i64>, ApiError> {
        let finality = self.shard.finality();
        // One period a step: finalizing one changes what the next draws and carries.
        loop {
            let q =
                "SELECT t.period_start, p.final_at FROM (SELECT DISTINCT period_start FROM totals
                     WHERE customer = ?1 AND period_start NOT IN
                     (SELECT period_start FROM finals WHERE customer = ?1)) t
                     LEFT JOIN periods p ON p.customer = ?1 AND p.period_start = t.period_start";
            let rows = self.rows(q, vec![])?;
            let open: Vec<(i64, Option<i64>)> = rows
                .iter()
                .filter_map(|r| Some((integer(r, 0)?, integer(r, 1))))
                .collect();
            match finality.next(&open, now_ms) {
                Next::Finalize(start) => self.finalize(start, now_ms).await?,
                Next::WaitUntil(at) => return Ok(Some(at)),
                Next::Wait => return Ok(None),
            }
        }
    }

    /// Numbers the period, rates it once more and stores it for good, with what it
    /// billed for itself and for the earlier periods it corrects. The number is asked
    /// for first: rating and storing then run with no await between them, so no record
    /// ingested meanwhile can be left out of both the invoice and the corrections.
    async fn finalize(&self, start: i64, now_ms: i64) -> Result<(), ApiError> {
        let livemode = self.livemode()?;
        let customer = books::period_input(self, start, now_ms)?
            .account
            .customer_id;
        let owner = crate::flush::owner_key(&customer, livemode);
        let n = self.allocate_number(start, &owner, livemode).await?;
        if self.final_text(start)?.is_some() {
            return Ok(()); // finalized by another request meanwhile
        }
        let prefix = super::config::setting(&self.shard.env, "INVOICE_PREFIX");
        let number = invoice_number(&invoice_prefix(prefix.as_deref(), livemode), n);
        let made = books::finalize(self, start, &number, now_ms)?;
        let body = serde_json::to_string(&made.invoice).map_err(ApiError::unexpected)?;
        let q = "INSERT INTO finals (customer, period_start, number, invoice, finalized_ms)
                 VALUES (?, ?, ?, ?, ?)";
        self.exec(
            q,
            vec![start.into(), number.into(), body.into(), now_ms.into()],
        )?;
        for (period, charges) in made.billed {
            self.add_billed(period, charges)?;
        }
        for period in made.carried {
            // The late records its correction carried are billed now.
            let late = self.late_records(period)?;
            self.set_meta(&carried_key(period), &json!(late))?;
        }
        // It and later periods drew on what this one left: rated again when read.
        let q = "DELETE FROM rated WHERE customer = ? AND period_start >= ?";
        self.exec(q, vec![start.into()])?;
        // The reconciliation as of now is kept with the invoice (or at its first read).
        match self
            .reconcile_settled(&customer, livemode, start, now_ms)
            .await
        {
            Ok(report) => self.keep_report(start, &report)?,
            Err(e) => worker::console_error!("reconciling {customer} at {start}: {}", e.message),
        }
        Ok(())
    }

    async fn allocate_number(
        &self,
        start: i64,
        owner: &str,
        livemode: bool,
    ) -> Result<u64, ApiError> {
        let ask = NumberAsk {
            owner: owner.to_string(),
            period_start_ms: start,
        };
        let instance = if livemode { "live" } else { "test" };
        let mut resp = call_object(
            &self.shard.env,
            NUMBERS_BINDING,
            instance,
            Method::Post,
            "/",
            Some(&ask),
        )
        .await?;
        let v: Value = resp.json().await.map_err(super::http::internal)?;
        v["number"].as_u64().ok_or_else(|| {
            ApiError::unavailable(format!(
                "invoice numbers answered {}: {v}",
                resp.status_code()
            ))
        })
    }

    fn add_billed(&self, start: i64, more: Charges) -> Result<(), ApiError> {
        let sum = self.billed(start)?.plus(more);
        let q = "INSERT INTO billed (customer, period_start, charges) VALUES (?, ?, ?)
                 ON CONFLICT(customer, period_start) DO UPDATE SET charges = excluded.charges";
        let text = serde_json::to_string(&sum).map_err(ApiError::unexpected)?;
        self.exec(q, vec![start.into(), text.into()])
    }
}

/// Customers finalized on one alarm at most; the alarm comes back for the rest.
const DUE_AT_ONCE: i64 = 100;

impl Ledger {
    /// Keeps when `owner`'s next finalization is due (none: forgets it), and sets the
    /// shard's alarm for the earliest customer's.
    pub(super) async fn set_due(&self, owner: &str, at_ms: Option<i64>) -> Result<(), ApiError> {
        let sql = &self.sql;
        match at_ms {
            Some(at) => {
                let q = "INSERT INTO due (customer, at_ms) VALUES (?, ?)
                         ON CONFLICT(customer) DO UPDATE SET at_ms = excluded.at_ms";
                super::sql::exec(sql, q, vec![owner.into(), at.into()]).map_err(stored)?
            }
            None => super::sql::exec(
                sql,
                "DELETE FROM due WHERE customer = ?",
                vec![owner.into()],
            )
            .map_err(stored)?,
        };
        self.set_alarm().await
    }

    async fn set_alarm(&self) -> Result<(), ApiError> {
        let next =
            super::sql::rows(&self.sql, "SELECT MIN(at_ms) FROM due", vec![]).map_err(stored)?;
        if let Some(at) = next.first().and_then(|r| integer(r, 0)) {
            let alarm = super::counter_alarm::alarm_at(at);
            self.state
                .storage()
                .set_alarm(alarm)
                .await
                .map_err(stored)?;
        }
        Ok(())
    }

    /// The alarm: finalizes for the customers whose finalization is due.
    pub(super) async fn finalize_due_customers(&self, now_ms: i64) {
        let q = "SELECT customer FROM due WHERE at_ms <= ? ORDER BY at_ms LIMIT ?";
        let due = super::sql::rows(&self.sql, q, vec![now_ms.into(), DUE_AT_ONCE.into()]);
        let owners: Vec<String> = due.unwrap_or_default().iter().map(|r| text(r, 0)).collect();
        for owner in &owners {
            let customer = CustomerLedger { shard: self, owner };
            customer.after_change(now_ms).await;
        }
        if let Err(e) = self.set_alarm().await {
            worker::console_error!("ledger alarm: {}", e.message);
        }
    }
}
