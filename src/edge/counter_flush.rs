//! The counter's side of flushing: registering as dirty with its registry shard, handing
//! out a frozen snapshot of unacknowledged usage, and moving the watermark only when
//! the shard reports the receiver's acknowledgement.

use super::counter::{stored, UsageCounter};
use super::{client, config, http};
use crate::error::ApiError;
use crate::flush::shard_for;
use crate::flush::snapshot::{is_clean, take};
use crate::period::{period_at, Period};
use serde_json::json;
use worker::{Method, Response};

type Answer = std::result::Result<Response, ApiError>;

impl UsageCounter {
    /// Adds this customer to its shard's dirty set, once per flush cycle (or always,
    /// with `force`, as the period-end alarm does). Does nothing when flushing is off.
    pub(super) async fn mark_dirty(&self, now_ms: i64, force: bool) {
        let Some(shards) = config::flush_shards(&self.env) else {
            return;
        };
        let Ok(mut f) = self.store.flush_state() else {
            return;
        };
        if f.registered && !force {
            return;
        }
        let Ok(customer) = self.with(now_ms, |l| Ok(l.customer.id.clone())) else {
            return;
        };
        f.registered = true;
        if self.store.save_flush_state(&f).is_err() {
            return;
        }
        self.registered.set(Some(true));
        let shard = format!("shard-{}", shard_for(&customer, shards));
        let body = json!({"customer": customer, "now_ms": now_ms});
        let ok = client::call_object(
            &self.env,
            client::SHARD_BINDING,
            &shard,
            Method::Post,
            "/dirty",
            Some(&body),
        )
        .await
        .is_ok_and(|r| r.status_code() < 300);
        if !ok {
            // Try again on the next settlement; the alarm is the backstop.
            self.registered.set(Some(false));
            if let Ok(mut f) = self.store.flush_state() {
                f.registered = false;
                let _ = self.store.save_flush_state(&f);
            }
        }
    }

    /// The records not yet acknowledged. Until they are, every call returns the same
    /// records (same ids), so a retried delivery is recognisable by the receiver.
    pub(super) fn take(&self, now_ms: i64) -> Answer {
        let records = self.with(now_ms, |l| {
            l.state.roll(now_ms);
            let mut f = self.store.flush_state().map_err(stored)?;
            if f.pending.is_empty() {
                let rows = self.store.flush_rows().map_err(stored)?;
                let seq = (f.flushed_seq, l.state.seq);
                f.pending = take(&l.customer.id, &rows, l.state.period.start_ms, seq, now_ms);
                self.store.save_flush_state(&f).map_err(stored)?;
            }
            Ok(f.pending)
        })?;
        http::json_response(&json!({"records": records}), 200).map_err(http::internal)
    }

    /// The receiver acknowledged these records: add them to what is flushed. Answers
    /// whether anything is left to flush.
    pub(super) async fn ack(&self, ids: Vec<String>, now_ms: i64) -> Answer {
        let (clean, period_end) = self.with(now_ms, |l| {
            l.state.roll(now_ms);
            let mut f = self.store.flush_state().map_err(stored)?;
            let (acked, kept): (Vec<_>, Vec<_>) =
                f.pending.drain(..).partition(|r| ids.contains(&r.id));
            self.store.apply_ack(&acked).map_err(stored)?;
            if let Some(seq_to) = acked.iter().map(|r| r.seq_to).max() {
                f.flushed_seq = f.flushed_seq.max(seq_to);
            }
            f.pending = kept;
            let rows = self.store.flush_rows().map_err(stored)?;
            let clean = f.pending.is_empty() && is_clean(&rows, l.state.period.start_ms);
            if clean {
                f.registered = false;
                self.registered.set(Some(false));
            }
            self.store.save_flush_state(&f).map_err(stored)?;
            // Rows of the current period stay open until its final record is sent.
            Ok((clean, (!rows.is_empty()).then_some(l.state.period.end_ms)))
        })?;
        if let (true, Some(end)) = (clean, period_end) {
            self.state
                .storage()
                .set_alarm(end + 1_000)
                .await
                .map_err(stored)?;
        }
        http::json_response(&json!({"clean": clean}), 200).map_err(http::internal)
    }

    /// Ends the current period now (a cancellation or plan change): its usage gets its
    /// final records, and a new period starts at zero and runs to the next anchor date.
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
        self.mark_dirty(now_ms, true).await;
        http::json_response(&period, 200).map_err(http::internal)
    }
}
