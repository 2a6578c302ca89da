//! The counter's push, its half of a flush. After a settlement (at most once per
//! `FLUSH_PUSH_MS`, the rest coalesced by an alarm) the counter takes a frozen snapshot
//! of what is new, pushes every record still unacknowledged to the customer's registry
//! shard, and learns from the shard's answer which records the receiver has
//! acknowledged. Only those move the flushed watermark. The cron run then reads the
//! shards alone, however many counters changed.

use super::counter::{stored, UsageCounter};
use super::{client, config, http};
use crate::error::ApiError;
use crate::flush::snapshot::{is_clean, Stamp};
use crate::flush::wake::{after_settle, next_alarm, AfterPush, AfterSettle};
use crate::flush::{shard_for, UsageRecord};
use crate::protocol::{ShardCall, ShardPush};
use crate::reconcile::{as_stored, counter_period, CounterRow, CounterView};
use serde_json::json;
use worker::{Method, Response};

type Answer = std::result::Result<Response, ApiError>;

/// What one push did.
struct Pushed {
    taken: usize,
    sent: usize,
    acknowledged: usize,
    in_flight: usize,
    clean: bool,
    after: AfterPush,
}

impl UsageCounter {
    /// After a settlement: pushes at once, or, within `FLUSH_PUSH_MS` of the last push
    /// (or while one is on its way), makes sure an alarm pushes when the interval is
    /// over. Does nothing when flushing is off.
    pub(super) async fn schedule_push(&self, now_ms: i64) {
        if config::flush_shards(&self.env).is_none() {
            return;
        }
        let interval = config::push_interval_ms(&self.env);
        let Ok(clock) = self.clock() else {
            return;
        };
        match after_settle(now_ms, clock, interval, self.pushing.get()) {
            AfterSettle::AlarmAt(at) => self.ensure_alarm(at).await,
            AfterSettle::PushNow => {
                if let Err(e) = self.push(now_ms).await {
                    worker::console_error!("flush push: {}", e.message);
                }
            }
        }
    }

    /// Takes what is new, pushes every unacknowledged record to the shard, learns which
    /// the receiver acknowledged, and sets the alarm the outcome calls for: a retry
    /// (doubling), the changes that came meanwhile, or the period's final records.
    pub(super) async fn push(
        &self,
        now_ms: i64,
    ) -> std::result::Result<serde_json::Value, ApiError> {
        let Some(shards) = config::flush_shards(&self.env) else {
            return Ok(json!({"enabled": false}));
        };
        if self.pushing.replace(true) {
            return Ok(json!({"skipped": "a push is already in progress"}));
        }
        let pushed = self.push_once(now_ms, shards).await;
        self.pushing.set(false);
        let (answer, after) = match pushed {
            Ok(p) => (
                Ok(
                    json!({"taken": p.taken, "sent": p.sent, "acknowledged": p.acknowledged,
                    "in_flight": p.in_flight, "clean": p.clean}),
                ),
                p.after,
            ),
            Err(e) => (Err(e), self.push_failed(now_ms)?),
        };
        if let Some(at) = next_alarm(after, config::push_interval_ms(&self.env)) {
            self.ensure_alarm(at).await;
        }
        answer
    }

    /// Counts a failed push, for the retry's doubling wait.
    fn push_failed(&self, now_ms: i64) -> std::result::Result<AfterPush, ApiError> {
        self.with(now_ms, |l| {
            let mut f = self.store.push_state().map_err(stored)?;
            f.failed(now_ms);
            self.store.save_push_state(&f).map_err(stored)?;
            self.remember_push(now_ms);
            let rows = self.store.flush_rows().map_err(stored)?;
            let (seq, end) = (l.state.seq, l.state.period.end_ms);
            Ok(f.after(seq, &rows, end, l.state.next_deadline(), now_ms))
        })
    }

    async fn push_once(&self, now_ms: i64, shards: u32) -> std::result::Result<Pushed, ApiError> {
        let (customer, taken) = self.with(now_ms, |l| {
            l.state.roll(now_ms);
            let mut f = self.store.push_state().map_err(stored)?;
            let rows = self.store.flush_rows().map_err(stored)?;
            let stamp = Stamp {
                customer: l.customer.id.clone(),
                plan: l.customer.plan.clone(),
                livemode: l.customer.livemode,
            };
            // A period with reservations still in flight is not complete: no final yet.
            let complete_before = l.state.complete_before();
            let taken = f.take_new(&stamp, &rows, l.state.seq, complete_before, now_ms);
            self.store.save_push_state(&f).map_err(stored)?;
            Ok((l.customer.id.clone(), taken))
        })?;
        let acknowledged = match taken.records.is_empty() {
            true => Vec::new(),
            false => {
                self.push_to_shard(&customer, &taken.records, shards)
                    .await?
            }
        };
        self.with(now_ms, |l| {
            let mut f = self.store.push_state().map_err(stored)?;
            let rows = self.store.flush_rows().map_err(stored)?;
            let applied = f.acknowledged(&rows, &acknowledged, &taken, now_ms);
            self.store.save_flushed(&applied.rows).map_err(stored)?;
            self.store.save_push_state(&f).map_err(stored)?;
            self.remember_push(now_ms);
            // An acknowledgement changes the rows (and may close some): read them again.
            let rows = match applied.acked {
                0 => rows,
                _ => self.store.flush_rows().map_err(stored)?,
            };
            let complete_before = l.state.complete_before();
            let end = l.state.period.end_ms;
            Ok(Pushed {
                taken: taken.new,
                sent: taken.records.len(),
                acknowledged: applied.acked,
                in_flight: f.pending.len(),
                clean: f.pending.is_empty() && is_clean(&rows, complete_before),
                after: f.after(l.state.seq, &rows, end, l.state.next_deadline(), now_ms),
            })
        })
    }

    /// Hands the records to the shard, which keeps them until the receiver acknowledges
    /// them; answers the ids among them the receiver has acknowledged.
    async fn push_to_shard(
        &self,
        customer: &str,
        records: &[UsageRecord],
        shards: u32,
    ) -> std::result::Result<Vec<String>, ApiError> {
        let shard = format!("shard-{}", shard_for(customer, shards));
        let call = ShardCall::Push(ShardPush::of(customer, records));
        let mut resp = client::call_object(
            &self.env,
            client::SHARD_BINDING,
            &shard,
            Method::Post,
            "/",
            Some(&call),
        )
        .await?;
        if resp.status_code() >= 300 {
            let text = resp.text().await.unwrap_or_default();
            return Err(ApiError::unavailable(format!(
                "{shard} answered {}: {text}",
                resp.status_code()
            )));
        }
        let v: serde_json::Value = resp.json().await.map_err(http::internal)?;
        serde_json::from_value(v["acknowledged"].clone())
            .map_err(|e| ApiError::internal(format!("{shard} answered badly: {e}")).caused_by(e))
    }

    /// Where this counter's flush stands (`GET /admin/v1/customers/{id}/flush`).
    pub(super) fn push_view(&self, now_ms: i64) -> Answer {
        let view = self.with(now_ms, |l| {
            let f = self.store.push_state().map_err(stored)?;
            Ok(json!({"seq": l.state.seq, "taken_seq": f.taken_seq,
                "pushed_seq": f.pushed_seq, "flushed_seq": f.flushed_seq,
                "in_flight": f.pending.len(), "last_push_ms": f.last_push_ms,
                "alarm_ms": f.alarm_ms, "failures": f.failures}))
        })?;
        http::json_response(&view, 200).map_err(http::internal)
    }

    /// The counter's side of the period containing `at_ms`, for reconciliation: its
    /// rows and the records of that period it holds unacknowledged.
    pub(super) fn reconcile_view(&self, at_ms: i64, now_ms: i64) -> Answer {
        let view = self.with(now_ms, |l| {
            let current = l.state.period;
            let anchor = l.state.anchor_day;
            let period = counter_period(current, anchor, at_ms, |at| {
                self.store.period_start_at(at).map_err(stored)
            })?;
            let rows = self.store.rows_of(period.start_ms).map_err(stored)?;
            let period = as_stored(period, current, rows.iter().map(|r| r.period.end_ms));
            let f = self.store.push_state().map_err(stored)?;
            let held = f.pending.into_iter();
            let rows = rows.into_iter().map(|r| CounterRow {
                meter: r.meter,
                model: r.model,
                metered: r.tally,
                acknowledged: r.flushed,
                closed: r.closed,
            });
            Ok(CounterView {
                period,
                settled_since_taken: l.state.seq.saturating_sub(f.taken_seq),
                rows: rows.collect(),
                held: held
                    .filter(|r| r.period_start_ms == period.start_ms)
                    .collect(),
            })
        })?;
        http::json_response(&view, 200).map_err(http::internal)
    }

    /// Ends the current period now (a cancellation or plan change): its usage gets its
    /// final records, pushed at once, and a new period starts at zero and runs to the
    /// next anchor date.
    pub(super) async fn close_period(&self, now_ms: i64) -> Answer {
        let period = self.with(now_ms, |l| {
            // Memory changes only once storage has: a failure leaves both as they were.
            let mut closed = l.state.clone();
            let old = closed.close_period(now_ms);
            self.store
                .end_period(old.start_ms, now_ms)
                .map_err(stored)?;
            self.store.save_cursor(&closed).map_err(stored)?;
            let next = closed.period;
            l.state = closed;
            Ok(json!({"closed": {"start_ms": old.start_ms, "end_ms": now_ms}, "current": next}))
        })?;
        if let Err(e) = self.push(now_ms).await {
            // The alarm set by the failed push tries again.
            worker::console_error!("push after closing a period: {}", e.message);
        }
        http::json_response(&period, 200).map_err(http::internal)
    }
}
