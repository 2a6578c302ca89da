//! The Ledger's final invoices. A period becomes final `INVOICE_GRACE_DAYS` after its
//! final records first arrive: it is rated once more, numbered by `InvoiceNumbers`,
//! and stored as it is, never to change. Usage for it arriving later is taken within
//! `BACKDATING_DAYS` of the period's end, and what the period owes beyond what was
//! billed becomes an adjustment line on the next open invoice; after the window it is
//! refused and counted. The decisions are `crate::finality`'s.

use super::client::call_object;
use super::invoice_numbers::NUMBERS_BINDING;
use super::ledger::{rating, stored, Ledger};
use super::ledger_store::{final_key, late_key};
use super::sql::{integer, text};
use crate::error::ApiError;
use crate::finality::{correction, invoice_number, lands_on, Charges, Finality, Next, Since};
use crate::period::Period;
use crate::rating::{rate, Adjustment, Invoice};
use serde_json::{json, Value};
use worker::Method;

/// Meta key of how many of a period's late records a final invoice's correction billed.
fn carried_key(start: i64) -> String {
    format!("late_carried:{start}")
}

impl Ledger {
    pub(super) fn finality(&self) -> Finality {
        let days = |name| super::config::setting(&self.env, name).and_then(|v| v.parse().ok());
        Finality::from_days(days("INVOICE_GRACE_DAYS"), days("BACKDATING_DAYS"))
    }

    /// The final invoice of the period starting at `start`, as stored, byte for byte.
    pub(super) fn final_text(&self, start: i64) -> Result<Option<String>, ApiError> {
        let q = "SELECT invoice FROM finals WHERE period_start = ?";
        Ok(self
            .rows(q, vec![start.into()])?
            .first()
            .map(|r| text(r, 0)))
    }

    pub(super) fn final_invoice(&self, start: i64) -> Result<Option<Invoice>, ApiError> {
        let parse =
            |t: String| serde_json::from_str(&t).map_err(|e| ApiError::internal(e.to_string()));
        self.final_text(start)?.map(parse).transpose()
    }

    /// Finalizes periods in order while each one's grace is over; returns when the next
    /// one is due. A period that is not final yet (its final records have not all come,
    /// or its grace runs) holds back every later one, so credits are always drawn in
    /// period order.
    pub(super) async fn finalize_due(&self, now_ms: i64) -> Result<Option<i64>, ApiError> {
        let finality = self.finality();
        // One period a step: finalizing one changes what the next draws and carries.
        loop {
            let q = "SELECT DISTINCT period_start FROM totals
                     WHERE period_start NOT IN (SELECT period_start FROM finals)";
            let mut open = Vec::new();
            for start in self.rows(q, vec![])?.iter().filter_map(|r| integer(r, 0)) {
                let arrived = self.meta(&final_key(start))?.and_then(|v| v.as_i64());
                open.push((start, arrived));
            }
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
        let customer = self.period_input(start, now_ms)?.account.customer_id;
        let owner = crate::flush::owner_key(&customer, livemode);
        let n = self.allocate_number(start, &owner, livemode).await?;
        if self.final_text(start)?.is_some() {
            return Ok(()); // finalized by another request meanwhile
        }
        let c = self.context(start, now_ms)?;
        let mut invoice = rate(&c.book, &c.account, &c.input)
            .map_err(rating)?
            .finalize();
        invoice.livemode = livemode;
        let prefix = super::config::setting(&self.env, "INVOICE_PREFIX").unwrap_or("EM-".into());
        let prefix = if livemode {
            prefix
        } else {
            format!("{prefix}TEST-")
        };
        invoice.number = Some(invoice_number(&prefix, n));
        let body =
            serde_json::to_string(&invoice).map_err(|e| ApiError::internal(e.to_string()))?;
        let q =
            "INSERT INTO finals (period_start, number, invoice, finalized_ms) VALUES (?, ?, ?, ?)";
        let number = invoice.number.clone().unwrap_or_default();
        let binds = vec![start.into(), number.into(), body.into(), now_ms.into()];
        self.sql.exec(q, binds).map_err(stored)?;
        self.add_billed(start, Charges::own(&invoice))?;
        for a in &c.input.adjustments {
            let carried = Charges {
                net: a.net,
                tax: a.tax,
            };
            self.add_billed(a.period.start_ms, carried)?;
            // The late records it carried are billed now.
            let late = self.late_records(a.period.start_ms)?;
            self.set_meta(&carried_key(a.period.start_ms), &json!(late))?;
        }
        // It and later periods drew on what this one left: rated again when read.
        let q = "DELETE FROM rated WHERE period_start >= ?";
        self.sql.exec(q, vec![start.into()]).map_err(stored)?;
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
        let ask = json!({"owner": owner, "period_start_ms": start});
        let instance = if livemode { "live" } else { "test" };
        let mut resp = call_object(
            &self.env,
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

    /// Records stored for the period after it was final.
    pub(super) fn late_records(&self, start: i64) -> Result<u64, ApiError> {
        Ok(self
            .meta(&late_key(start))?
            .and_then(|v| v.as_u64())
            .unwrap_or(0))
    }

    fn billed(&self, start: i64) -> Result<Charges, ApiError> {
        let q = "SELECT charges FROM billed WHERE period_start = ?";
        let rows = self.rows(q, vec![start.into()])?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&text(r, 0)).ok())
            .unwrap_or_default())
    }

    fn add_billed(&self, start: i64, more: Charges) -> Result<(), ApiError> {
        let sum = self.billed(start)?.plus(more);
        let q = "INSERT INTO billed (period_start, charges) VALUES (?, ?)
                 ON CONFLICT(period_start) DO UPDATE SET charges = excluded.charges";
        let text = serde_json::to_string(&sum).map_err(|e| ApiError::internal(e.to_string()))?;
        self.sql
            .exec(q, vec![start.into(), text.into()])
            .map_err(stored)?;
        Ok(())
    }

    /// Periods not final yet: those with usage, and the one after the latest.
    pub(super) fn open_periods(&self) -> Result<Vec<i64>, ApiError> {
        let q = "SELECT DISTINCT period_start FROM totals WHERE period_start NOT IN (SELECT period_start FROM finals)";
        let mut open: Vec<i64> = self
            .rows(q, vec![])?
            .iter()
            .filter_map(|r| integer(r, 0))
            .collect();
        let latest = self.rows("SELECT MAX(period_end) FROM totals", vec![])?;
        open.extend(latest.first().and_then(|r| integer(r, 0)));
        Ok(open)
    }

    /// The corrections of earlier final periods that land on the period at `start`.
    pub(super) fn adjustments_for(
        &self,
        start: i64,
        now_ms: i64,
    ) -> Result<Vec<Adjustment>, ApiError> {
        let q = "SELECT period_start FROM finals WHERE period_start < ? ORDER BY period_start";
        let finals: Vec<i64> = self
            .rows(q, vec![start.into()])?
            .iter()
            .filter_map(|r| integer(r, 0))
            .collect();
        if finals.is_empty() {
            return Ok(Vec::new());
        }
        let open = self.open_periods()?;
        let mut out = Vec::new();
        for f in finals
            .into_iter()
            .filter(|&f| lands_on(f, &open) == Some(start))
        {
            let Some(billed_invoice) = self.final_invoice(f)? else {
                continue;
            };
            // Late records no final invoice has carried yet are always carried; a
            // changed book or account corrects a final period only inside its window.
            let late_records = self.late_records(f)?;
            let carried = self
                .meta(&carried_key(f))?
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let end = billed_invoice.period.end_ms;
            if !self.finality().corrects(end, late_records, carried, now_ms) {
                continue;
            }
            let mut now = self.period_input(f, now_ms)?;
            // Charges only: credits are drawn where the correction lands. A period that
            // cannot be rated now (its plan left the book, say) corrects nothing rather
            // than blocking every later invoice; it is logged.
            now.account.grants.clear();
            let rated = match rate(&now.book, &now.account, &now.input) {
                Ok(rated) => rated,
                Err(e) => {
                    worker::console_error!("correcting period {f}: {}", rating(e).message);
                    continue;
                }
            };
            if rated.currency != billed_invoice.currency {
                worker::console_error!(
                    "period {f}: the invoice currency changed after it was final; no correction"
                );
                continue;
            }
            let period = Period {
                start_ms: f,
                end_ms: billed_invoice.period.end_ms,
            };
            let since = Since {
                late_records,
                final_under: &billed_invoice.price_book_version,
                rated_under: &now.book.version,
            };
            out.extend(correction(
                period,
                Charges::own(&rated),
                self.billed(f)?,
                since,
            ));
        }
        Ok(out)
    }
}
