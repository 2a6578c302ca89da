//! What a shard sets aside instead of sending (dead letters, counted in the admin
//! API): batches the receiver refused for good, outbox rows that no longer parse, and,
//! for Lago, records of customers without a subscription. A requeue sends the refused
//! batches again byte for byte and puts the unmapped records back to wait; unreadable
//! rows stay for an operator.

use super::config;
use super::delivery::{deliver, render_batch, Receiver, Rendered};
use super::flush_shard::FlushShard;
use super::outbox_store::{ACKNOWLEDGED, KEPT_ASIDE, UNREADABLE, WAITING};
use super::sql::text;
use crate::flush::delivery::{requeued, split_unmapped, Requeued};
use crate::flush::{requeue_home, Batch, Format, UsageRecord};
use serde_json::json;
use worker::{Result, SqlStorageValue};

/// The content type of records set aside because Lago has no subscription for their
/// customer; a requeue puts them back to wait, to be rendered with the mapping.
const UNMAPPED: &str = "application/x-edgemeter-unmapped-customer";

impl FlushShard {
    /// For Lago, the records of customers without a subscription in the catalog: kept
    /// aside (counted as dead letters, with why), never sent under a wrong id.
    pub(super) fn set_aside_unmapped(
        &self,
        receiver: &Receiver,
        waiting: Vec<(String, Vec<UsageRecord>)>,
        now_ms: i64,
    ) -> Result<Vec<(String, Vec<UsageRecord>)>> {
        if receiver.format != Format::Lago {
            return Ok(waiting);
        }
        let (mapped, unmapped) = split_unmapped(waiting, &receiver.subscriptions);
        for (customer, records) in unmapped {
            let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
            let rendered = Rendered {
                batch_id: format!("unmapped-{}", ids.first().unwrap_or(&"")),
                content_type: UNMAPPED.to_string(),
                body: serde_json::to_vec(&records).unwrap_or_default(),
            };
            let why = format!("customer `{customer}` has no Lago subscription: add it to the catalog's `subscriptions`, then requeue");
            self.keep_aside(
                &rendered,
                &ids,
                std::slice::from_ref(&customer),
                &why,
                now_ms,
            )?;
        }
        Ok(mapped)
    }

    /// The records a receiver refused one by one inside its 2xx: each kept aside alone,
    /// with its reason, rendered as it would be sent again.
    pub(super) fn set_aside_refused(
        &self,
        receiver: &Receiver,
        refused: &[(UsageRecord, String)],
        now_ms: i64,
    ) -> Result<()> {
        for (record, why) in refused {
            let alone = Batch::new(vec![record.clone()]);
            let rendered = render_batch(receiver, &alone, now_ms);
            let customer = std::slice::from_ref(&record.customer);
            self.keep_aside(&rendered, &[record.id.as_str()], customer, why, now_ms)?;
        }
        Ok(())
    }

    /// A batch the receiver refused for good: kept with its exact body, to be requeued.
    pub(super) fn keep_aside(
        &self,
        r: &Rendered,
        ids: &[&str],
        customers: &[String],
        error: &str,
        now_ms: i64,
    ) -> Result<()> {
        let q = "INSERT OR REPLACE INTO dead (batch_id, customers, record_ids, records, content_type, body, error, created_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let binds: Vec<SqlStorageValue> = vec![
            r.batch_id.as_str().into(),
            customers.join(",").into(),
            serde_json::to_string(&ids).unwrap_or_default().into(),
            (ids.len() as i64).into(),
            r.content_type.as_str().into(),
            body.into(),
            error.into(),
            now_ms.into(),
        ];
        super::sql::exec(&self.sql, q, binds)?;
        self.mark_ids(ids, KEPT_ASIDE, now_ms)
    }

    /// Sends the dead letters again, exactly as first rendered; delivered ones are
    /// removed and their records count as acknowledged.
    pub(super) async fn requeue(&self, now_ms: i64) -> Result<serde_json::Value> {
        let configured = Receiver::from_env(&self.env).map_err(worker::Error::RustError)?;
        let route = config::test_usage_route(&self.env);
        let home = Receiver::internal(configured.secret.clone());
        // An unreadable row cannot be sent; it stays for an operator to look at.
        let q = "SELECT batch_id, content_type, body, record_ids, customers FROM dead WHERE content_type != ?";
        let rows = self.rows(q, vec![UNREADABLE.into()])?;
        let mut delivered = 0;
        for row in &rows {
            // A letter of test usage only goes back where it was sent: to the built-in
            // ledger, unless test usage is exported.
            let owners = text(row, 4);
            let owners: Vec<&str> = owners.split(',').collect();
            let home_bound = requeue_home(&owners, route.receiver_is_internal, route.export_test);
            let receiver = match home_bound {
                true => &home,
                false => &configured,
            };
            let rendered = Rendered {
                batch_id: text(row, 0),
                content_type: text(row, 1),
                body: text(row, 2).into_bytes(),
            };
            let ids: Vec<String> = serde_json::from_str(&text(row, 3)).unwrap_or_default();
            let letter = rendered.batch_id.as_str();
            if rendered.content_type == UNMAPPED {
                // Back to wait: the next run renders them with the catalog's mapping.
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                self.mark_ids(&ids, WAITING, now_ms)?;
                let q = "DELETE FROM dead WHERE batch_id = ?";
                super::sql::exec(&self.sql, q, vec![letter.into()])?;
                continue;
            }
            match requeued(&ids, deliver(&self.env, receiver, &rendered).await) {
                Requeued::Delivered { acknowledged } => {
                    let q = "DELETE FROM dead WHERE batch_id = ?";
                    super::sql::exec(&self.sql, q, vec![letter.into()])?;
                    let acknowledged: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
                    self.mark_ids(&acknowledged, ACKNOWLEDGED, now_ms)?;
                    delivered += 1;
                }
                Requeued::Shrunk {
                    acknowledged,
                    kept,
                    why,
                } => {
                    let acknowledged: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
                    self.mark_ids(&acknowledged, ACKNOWLEDGED, now_ms)?;
                    let q =
                        "UPDATE dead SET error = ?, record_ids = ?, records = ? WHERE batch_id = ?";
                    let binds: Vec<SqlStorageValue> = vec![
                        why.into(),
                        serde_json::to_string(&kept).unwrap_or_default().into(),
                        (kept.len() as i64).into(),
                        letter.into(),
                    ];
                    super::sql::exec(&self.sql, q, binds)?;
                }
                Requeued::Failed(why) => {
                    let q = "UPDATE dead SET error = ? WHERE batch_id = ?";
                    super::sql::exec(&self.sql, q, vec![why.into(), letter.into()])?;
                }
            }
        }
        Ok(json!({"dead_letters": rows.len(), "delivered": delivered}))
    }
}
