//! A counter rebuilt from storage after its object restarts: the small cursor kept
//! with every change, and the current period's rows. The cursor's period counts only
//! while it is current (a period cut short by a close-period); reservation ids never
//! repeat.

use crate::counter_state::{CounterState, Reservation, Window};
use crate::lease::{Lease, LeaseLosses};
use crate::period::Period;
use crate::reservation::Expired;
use crate::tally::{MeterKey, Tally};
use serde::{Deserialize, Serialize};

/// The small mutable part of a counter, stored whole with every change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub window: Window,
    pub next_id: u64,
    #[serde(default)]
    pub seq: u64,
    /// The current period, when it was cut short by closing it early.
    #[serde(default)]
    pub period: Option<Period>,
    #[serde(default)]
    pub lease_losses: LeaseLosses,
}

impl Cursor {
    pub fn of(s: &CounterState) -> Cursor {
        Cursor {
            window: s.window,
            next_id: s.next_id,
            seq: s.seq,
            period: Some(s.period),
            lease_losses: s.lease_losses,
        }
    }
}

/// What storage holds of the period a counter restarts in.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub tallies: Vec<(MeterKey, Tally)>,
    /// Every reservation in flight, whatever its period.
    pub reservations: Vec<Reservation>,
    /// The period's expired reservations.
    pub expired: Vec<Expired>,
    /// Every lease the counter holds, whatever its period.
    pub leases: Vec<Lease>,
}

/// The counter at `now_ms` from its cursor and the rows `load` reads for its period.
pub fn restore<E>(
    anchor_day: u32,
    now_ms: i64,
    cursor: Cursor,
    load: impl FnOnce(Period) -> Result<Rows, E>,
) -> Result<CounterState, E> {
    let mut s = CounterState::new(anchor_day, now_ms);
    s.window = cursor.window;
    s.next_id = cursor.next_id.max(1);
    s.seq = cursor.seq;
    s.lease_losses = cursor.lease_losses;
    if let Some(p) = cursor
        .period
        .filter(|p| p.start_ms <= now_ms && now_ms < p.end_ms)
    {
        s.period = p;
    }
    let rows = load(s.period)?;
    s.tallies.extend(rows.tallies);
    for r in rows.reservations {
        s.next_id = s.next_id.max(r.id + 1);
        s.reservations.insert(r.id, r);
    }
    s.expired
        .extend(rows.expired.into_iter().map(|e| (e.id, e)));
    for l in rows.leases {
        s.next_id = s.next_id.max(l.id + 1);
        s.leases.insert(l.id, l);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_547_200_000 + 5 * 86_400_000; // 2025-12-06

    fn reservation(id: u64) -> Reservation {
        Reservation {
            id,
            created_ms: NOW,
            minute: 0,
            meter: "chat.completions".into(),
            model: "gpt-4o-mini".into(),
            tokens: 1,
            input_estimate: 1,
            cost: rust_decimal::Decimal::ZERO,
            idempotent: false,
            reserved: None,
            deadline_ms: NOW + 1,
            period: None,
        }
    }

    #[test]
    fn a_restart_keeps_a_period_cut_short_only_while_it_is_current() {
        let cut = Period {
            start_ms: NOW - 1_000,
            end_ms: NOW + 1_000,
        };
        let cursor = Cursor {
            period: Some(cut),
            seq: 7,
            ..Cursor::default()
        };
        let mut asked = None;
        let s = restore(1, NOW, cursor.clone(), |p| {
            asked = Some(p);
            Ok::<_, ()>(Rows::default())
        })
        .unwrap();
        assert_eq!((s.period, asked, s.seq), (cut, Some(cut), 7));
        let later = restore(1, NOW + 1_000, cursor, |_| Ok::<_, ()>(Rows::default())).unwrap();
        assert_ne!(later.period, cut, "over: the anchor's period again");
    }

    #[test]
    fn reservation_ids_never_repeat_after_a_restart() {
        let cursor = Cursor {
            next_id: 3,
            ..Cursor::default()
        };
        let rows = Rows {
            reservations: vec![reservation(9), reservation(2)],
            ..Rows::default()
        };
        let s = restore(1, NOW, cursor, |_| Ok::<_, ()>(rows)).unwrap();
        assert_eq!(s.next_id, 10);
        assert_eq!(s.reservations.len(), 2);
        let fresh = restore(1, NOW, Cursor::default(), |_| Ok::<_, ()>(Rows::default()));
        assert_eq!(fresh.unwrap().next_id, 1, "ids start at 1");
        let failed = restore(1, NOW, Cursor::default(), |_| Err::<Rows, _>("storage"));
        assert_eq!(failed.unwrap_err(), "storage");
    }

    #[test]
    fn held_leases_come_back_and_their_ids_never_repeat() {
        let c = crate::fixtures::catalog();
        let pricing = crate::pricing::Pricing::List(&c);
        let plan = crate::catalog::Plan::default();
        let ask = crate::request::AdmitAsk::default();
        let mut s = CounterState::new(1, NOW);
        let lease = s.grant_lease(&pricing, &plan, &ask, NOW).unwrap().unwrap();
        s.lease_losses.unreturned = 2;
        let rows = Rows {
            leases: vec![lease.clone()],
            ..Rows::default()
        };
        let back = restore(1, NOW, Cursor::of(&s), |_| Ok::<_, ()>(rows)).unwrap();
        assert_eq!(back.leases.get(&lease.id), Some(&lease));
        assert_eq!(back.next_id, lease.id + 1);
        assert_eq!(back.lease_losses.unreturned, 2);
        assert_eq!(
            back.totals(&pricing),
            s.totals(&pricing),
            "its hold counts again"
        );
    }

    #[test]
    fn a_failed_load_is_told() {
        let failed = restore(1, NOW, Cursor::default(), |_| Err::<Rows, _>("storage"));
        assert_eq!(failed.unwrap_err(), "storage");
    }
}
