//! The fleet's reconciliation, added up through the flush shards: each shard knows the
//! customers that ever pushed to it, asks each one's Ledger for its report of the
//! period containing an instant, and adds them up (`crate::reconcile::FleetSummary`);
//! the admin API adds up the shards.

use super::client::{call_object, SHARD_BINDING};
use super::flush_shard::FlushShard;
use super::rating_api::LEDGER_BINDING;
use super::sql::{integer, text};
use crate::error::ApiError;
use crate::flush::owner_key;
use crate::reconcile::{FleetSummary, Report};
use futures_util::StreamExt;
use serde_json::json;
use worker::{Env, Method, Result};

/// Ledger calls one shard has in flight at once while reconciling.
const AT_ONCE: usize = 8;

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
        self.sql.exec(q, binds)?;
        Ok(())
    }

    /// This shard's customers' reports of the period containing `at_ms`, added up.
    pub(super) async fn reconcile(&self, at_ms: i64) -> Result<FleetSummary> {
        let rows = self.rows(
            "SELECT customer, livemode FROM customers ORDER BY owner",
            vec![],
        )?;
        let env = &self.env;
        let asks = rows.iter().map(|r| {
            let (customer, livemode) = (text(r, 0), integer(r, 1) != Some(0));
            async move {
                let owner = owner_key(&customer, livemode);
                let ask = json!({"customer": customer, "livemode": livemode, "at_ms": at_ms});
                (owner.clone(), ledger_report(env, &owner, &ask).await)
            }
        });
        let answers: Vec<(String, std::result::Result<Report, ApiError>)> =
            futures_util::stream::iter(asks)
                .buffer_unordered(AT_ONCE)
                .collect()
                .await;
        let mut summary = FleetSummary::default();
        for (owner, answer) in answers {
            match answer {
                Ok(report) => summary.add(&report),
                Err(e) => summary.fail(&owner, e.message),
            }
        }
        Ok(summary)
    }
}

async fn ledger_report(
    env: &Env,
    owner: &str,
    ask: &serde_json::Value,
) -> std::result::Result<Report, ApiError> {
    let mut resp = call_object(
        env,
        LEDGER_BINDING,
        owner,
        Method::Post,
        "/reconcile",
        Some(ask),
    )
    .await?;
    if resp.status_code() >= 300 {
        let text = resp.text().await.unwrap_or_default();
        return Err(ApiError::unavailable(format!(
            "answered {}: {text}",
            resp.status_code()
        )));
    }
    resp.json().await.map_err(super::http::internal)
}

/// Every shard's summary of the period containing `at_ms`, added up.
pub async fn fleet(env: &Env, shards: u32, at_ms: i64) -> FleetSummary {
    let asks = (0..shards).map(|i| async move {
        let name = format!("shard-{i}");
        let answer = call_object(
            env,
            SHARD_BINDING,
            &name,
            Method::Post,
            "/reconcile",
            Some(&at_ms),
        )
        .await;
        let summary = match answer {
            Ok(mut r) if r.status_code() < 300 => {
                r.json::<FleetSummary>().await.map_err(|e| e.to_string())
            }
            Ok(r) => Err(format!("answered {}", r.status_code())),
            Err(e) => Err(e.message),
        };
        (name, summary)
    });
    let mut fleet = FleetSummary::default();
    for (name, summary) in futures_util::future::join_all(asks).await {
        match summary {
            Ok(s) => fleet.merge(s),
            Err(why) => fleet.fail(&name, why),
        }
    }
    fleet
}
