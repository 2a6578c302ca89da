//! The counter's side of flushing. A settlement sets an alarm; the alarm takes a
//! frozen snapshot of what is new, pushes every record still unacknowledged to the
//! customer's registry shard, and learns from the shard's answer which records the
//! receiver has acknowledged. Only those move the flushed watermark. The cron run then
//! reads the shards alone, however many counters changed.

use super::counter::{stored, UsageCounter};
use super::{client, config, http};
use crate::error::ApiError;
use crate::flush::snapshot::{acknowledge, is_clean, take};
use crate::flush::wake::next_wake;
use crate::flush::{shard_for, UsageRecord};
use crate::period::{period_at, Period};
use serde_json::json;
use worker::{Method, Response, ScheduledTime};

type Answer = std::result::Result<Response, ApiError>;

/// An alarm time from epoch milliseconds (a bare `i64` would mean an offset from now).
fn alarm_at(ms: i64) -> ScheduledTime {
    ScheduledTime::new(worker::js_sys::Date::new(&(ms as f64).into()))
}

/// What one push did.
struct Pushed {
    taken: usize,
    sent: usize,
    acknowledged: usize,
    in_flight: usize,
    clean: bool,
}

impl UsageCounter {
    /// Makes sure an alarm pushes this counter's new usage within `FLUSH_PUSH_MS`, once
    /// per push cycle. Does nothing when flushing is off.
    pub(super) async fn schedule_push(&self, now_ms: i64) {
        if config::flush_shards(&self.env).is_none() || self.push_due.get() == Some(true) {
            return;
        }
        let Ok(mut f) = self.store.flush_state() else {
            return;
        };
        if f.push_at.is_none() {
            let at = now_ms + config::push_timing(&self.env).delay_ms;
            f.push_at = Some(at);
            if self.store.save_flush_state(&f).is_err()
                || self.state.storage().set_alarm(alarm_at(at)).await.is_err()
            {
                // The next settlement tries again.
                f.push_at = None;
                let _ = self.store.save_flush_state(&f);
                return;
            }
        }
        self.push_due.set(Some(true));
    }

    /// The alarm's work: push, then set the next wake. A failed push is tried again
    /// with the same doubling wait as an unacknowledged one.
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
        // Fruitless tries in a row (a failure, or nothing new and nothing acknowledged)
        // stretch the wait for the next check.
        let progressed = pushed
            .as_ref()
            .is_ok_and(|p| p.taken > 0 || p.acknowledged > 0 || p.in_flight == 0);
        let failed = pushed.is_err();
        let (in_flight, checks, push_at, period_end) = self.with(now_ms, |l| {
            let mut f = self.store.flush_state().map_err(stored)?;
            f.checks = if progressed { 0 } else { f.checks + 1 };
            self.store.save_flush_state(&f).map_err(stored)?;
            let open = !self.store.flush_rows().map_err(stored)?.is_empty();
            Ok((
                !f.pending.is_empty() || failed,
                f.checks,
                f.push_at,
                open.then_some(l.state.period.end_ms),
            ))
        })?;
        // A settlement during the push has set a sooner alarm already.
        if push_at.is_none() {
            let timing = config::push_timing(&self.env);
            if let Some(at) = next_wake(now_ms, in_flight, checks, timing, period_end) {
                self.state
                    .storage()
                    .set_alarm(alarm_at(at))
                    .await
                    .map_err(stored)?;
            }
        }
        let p = pushed?;
        Ok(
            json!({"taken": p.taken, "sent": p.sent, "acknowledged": p.acknowledged,
            "in_flight": p.in_flight, "clean": p.clean}),
        )
    }

    async fn push_once(&self, now_ms: i64, shards: u32) -> std::result::Result<Pushed, ApiError> {
        let (customer, records, taken) = self.with(now_ms, |l| {
            l.state.roll(now_ms);
            let mut f = self.store.flush_state().map_err(stored)?;
            f.push_at = None;
            self.push_due.set(Some(false));
            let rows = self.store.flush_rows().map_err(stored)?;
            let seq = (f.taken_seq.max(f.flushed_seq), l.state.seq);
            let start = l.state.period.start_ms;
            let new = take(&l.customer.id, &rows, &f.pending, start, seq, now_ms);
            let taken = new.len();
            if taken > 0 {
                f.taken_seq = l.state.seq;
                f.pending.extend(new);
            }
            self.store.save_flush_state(&f).map_err(stored)?;
            Ok((l.customer.id.clone(), f.pending, taken))
        })?;
        let acknowledged = if records.is_empty() {
            Vec::new()
        } else {
            self.push_to_shard(&customer, &records, shards).await?
        };
        self.with(now_ms, |l| {
            let mut f = self.store.flush_state().map_err(stored)?;
            let (acked, kept): (Vec<UsageRecord>, Vec<UsageRecord>) = f
                .pending
                .drain(..)
                .partition(|r| acknowledged.contains(&r.id));
            let rows = self.store.flush_rows().map_err(stored)?;
            self.store
                .save_flushed(&acknowledge(&rows, &acked))
                .map_err(stored)?;
            if let Some(seq_to) = acked.iter().map(|r| r.seq_to).max() {
                f.flushed_seq = f.flushed_seq.max(seq_to);
            }
            f.pending = kept;
            self.store.save_flush_state(&f).map_err(stored)?;
            let rows = self.store.flush_rows().map_err(stored)?;
            Ok(Pushed {
                taken,
                sent: records.len(),
                acknowledged: acked.len(),
                in_flight: f.pending.len(),
                clean: f.pending.is_empty() && is_clean(&rows, l.state.period.start_ms),
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
        let body = json!({"customer": customer, "records": records});
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
                "flushed_seq": f.flushed_seq, "in_flight": f.pending.len(),
                "push_at_ms": f.push_at, "checks": f.checks}))
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
