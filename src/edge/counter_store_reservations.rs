//! The counter's reservations in SQLite: in flight, expired (kept so a late settlement
//! can replace their estimate), and where a settlement's usage lands.

use super::counter_store::{int, json, stored_tally, Store};
use super::sql::text;
use crate::counter_state::Reservation;
use crate::lease::LeaseChange;
use crate::period::Period;
use crate::reservation::{Expired, Landing};
use crate::tally::{MeterKey, Tally};
use worker::Result;

impl Store {
    /// Stores a new or extended reservation.
    pub fn save_reservation(&self, r: &Reservation) -> Result<()> {
        let q = "INSERT OR REPLACE INTO reservations (id, body) VALUES (?, ?)";
        super::sql::exec(&self.sql, q, vec![int(r.id as i64), json(r)])?;
        Ok(())
    }

    /// Forgets a reservation once settled or expired.
    pub fn delete_reservation(&self, id: u64) -> Result<()> {
        let q = "DELETE FROM reservations WHERE id = ?";
        super::sql::exec(&self.sql, q, vec![int(id as i64)])?;
        Ok(())
    }

    /// Stores what a lease decision changed: the lease kept, or dropped.
    pub fn save_lease_change(&self, change: &LeaseChange) -> Result<()> {
        let (q, binds) = match change {
            LeaseChange::Store(l) => (
                "INSERT OR REPLACE INTO leases (id, body) VALUES (?, ?)",
                vec![int(l.id as i64), json(l)],
            ),
            LeaseChange::Drop(id) => ("DELETE FROM leases WHERE id = ?", vec![int(*id as i64)]),
        };
        super::sql::exec(&self.sql, q, binds)?;
        Ok(())
    }

    /// Forgets an expired reservation's estimate, once a late settlement replaced it.
    pub fn forget_expired(&self, id: u64) -> Result<()> {
        let q = "DELETE FROM expired WHERE id = ?";
        super::sql::exec(&self.sql, q, vec![int(id as i64)])?;
        Ok(())
    }

    /// Remembers an expired reservation's estimate for its period, forgetting those of
    /// earlier periods (a late settlement can no longer replace them).
    pub fn save_expired(&self, e: &Expired) -> Result<()> {
        let start = int(e.period.start_ms);
        let q = "INSERT OR REPLACE INTO expired (id, period_start, body) VALUES (?, ?, ?)";
        super::sql::exec(&self.sql, q, vec![int(e.id as i64), start.clone(), json(e)])?;
        let q = "DELETE FROM expired WHERE period_start < ?";
        super::sql::exec(&self.sql, q, vec![start])?;
        Ok(())
    }

    /// Stores where a settlement landed: the current period's tally as computed, or an
    /// earlier period's stored tally plus the usage.
    pub fn save_landing(&self, current: Period, landing: &Landing) -> Result<()> {
        let (period, key) = landing.place(current);
        let stored = match landing.adds_to_stored() {
            true => self.stored_tally_of(period, key)?,
            false => None,
        };
        self.save_tally(period, key, &landing.tally(stored))
    }

    fn stored_tally_of(&self, period: Period, key: &MeterKey) -> Result<Option<Tally>> {
        let q = "SELECT tally FROM usage WHERE period_start = ? AND meter = ? AND model = ?";
        let binds = vec![
            int(period.start_ms),
            key.0.as_str().into(),
            key.1.as_str().into(),
        ];
        let rows = self.rows(q, binds)?;
        rows.first().map(|r| stored_tally(&text(r, 0))).transpose()
    }
}
