//! The fleet's reconciliation, added up through the flush shards: each shard knows the
//! customers that pushed to it (since it kept a list), asks each one's Ledger for its
//! report of the period containing an instant, a page at a time, and adds them up
//! (`crate::reconcile::FleetSummary`); the admin API adds up the shards.

use super::client::{call_object, SHARD_BINDING};
use super::flush_shard::FlushShard;
use super::rating_api::ledger;
use super::sql::{integer, text};
use crate::error::ApiError;
use crate::flush::owner_key;
use crate::limits::{RECONCILE_AT_ONCE, RECONCILE_PAGE};
use crate::protocol::{FleetPage, LedgerAsk, ShardCall};
use crate::reconcile::{FleetSummary, Report};
use futures_util::StreamExt;
use worker::{Env, Method, Result};

impl FlushShard {
    /// Remembers a customer (of a mode) that pushed here, for the fleet summary.
    pub(super) fn remember(&self, customer: &str, livemode: bool, now_ms: i64) -> Result<()> {
        let q = "INSERT INTO customers (owner, customer, livemode, last_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT(owner) DO UPDATE SET last_ms = excluded.last_ms";
        let owner = owner_key(customer, livemode);
        let binds = vec![
            owner.into(),
            customer.into(),
            i64::from(livemode).into(),
            now_ms.into(),
        ];
        super::sql::exec(&self.sql, q, binds)?;
        Ok(())
    }

    /// One page of this shard's customers' reports of the period containing `at_ms`
    /// (those after `after`, at most [`RECONCILE_PAGE`]), added up as they come; and the last
    /// customer of the page when more may follow.
    pub(super) async fn reconcile(
        &self,
        ask: &FleetPage,
    ) -> Result<(FleetSummary, Option<String>)> {
        let q = "SELECT owner, customer, livemode FROM customers WHERE owner > ? ORDER BY owner LIMIT ?";
        let binds = vec![ask.after.as_str().into(), (RECONCILE_PAGE as i64).into()];
        let rows = self.rows(q, binds)?;
        let more = (rows.len() == RECONCILE_PAGE)
            .then(|| rows.last().map(|r| text(r, 0)))
            .flatten();
        let (env, at_ms) = (&self.env, ask.at_ms);
        let asks = rows.iter().map(|r| {
            let (owner, customer, livemode) = (text(r, 0), text(r, 1), integer(r, 2) != Some(0));
            async move {
                let ask = LedgerAsk::Reconcile {
                    customer,
                    livemode,
                    at_ms,
                };
                let answer = ledger_report(env, &owner, ask).await;
                (owner, answer)
            }
        });
        let mut answers = futures_util::stream::iter(asks).buffer_unordered(RECONCILE_AT_ONCE);
        let mut summary = FleetSummary::default();
        while let Some((owner, answer)) = answers.next().await {
            match answer {
                Ok(report) => summary.add(&report),
                Err(e) => summary.fail(&owner, e.message),
            }
        }
        Ok((summary, more))
    }
}

async fn ledger_report(
    env: &Env,
    owner: &str,
    ask: LedgerAsk,
) -> std::result::Result<Report, ApiError> {
    let mut resp = ledger(env, owner, ask).await?;
    if resp.status_code() >= 300 {
        let text = resp.text().await.unwrap_or_default();
        return Err(ApiError::unavailable(format!(
            "answered {}: {text}",
            resp.status_code()
        )));
    }
    resp.json().await.map_err(super::http::internal)
}

/// Every shard's summary of the period containing `at_ms`, added up page by page.
pub async fn fleet(env: &Env, shards: u32, at_ms: i64) -> FleetSummary {
    let asks = (0..shards).map(|i| shard_summary(env, format!("shard-{i}"), at_ms));
    let mut fleet = FleetSummary::default();
    for summary in futures_util::future::join_all(asks).await {
        fleet.merge(summary);
    }
    fleet
}

/// One shard's summary, asked for a page at a time.
async fn shard_summary(env: &Env, name: String, at_ms: i64) -> FleetSummary {
    let mut total = FleetSummary::default();
    let mut page = FleetPage {
        at_ms,
        after: String::new(),
    };
    loop {
        let call = ShardCall::Reconcile(page.clone());
        let answer = call_object(env, SHARD_BINDING, &name, Method::Post, "/", Some(&call)).await;
        let read = match answer {
            Ok(mut r) if r.status_code() < 300 => r
                .json::<(FleetSummary, Option<String>)>()
                .await
                .map_err(|e| e.to_string()),
            Ok(mut r) => {
                let text = r.text().await.unwrap_or_default();
                Err(format!("answered {}: {text}", r.status_code()))
            }
            Err(e) => Err(e.message),
        };
        match read {
            Ok((summary, more)) => {
                total.merge(summary);
                match more {
                    Some(after) => page.after = after,
                    None => return total,
                }
            }
            Err(why) => {
                total.fail(&name, why);
                return total;
            }
        }
    }
}
