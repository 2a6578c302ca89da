//! The counter's reservation deadlines: expiring what nobody settled (billed its
//! bound), heartbeats that keep a running request's reservation alive, and the alarm
//! that makes sure expiry happens even for a customer who never comes back.

use super::counter::{stored, Loaded, UsageCounter};
use super::http;
use crate::error::ApiError;
use crate::protocol::ExtendRequest;
use crate::settlement::{self, expire_next};
use worker::Response;

impl UsageCounter {
    /// Stores the expiry of reservations past their deadline, one by one
    /// (`crate::settlement::expire_next`): billed their reserved bound, flagged
    /// estimated, until a late settlement replaces that.
    pub(super) fn expire_due(&self, l: &mut Loaded, now: i64) -> std::result::Result<(), ApiError> {
        while let Some(e) = expire_next(&mut l.state, now) {
            self.store
                .save_landing(l.state.period, &e.landing)
                .map_err(stored)?;
            self.store.delete_reservation(e.id).map_err(stored)?;
            if let Some(expired) = &e.keep {
                self.store.save_expired(expired).map_err(stored)?;
            }
            self.store.save_cursor(&l.state).map_err(stored)?;
            if let Some(replay) = &e.replay {
                self.store.finish_idempotent(e.id, replay).map_err(stored)?;
            }
            self.expired_unpushed.set(true);
        }
        while let Some(change) = l.state.expire_lease(now) {
            self.store.save_lease_change(&change).map_err(stored)?;
            self.store.save_cursor(&l.state).map_err(stored)?;
        }
        Ok(())
    }

    /// Makes sure the alarm fires by the soonest reservation deadline, so a customer
    /// who never comes back still has its reservations expired and billed.
    pub(super) async fn arm_deadlines(&self, now_ms: i64) {
        if let Ok(Some(at)) = self.with(now_ms, |l| Ok(l.state.next_deadline())) {
            self.ensure_alarm(at).await;
        }
    }

    /// A running request's heartbeat: its reservation lives a TTL longer. 410 when it
    /// is gone (settled, or expired because the heartbeat came too late).
    pub(super) fn extend(&self, req: ExtendRequest) -> std::result::Result<Response, ApiError> {
        let r = self.with(req.now_ms, |l| {
            settlement::extend(&mut l.state, req.reservation, req.now_ms)
        })?;
        self.store.save_reservation(&r).map_err(stored)?;
        Ok(Response::empty().map_err(http::internal)?.with_status(204))
    }
}
