//! The counter's one Durable Object alarm, shared by every reason to wake (coalesced
//! pushes, retries, a period's end). The alarm is only ever moved earlier; the push it
//! triggers works out the next one, so no reason is lost when it fires.

use super::counter::UsageCounter;
use crate::flush::wake::{needs_alarm, PushClock};
use worker::ScheduledTime;

/// An alarm time from epoch milliseconds on the Worker's clock (a bare `i64` would
/// mean an offset from now); the runtime schedules by the wall clock.
pub(super) fn alarm_at(ms: i64) -> ScheduledTime {
    let wall = super::clock::wall_at(ms) as f64;
    ScheduledTime::new(worker::js_sys::Date::new(&wall.into()))
}

impl UsageCounter {
    /// The push clock, read from storage once per object lifetime.
    pub(super) fn clock(&self) -> worker::Result<PushClock> {
        if let Some(c) = self.push_clock.get() {
            return Ok(c);
        }
        let f = self.store.push_state()?;
        let c = PushClock {
            last_push_ms: f.last_push_ms,
            alarm_ms: f.alarm_ms,
        };
        self.push_clock.set(Some(c));
        Ok(c)
    }

    pub(super) fn remember_push(&self, now_ms: i64) {
        if let Ok(mut c) = self.clock() {
            c.last_push_ms = Some(now_ms);
            self.push_clock.set(Some(c));
        }
    }

    /// Makes sure the alarm fires at `at_ms` or sooner. Setting it is tried three
    /// times; if all fail, it is logged and counted, and the next settlement, admission
    /// or push tries again.
    pub(super) async fn ensure_alarm(&self, at_ms: i64) {
        let Ok(mut c) = self.clock() else {
            return;
        };
        if !needs_alarm(c, at_ms, super::clock::now_ms()) {
            return;
        }
        c.alarm_ms = Some(at_ms);
        self.push_clock.set(Some(c));
        let saved = self.store.push_state().and_then(|mut f| {
            f.alarm_ms = Some(at_ms);
            self.store.save_push_state(&f)
        });
        let mut set = saved;
        for _ in 0..crate::limits::ALARM_TRIES {
            if set.is_err() {
                break;
            }
            set = self.state.storage().set_alarm(alarm_at(at_ms)).await;
            if set.is_ok() {
                return;
            }
        }
        if let Err(e) = set {
            worker::console_error!("setting the counter's alarm: {e}");
            super::metrics::bump(super::metrics::Metric::AlarmSetFailures);
            self.forget_alarm();
        }
    }

    /// The alarm fired (or could not be set): none is pending now.
    pub(super) fn forget_alarm(&self) {
        if let Ok(mut c) = self.clock() {
            c.alarm_ms = None;
            self.push_clock.set(Some(c));
        }
        if let Ok(mut f) = self.store.push_state() {
            f.alarm_ms = None;
            let _ = self.store.save_push_state(&f);
        }
    }
}
