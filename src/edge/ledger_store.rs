//! A Ledger shard's batch ingestion in SQLite: what a batch of many customers' records
//! touches is read in a few queries (each binds one JSON array, walked with
//! `json_each`), `crate::ledger::take` decides per customer, and every change is
//! written in one transaction, so a failure leaves nothing half taken.

use super::ledger::{stored, CustomerLedger, Ledger};
use super::sql::{integer, rows, text, transaction, Row};
use super::{config, http};
use crate::error::ApiError;
use crate::finality::Finality;
use crate::flush::{owner_key, UsageRecord};
use crate::ledger::{keys_of, take, Changes, Known, PeriodBook, Total};
use crate::tally::Tally;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Meta key of the instant a period's final records first arrived.
pub(super) fn final_key(start: i64) -> String {
    format!("final_at:{start}")
}

/// Meta key of the count of records stored for a period after it was final.
pub(super) fn late_key(start: i64) -> String {
    format!("late:{start}")
}

/// Meta key of the plan a period's latest record carries, and its sequence.
pub(super) fn plan_key(start: i64) -> String {
    format!("plan:{start}")
}

type Owners = BTreeMap<String, Vec<UsageRecord>>;

/// One customer's part of a batch, as taken.
struct Taken {
    owner: String,
    changes: Changes,
    /// Its book gained a final arrival: its finalization may now be due.
    final_arrived: bool,
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
        records: &[UsageRecord],
        now_ms: i64,
    ) -> Result<worker::Response, ApiError> {
        let mut owners = Owners::new();
        for r in records {
            let owner = owner_key(&r.customer, r.livemode);
            owners.entry(owner).or_default().push(r.clone());
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
            let final_arrived = changes.books.iter().any(|(start, book)| {
                let before = known.books.get(start).and_then(|b| b.final_arrived_ms);
                before.is_none() && book.final_arrived_ms.is_some()
            });
            let owner = owner.clone();
            taken.push(Taken {
                owner,
                changes,
                final_arrived,
            });
        }
        self.write(&taken)?;
        self.after_ingest(&owners, &taken, now_ms).await;
        let answer = json!({"stored": stored_n, "duplicates": duplicates, "refused": refused});
        http::json_response(&answer, 200).map_err(http::internal)
    }

    fn read(&self, q: &str, keys: Vec<Value>) -> Result<Vec<Row>, ApiError> {
        rows(&self.sql, q, vec![Value::Array(keys).to_string().into()]).map_err(stored)
    }

    /// What each customer's ledger holds that the batch touches.
    fn known(&self, owners: &Owners) -> Result<BTreeMap<String, Known>, ApiError> {
        let (mut ids, mut metas, mut periods, mut totals) = (vec![], vec![], vec![], vec![]);
        for (owner, records) in owners {
            let (batch_ids, starts, keys) = keys_of(records);
            ids.extend(batch_ids.into_iter().map(|id| json!([owner, id])));
            for start in starts {
                periods.push(json!([owner, start]));
                for k in [final_key(start), plan_key(start), late_key(start)] {
                    metas.push(json!([owner, k]));
                }
            }
            totals.extend(
                keys.into_iter()
                    .map(|(p, m, model)| json!([owner, p, m, model])),
            );
        }
        let mut known: BTreeMap<String, Known> = BTreeMap::new();
        let q = "SELECT r.customer, r.id FROM json_each(?) j
                 JOIN records r ON r.customer = j.value->>0 AND r.id = j.value->>1";
        for row in self.read(q, ids)? {
            known
                .entry(text(&row, 0))
                .or_default()
                .seen
                .insert(text(&row, 1));
        }
        let q = "SELECT f.customer, f.period_start FROM json_each(?) j
                 JOIN finals f ON f.customer = j.value->>0 AND f.period_start = j.value->>1";
        for row in self.read(q, periods)? {
            let start = integer(&row, 1).unwrap_or_default();
            book(&mut known, &row, start).invoiced = true;
        }
        let q = "SELECT m.customer, m.k, m.v FROM json_each(?) j
                 JOIN meta m ON m.customer = j.value->>0 AND m.k = j.value->>1";
        for row in self.read(q, metas)? {
            let (k, v) = (text(&row, 1), serde_json::from_str::<Value>(&text(&row, 2)));
            let (Some((name, start)), Ok(v)) = (k.split_once(':'), v) else {
                continue;
            };
            let b = book(&mut known, &row, start.parse().unwrap_or_default());
            match name {
                "final_at" => b.final_arrived_ms = v.as_i64(),
                "plan" => {
                    b.plan = Some((
                        v["plan"].as_str().unwrap_or_default().into(),
                        v["seq"].as_u64().unwrap_or(0),
                    ))
                }
                _ => b.late_records = v.as_u64().unwrap_or(0),
            }
        }
        let q = "SELECT t.customer, t.period_start, t.meter, t.model, t.tally, t.final, t.period_end
                 FROM json_each(?) j JOIN totals t ON t.customer = j.value->>0
                 AND t.period_start = j.value->>1 AND t.meter = j.value->>2 AND t.model = j.value->>3";
        for row in self.read(q, totals)? {
            let key = (
                integer(&row, 1).unwrap_or_default(),
                text(&row, 2),
                text(&row, 3),
            );
            let total = Total {
                period_end: integer(&row, 6).unwrap_or_default(),
                tally: Tally::stored(&text(&row, 4)).unwrap_or_default(),
                is_final: integer(&row, 5) == Some(1),
            };
            known
                .entry(text(&row, 0))
                .or_default()
                .totals
                .insert(key, total);
        }
        Ok(known)
    }

    /// Writes every customer's changes in one transaction, and forgets their kept
    /// invoices from the earliest period that got usage on (later periods draw on it).
    fn write(&self, taken: &[Taken]) -> Result<(), ApiError> {
        let (mut records, mut refused, mut totals, mut metas) = (vec![], vec![], vec![], vec![]);
        let (mut test_mode, mut stale) = (vec![], vec![]);
        for Taken { owner, changes, .. } in taken {
            for (id, start) in &changes.stored {
                records.push(json!([owner, id, start]));
            }
            for (id, start, reason) in &changes.refused {
                refused.push(json!([owner, id, start, reason]));
            }
            for ((start, meter, model), t) in &changes.totals {
                let tally = serde_json::to_string(&t.tally).map_err(ApiError::unexpected)?;
                totals.push(json!([
                    owner,
                    start,
                    t.period_end,
                    meter,
                    model,
                    tally,
                    i64::from(t.is_final)
                ]));
            }
            for (start, book) in &changes.books {
                metas.extend(book_rows(owner, *start, book));
            }
            if changes.test_mode {
                test_mode.push(json!([owner, "livemode", "false"]));
            }
            if let Some(first) = changes.stored.iter().map(|(_, start)| start).min() {
                stale.push(json!([owner, first]));
            }
        }
        let statements = [
            ("INSERT OR IGNORE INTO records (customer, id, period_start)
              SELECT value->>0, value->>1, value->>2 FROM json_each(?)", records),
            ("INSERT OR IGNORE INTO refused (customer, id, period_start, reason)
              SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)", refused),
            ("INSERT INTO totals (customer, period_start, period_end, meter, model, tally, final)
              SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6
              FROM json_each(?) WHERE true ON CONFLICT(customer, period_start, meter, model)
              DO UPDATE SET tally = excluded.tally, period_end = excluded.period_end,
              final = MAX(final, excluded.final)", totals),
            ("INSERT INTO meta (customer, k, v) SELECT value->>0, value->>1, value->>2
              FROM json_each(?) WHERE true ON CONFLICT(customer, k) DO UPDATE SET v = excluded.v", metas),
            ("INSERT OR IGNORE INTO meta (customer, k, v)
              SELECT value->>0, value->>1, value->>2 FROM json_each(?)", test_mode),
            ("DELETE FROM rated WHERE rowid IN (SELECT r.rowid FROM json_each(?) j
              JOIN rated r ON r.customer = j.value->>0 AND r.period_start >= j.value->>1)", stale),
        ];
        let statements: Vec<(&str, String)> = statements
            .into_iter()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(q, rows)| (q, Value::Array(rows).to_string()))
            .collect();
        transaction(&self.state, &statements).map_err(stored)
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
        for t in taken {
            let customer = CustomerLedger {
                shard: self,
                owner: &t.owner,
            };
            if t.final_arrived {
                customer.after_change(now_ms).await;
            } else if news.contains(&t.owner) {
                customer.tell_credit_state(now_ms).await;
            }
        }
    }

    /// The batch's customers with an account whose counter may need to hear of their
    /// credits (`crate::ledger::account::may_need_news`), under their account's plan
    /// or a plan their records carry; read in one query.
    fn may_need_credit_news(&self, owners: &Owners) -> Result<BTreeSet<String>, ApiError> {
        let book = config::price_book(&self.env)?;
        let blocks = |plan: &str| {
            book.plans
                .get(plan)
                .is_some_and(|p| p.block_when_credits_exhausted)
        };
        let q = "SELECT m.customer, m.k, CASE m.k WHEN 'account' THEN m.v->>'$.plan' ELSE m.v END
                 FROM json_each(?) j JOIN meta m ON m.customer = j.value AND m.k IN ('account', 'blocked')";
        let keys = owners.keys().map(|o| json!(o)).collect();
        // Without an account there is nothing to tell; with one, news may be needed
        // on a blocking plan or after the counter was told usage is blocked.
        let (mut accounts, mut needs) = (BTreeSet::new(), BTreeSet::new());
        for row in self.read(q, keys)? {
            let (owner, k, v) = (text(&row, 0), text(&row, 1), text(&row, 2));
            if (k == "account" && blocks(&v)) || (k == "blocked" && v == "true") {
                needs.insert(owner.clone());
            }
            if k == "account" {
                accounts.insert(owner);
            }
        }
        let carries_blocking = |o: &String| owners[o].iter().any(|r| blocks(&r.plan));
        Ok(accounts
            .into_iter()
            .filter(|o| needs.contains(o) || carries_blocking(o))
            .collect())
    }
}

/// The book of the row's customer (column 0) for the period at `start`.
fn book<'a>(known: &'a mut BTreeMap<String, Known>, row: &Row, start: i64) -> &'a mut PeriodBook {
    let k = known.entry(text(row, 0)).or_default();
    k.books.entry(start).or_default()
}

/// A period book as meta rows: what it has set (nothing is ever unset).
fn book_rows(owner: &str, start: i64, book: &PeriodBook) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(at) = book.final_arrived_ms {
        out.push(json!([owner, final_key(start), json!(at).to_string()]));
    }
    if let Some((plan, seq)) = &book.plan {
        let v = json!({"plan": plan, "seq": seq}).to_string();
        out.push(json!([owner, plan_key(start), v]));
    }
    if book.late_records > 0 {
        out.push(json!([
            owner,
            late_key(start),
            json!(book.late_records).to_string()
        ]));
    }
    out
}
