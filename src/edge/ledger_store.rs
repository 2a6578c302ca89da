//! A Ledger shard's batch ingestion in SQLite: what a batch of many customers' records
//! touches is read in a few queries (each binds one JSON array, walked with
//! `json_each`, and answers one JSON array), `crate::ledger::take` decides per
//! customer, and every change is written in one transaction, so a failure leaves
//! nothing half taken.

use super::ledger::{stored, CustomerLedger, Ledger};
use super::sql::{json_rows, transaction};
use super::{config, http};
use crate::error::ApiError;
use crate::finality::Finality;
use crate::flush::{owner_key, UsageRecord};
use crate::ledger::{keys_of, take, Changes, Known, Total};
use crate::tally::Tally;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

type Owners = BTreeMap<String, Vec<UsageRecord>>;

/// One customer's part of a batch, as taken: its owner key and what to write.
type Taken = (String, Changes);

/// A statement's one parameter: its rows as a JSON array.
fn rows_json<T: Serialize>(rows: &[T]) -> Result<String, ApiError> {
    serde_json::to_string(rows).map_err(ApiError::unexpected)
}

impl Ledger {
    pub(super) fn finality(&self) -> Finality {
        let days = |name| config::setting(&self.env, name).and_then(|v| v.parse().ok());
        Finality::from_days(days("INVOICE_GRACE_DAYS"), days("BACKDATING_DAYS"))
    }

    /// Takes a batch of its customers' records; then finalizes what that made due and
    /// tells counters whose credits may have run out.
    pub(super) async fn ingest(
        &self,
        records: Vec<UsageRecord>,
        now_ms: i64,
    ) -> Result<worker::Response, ApiError> {
        let mut owners = Owners::new();
        for r in records {
            owners
                .entry(owner_key(&r.customer, r.livemode))
                .or_default()
                .push(r);
        }
        let mut known = self.known(&owners)?;
        let finality = self.finality();
        let (mut stored_n, mut duplicates, mut refused) = (0, 0, Vec::new());
        let mut taken = Vec::new();
        for (owner, records) in &owners {
            let known = known.remove(owner).unwrap_or_default();
            let (out, changes) = take(&known, records, &finality, now_ms);
            (stored_n, duplicates) = (stored_n + out.stored, duplicates + out.duplicates);
            refused.extend(out.refused);
            taken.push((owner.clone(), changes));
        }
        self.write(&taken)?;
        self.after_ingest(&owners, &taken, now_ms).await;
        let answer = json!({"stored": stored_n, "duplicates": duplicates, "refused": refused});
        http::json_response(&answer, 200).map_err(http::internal)
    }

    /// The rows of `q` (a `json_group_array` of rows, `sql::json_rows`) for `keys`,
    /// bound as one JSON array.
    fn read<K: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        q: &str,
        keys: &[K],
    ) -> Result<Vec<T>, ApiError> {
        json_rows(&self.sql, q, vec![rows_json(keys)?.into()]).map_err(stored)
    }

    /// What each customer's ledger holds that the batch touches.
    fn known(&self, owners: &Owners) -> Result<BTreeMap<String, Known>, ApiError> {
        let (mut ids, mut periods, mut totals) = (vec![], vec![], vec![]);
        for (owner, records) in owners {
            let (batch_ids, starts, keys) = keys_of(records);
            ids.extend(batch_ids.into_iter().map(|id| (owner, id)));
            periods.extend(starts.into_iter().map(|start| (owner, start)));
            totals.extend(keys.into_iter().map(|(p, m, model)| (owner, p, m, model)));
        }
        let mut known: BTreeMap<String, Known> = BTreeMap::new();
        let q = "SELECT json_group_array(json_array(r.customer, r.id)) FROM json_each(?) j
                 JOIN records r ON r.customer = j.value->>0 AND r.id = j.value->>1";
        for (owner, id) in self.read::<_, (String, String)>(q, &ids)? {
            known.entry(owner).or_default().seen.insert(id);
        }
        let q = "SELECT json_group_array(json_array(j.value->>0, j.value->>1, p.final_at, p.plan,
                 p.plan_seq, coalesce(p.late, 0), f.period_start IS NOT NULL)) FROM json_each(?) j
                 LEFT JOIN periods p ON p.customer = j.value->>0 AND p.period_start = j.value->>1
                 LEFT JOIN finals f ON f.customer = j.value->>0 AND f.period_start = j.value->>1
                 WHERE p.customer IS NOT NULL OR f.customer IS NOT NULL";
        type BookRow = (
            String,
            i64,
            Option<i64>,
            Option<String>,
            Option<u64>,
            u64,
            u8,
        );
        for (owner, start, final_at, plan, seq, late, invoiced) in
            self.read::<_, BookRow>(q, &periods)?
        {
            let book = known
                .entry(owner)
                .or_default()
                .books
                .entry(start)
                .or_default();
            book.final_arrived_ms = final_at;
            book.plan = plan.map(|plan| (plan, seq.unwrap_or(0)));
            book.late_records = late;
            book.invoiced = invoiced == 1;
        }
        // The tally is embedded as the object it is (`json`), not as a string to unescape;
        // these rows are only ever written as `Tally::stored_json` (never the older
        // whole-seconds form `Tally::stored` also reads).
        let q = "SELECT json_group_array(json_array(t.customer, t.period_start, t.meter, t.model,
                 json(t.tally), t.final, t.period_end)) FROM json_each(?) j JOIN totals t
                 ON t.customer = j.value->>0 AND t.period_start = j.value->>1
                 AND t.meter = j.value->>2 AND t.model = j.value->>3";
        type TotalRow = (String, i64, String, String, Tally, u8, i64);
        for (owner, start, meter, model, tally, is_final, end) in
            self.read::<_, TotalRow>(q, &totals)?
        {
            let total = Total {
                period_end: end,
                tally,
                is_final: is_final == 1,
            };
            let totals = &mut known.entry(owner).or_default().totals;
            totals.insert((start, meter, model), total);
        }
        Ok(known)
    }

    /// Writes every customer's changes in one transaction, and forgets their kept
    /// invoices from the earliest period that got usage on (later periods draw on it).
    fn write(&self, taken: &[Taken]) -> Result<(), ApiError> {
        let (mut records, mut refused, mut totals, mut books) = (vec![], vec![], vec![], vec![]);
        let (mut test_mode, mut stale) = (vec![], vec![]);
        for (owner, changes) in taken {
            records.extend(changes.stored.iter().map(|(id, start)| (owner, id, start)));
            refused.extend(
                changes
                    .refused
                    .iter()
                    .map(|(id, start, why)| (owner, id, start, why)),
            );
            for ((start, meter, model), t) in &changes.totals {
                // Sent as its stored form's text: `->>` of a string is the string, where
                // an object would be written out again.
                totals.push((
                    owner,
                    start,
                    t.period_end,
                    meter,
                    model,
                    t.tally.stored_json(),
                    u8::from(t.is_final),
                ));
            }
            for (start, b) in &changes.books {
                let (plan, seq) = b
                    .plan
                    .as_ref()
                    .map(|(p, s)| (Some(p), Some(s)))
                    .unwrap_or_default();
                books.push((owner, start, b.final_arrived_ms, plan, seq, b.late_records));
            }
            if changes.test_mode {
                test_mode.push((owner, "livemode", "false"));
            }
            if let Some(first) = changes.stored.iter().map(|(_, start)| start).min() {
                stale.push((owner, first));
            }
        }
        let statements = [
            ("INSERT OR IGNORE INTO records (customer, id, period_start)
              SELECT value->>0, value->>1, value->>2 FROM json_each(?)", rows_json(&records)?),
            ("INSERT OR IGNORE INTO refused (customer, id, period_start, reason)
              SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)", rows_json(&refused)?),
            ("INSERT INTO totals (customer, period_start, period_end, meter, model, tally, final)
              SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6
              FROM json_each(?) WHERE true ON CONFLICT(customer, period_start, meter, model)
              DO UPDATE SET tally = excluded.tally, period_end = excluded.period_end,
              final = MAX(final, excluded.final)", rows_json(&totals)?),
            // A book in the changes is the whole book as it is now.
            ("INSERT INTO periods (customer, period_start, final_at, plan, plan_seq, late)
              SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5
              FROM json_each(?) WHERE true ON CONFLICT(customer, period_start) DO UPDATE SET
              final_at = excluded.final_at, plan = excluded.plan, plan_seq = excluded.plan_seq,
              late = excluded.late", rows_json(&books)?),
            ("INSERT OR IGNORE INTO meta (customer, k, v)
              SELECT value->>0, value->>1, value->>2 FROM json_each(?)", rows_json(&test_mode)?),
            ("DELETE FROM rated WHERE rowid IN (SELECT r.rowid FROM json_each(?) j
              JOIN rated r ON r.customer = j.value->>0 AND r.period_start >= j.value->>1)", rows_json(&stale)?),
        ];
        // A statement with no rows is not run.
        let run: Vec<(&str, String)> = statements
            .into_iter()
            .filter(|(_, rows)| rows != "[]")
            .collect();
        transaction(&self.state, &run).map_err(stored)
    }

    /// Finalizes for the customers whose final records just arrived (which sets their
    /// alarm), and tells counters on a plan that blocks when credits run out.
    async fn after_ingest(&self, owners: &Owners, taken: &[Taken], now_ms: i64) {
        let news = match self.may_need_credit_news(owners) {
            Ok(news) => news,
            Err(e) => {
                worker::console_error!("credit state: {}", e.message);
                BTreeSet::new()
            }
        };
        for (owner, changes) in taken {
            let customer = CustomerLedger { shard: self, owner };
            if changes.final_arrived {
                customer.after_change(now_ms).await;
            } else if news.contains(owner) {
                customer.tell_credit_state(now_ms).await;
            }
        }
    }

    /// The batch's customers whose counter may need to hear of their credits: those
    /// the credit watch holds (`CustomerLedger::watch_credits`), and those whose
    /// records carry a plan that blocks when credits run out.
    fn may_need_credit_news(&self, owners: &Owners) -> Result<BTreeSet<String>, ApiError> {
        let book = config::price_book(&self.env)?;
        let blocks = |plan: &str| {
            book.plans
                .get(plan)
                .is_some_and(|p| p.block_when_credits_exhausted)
        };
        let q = "SELECT json_group_array(w.customer) FROM json_each(?) j
                 JOIN credit_watch w ON w.customer = j.value";
        let keys: Vec<&String> = owners.keys().collect();
        let mut needs: BTreeSet<String> = self.read::<_, String>(q, &keys)?.into_iter().collect();
        for (owner, records) in owners {
            if records.iter().any(|r| blocks(&r.plan)) {
                needs.insert(owner.clone());
            }
        }
        Ok(needs)
    }
}
