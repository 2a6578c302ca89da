//! The counter's side of flushing. After a settlement (at most once per
//! `FLUSH_PUSH_MS`, the rest coalesced by an alarm) the counter takes a frozen snapshot
//! of what is new, pushes every record still unacknowledged to the customer's registry
//! shard, and learns from the shard's answer which records the receiver has
//! acknowledged. Only those move the flushed watermark. The cron run then reads the
//! shards alone, however many counters changed.

use super::counter::{stored, Loaded, UsageCounter};
use super::counter_store::FlushState;
use super::{client, config, http};
use crate::error::ApiError;
use crate::flush::snapshot::{apply_acks, is_clean, take, FlushRow, Stamp};
use crate::flush::wake::{next_alarm, push_due, AfterPush};
use crate::flush::{shard_for, UsageRecord};
use crate::period::{period_at, Period};
use crate::reconcile::{CounterRow, CounterView};
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

/// What the next alarm depends on, once a push is over.
fn after_push(l: &Loaded, f: &FlushState, rows: &[FlushRow], now_ms: i64) -> AfterPush {
    AfterPush {
        now_ms,
        failures: f.failures,
        changed_since: l.state.seq > f.taken_seq,
        period_end_ms: (!rows.is_empty()).then_some(l.state.period.end_ms),
        deadline_ms: l.state.next_deadline(),
    }
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
        if self.pushing.get() {
            // The push on its way may have taken its records already.
            self.ensure_alarm(now_ms + interval).await;
            return;
        }
        let due = push_due(now_ms, clock.last_push_ms, interval);
        if due > now_ms {
            self.ensure_alarm(due).await;
        } else if let Err(e) = self.push(now_ms).await {
            worker::console_error!("flush push: {}", e.message);
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
            let mut f = self.store.flush_state().map_err(stored)?;
            f.failures += 1;
            f.last_push_ms = Some(now_ms);
            self.store.save_flush_state(&f).map_err(stored)?;
            self.remember_push(now_ms);
            let rows = self.store.flush_rows().map_err(stored)?;
            Ok(after_push(l, &f, &rows, now_ms))
        })
    }

    async fn push_once(&self, now_ms: i64, shards: u32) -> std::result::Result<Pushed, ApiError> {
        let (customer, records, taken, taken_seq) = self.with(now_ms, |l| {
            l.state.roll(now_ms);
            let mut f = self.store.flush_state().map_err(stored)?;
            let rows = self.store.flush_rows().map_err(stored)?;
            let seq = (f.taken_seq.max(f.flushed_seq), l.state.seq);
            // A period with reservations still in flight is not complete: no final yet.
            let start = l.state.complete_before();
            let stamp = Stamp {
                customer: l.customer.id.clone(),
                plan: l.customer.plan.clone(),
                livemode: l.customer.livemode,
            };
            let new = take(&stamp, &rows, &f.pending, start, seq, now_ms);
            let taken = new.len();
            // Sequence numbers that changed nothing left to take are covered too.
            f.taken_seq = f.taken_seq.max(l.state.seq);
            f.pending.extend(new);
            self.store.save_flush_state(&f).map_err(stored)?;
            Ok((l.customer.id.clone(), f.pending, taken, f.taken_seq))
        })?;
        let acknowledged = if records.is_empty() {
            Vec::new()
        } else {
            self.push_to_shard(&customer, &records, shards).await?
        };
        self.with(now_ms, |l| {
            let mut f = self.store.flush_state().map_err(stored)?;
            let rows = self.store.flush_rows().map_err(stored)?;
            let pending = std::mem::take(&mut f.pending);
            let done = apply_acks(&rows, pending, &acknowledged, f.flushed_seq);
            self.store.save_flushed(&done.rows).map_err(stored)?;
            (f.pending, f.flushed_seq) = (done.pending, done.flushed_seq);
            f.pushed_seq = f.pushed_seq.max(taken_seq);
            f.failures = 0;
            f.last_push_ms = Some(now_ms);
            self.store.save_flush_state(&f).map_err(stored)?;
            self.remember_push(now_ms);
            // An acknowledgement changes the rows (and may close some): read them again.
            let rows = if done.acked == 0 {
                rows
            } else {
                self.store.flush_rows().map_err(stored)?
            };
            Ok(Pushed {
                taken,
                sent: records.len(),
                acknowledged: done.acked,
                in_flight: f.pending.len(),
                clean: f.pending.is_empty() && is_clean(&rows, l.state.complete_before()),
                after: after_push(l, &f, &rows, now_ms),
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
        // One counter meters one mode: its records all carry it.
        let livemode = records.iter().all(|r| r.livemode);
        let body = json!({"customer": customer, "livemode": livemode, "records": records});
        let mut resp = client::call_object(
            &self.env,
            client::SHARD_BINDING,
            &shard,
            Method::Post,
            "/push",
            Some(&body),
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
            .map_err(|e| ApiError::internal(format!("{shard} answered badly: {e}")))
    }

    /// Where this counter's flush stands (`GET /admin/v1/customers/{id}/flush`).
    pub(super) fn flush_view(&self, now_ms: i64) -> Answer {
        let view = self.with(now_ms, |l| {
            let f = self.store.flush_state().map_err(stored)?;
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
            // The current period when `at_ms` is in it (it may have no rows yet, or
            // have started early at a close-period); else the latest period with rows
            // that began by then, whose rows may end later than planned.
            let current = l.state.period;
            let period = match current.start_ms <= at_ms && at_ms < current.end_ms {
                true => current,
                false => match self.store.period_start_at(at_ms).map_err(stored)? {
                    Some(start) => Period {
                        start_ms: start,
                        end_ms: at_ms.max(start) + 1,
                    },
                    None => period_at(at_ms, l.state.anchor_day),
                },
            };
            let rows = self.store.rows_of(period.start_ms).map_err(stored)?;
            let period = match rows.iter().map(|r| r.period.end_ms).max() {
                Some(end) if period != current => Period {
                    start_ms: period.start_ms,
                    end_ms: end,
                },
                _ => period,
            };
            let f = self.store.flush_state().map_err(stored)?;
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
            l.state.roll(now_ms);
            let old = l.state.period;
            let next = Period {
                start_ms: now_ms,
                end_ms: period_at(now_ms + 1, l.state.anchor_day).end_ms,
            };
            self.store
                .end_period(old.start_ms, now_ms)
                .map_err(stored)?;
            l.state.period = next;
            l.state.tallies.clear();
            self.store.save_cursor(&l.state).map_err(stored)?;
            Ok(json!({"closed": {"start_ms": old.start_ms, "end_ms": now_ms}, "current": next}))
        })?;
        if let Err(e) = self.push(now_ms).await {
            // The alarm set by the failed push tries again.
            worker::console_error!("push after closing a period: {}", e.message);
        }
        http::json_response(&period, 200).map_err(http::internal)
    }
}
