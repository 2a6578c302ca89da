//! When a counter pushes usage to its registry shard. The counter does the pushing, so
//! a cron run reads only the shards and never has to open thousands of counters. A
//! change pushes at once unless the counter pushed within the last `FLUSH_PUSH_MS`;
//! then one alarm pushes everything that came meanwhile. The same alarm retries a
//! failed push, sends a period's final records after it ends, and expires reservations
//! at their deadlines: one Durable Object has one alarm.

use super::backoff_ms;

/// When a counter last pushed and the alarm it has set, as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushClock {
    pub last_push_ms: Option<i64>,
    pub alarm_ms: Option<i64>,
}

/// A period's final records are taken this long after it ends.
pub const PERIOD_END_GRACE_MS: i64 = 1_000;

/// The first wait before trying a failed push again; it doubles, up to an hour.
pub const RETRY_BASE_MS: i64 = 10_000;

/// The least time between two pushes of one counter, from `FLUSH_PUSH_MS` (default
/// 5 s, at most an hour): a busy customer pushes at most once per interval.
pub fn push_interval_ms(setting: Option<&str>) -> i64 {
    setting
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(5_000)
        .clamp(0, 3_600_000)
}

/// When a change at `now_ms` may be pushed: now, if the last push (`last_push_ms`) is
/// at least an interval ago, else an interval after it.
pub fn push_due(now_ms: i64, last_push_ms: Option<i64>, interval_ms: i64) -> i64 {
    last_push_ms.map_or(now_ms, |last| now_ms.max(last + interval_ms))
}

/// What a settlement leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSettle {
    PushNow,
    /// An alarm pushes then: a push was recent, or one is on its way (it may have
    /// taken its records before this settlement).
    AlarmAt(i64),
}

/// After a settlement at `now_ms`: push at once, or make sure an alarm pushes when the
/// interval since the last push is over.
pub fn after_settle(now_ms: i64, clock: PushClock, interval_ms: i64, pushing: bool) -> AfterSettle {
    if pushing {
        return AfterSettle::AlarmAt(now_ms + interval_ms);
    }
    match push_due(now_ms, clock.last_push_ms, interval_ms) {
        due if due > now_ms => AfterSettle::AlarmAt(due),
        _ => AfterSettle::PushNow,
    }
}

/// Whether an alarm must be set for `at_ms`. The alarm only moves earlier; one already
/// past is stale (it fired, or its handler failed before forgetting it) and is set
/// again.
pub fn needs_alarm(clock: PushClock, at_ms: i64, now_ms: i64) -> bool {
    !clock.alarm_ms.is_some_and(|a| a <= at_ms && a > now_ms)
}

/// What a counter knows after a push, to choose its next alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterPush {
    pub now_ms: i64,
    /// Pushes that failed in a row (0: the last one reached the shard).
    pub failures: u32,
    /// Changes arrived while the push was on its way.
    pub changed_since: bool,
    /// The end of the current period, when it has usage that will need a final record.
    pub period_end_ms: Option<i64>,
    /// The soonest reservation deadline, when reservations are held.
    pub deadline_ms: Option<i64>,
}

/// The next alarm after a push: a retry, the changes that came during it (an interval
/// later), the period's end, or a reservation's deadline; the soonest that applies.
pub fn next_alarm(a: AfterPush, interval_ms: i64) -> Option<i64> {
    let retry = (a.failures > 0).then(|| a.now_ms + backoff_ms(a.failures, RETRY_BASE_MS));
    let changes = a.changed_since.then(|| a.now_ms + interval_ms);
    let end = a.period_end_ms.map(|e| e + PERIOD_END_GRACE_MS);
    [retry, changes, end, a.deadline_ms]
        .into_iter()
        .flatten()
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALM: AfterPush = AfterPush {
        now_ms: 1_000,
        failures: 0,
        changed_since: false,
        period_end_ms: None,
        deadline_ms: None,
    };

    #[test]
    fn a_change_pushes_at_once_unless_a_push_was_recent() {
        assert_eq!(push_due(10_000, None, 5_000), 10_000);
        assert_eq!(push_due(10_000, Some(4_000), 5_000), 10_000);
        // pushed at 8 s: the next push waits until 8 + 5 s
        assert_eq!(push_due(10_000, Some(8_000), 5_000), 13_000);
        assert_eq!(push_due(10_000, Some(10_000), 0), 10_000);
    }

    #[test]
    fn failed_pushes_are_retried_with_a_doubling_wait() {
        let failed = |n| {
            next_alarm(
                AfterPush {
                    failures: n,
                    ..CALM
                },
                5_000,
            )
        };
        // 1000 + 10 s, then 1000 + 20 s, then 1000 + 40 s, never more than an hour
        assert_eq!(failed(1), Some(11_000));
        assert_eq!(failed(2), Some(21_000));
        assert_eq!(failed(3), Some(41_000));
        assert_eq!(failed(40), Some(3_601_000));
    }

    #[test]
    fn the_soonest_reason_sets_the_alarm() {
        assert_eq!(next_alarm(CALM, 5_000), None);
        let changed = AfterPush {
            changed_since: true,
            period_end_ms: Some(100_000),
            ..CALM
        };
        assert_eq!(next_alarm(changed, 5_000), Some(6_000));
        let ending = AfterPush {
            period_end_ms: Some(2_000),
            ..changed
        };
        // the period ends at 2 s: its final records go at 2 + 1 s, before 1 + 5 s
        assert_eq!(next_alarm(ending, 5_000), Some(3_000));
        let idle = AfterPush {
            period_end_ms: Some(100_000),
            ..CALM
        };
        assert_eq!(next_alarm(idle, 5_000), Some(101_000));
        // a held reservation expiring before the period ends wakes the counter first
        let held = AfterPush {
            deadline_ms: Some(50_000),
            ..idle
        };
        assert_eq!(next_alarm(held, 5_000), Some(50_000));
    }

    #[test]
    fn the_interval_is_defaulted_and_bounded() {
        assert_eq!(push_interval_ms(None), 5_000);
        assert_eq!(push_interval_ms(Some(" 250 ")), 250);
        assert_eq!(push_interval_ms(Some("-3")), 0);
        assert_eq!(push_interval_ms(Some("soon")), 5_000);
    }

    #[test]
    fn a_settlement_pushes_now_or_sets_the_alarm_for_when_it_may() {
        let clock = PushClock {
            last_push_ms: Some(8_000),
            alarm_ms: None,
        };
        assert_eq!(
            after_settle(20_000, clock, 5_000, false),
            AfterSettle::PushNow
        );
        assert_eq!(
            after_settle(10_000, clock, 5_000, false),
            AfterSettle::AlarmAt(13_000)
        );
        // A push on its way may have taken its records already: the alarm follows up.
        assert_eq!(
            after_settle(20_000, clock, 5_000, true),
            AfterSettle::AlarmAt(25_000)
        );
    }

    #[test]
    fn the_alarm_only_moves_earlier_and_a_stale_one_is_set_again() {
        let set = |alarm_ms| PushClock {
            last_push_ms: None,
            alarm_ms,
        };
        assert!(needs_alarm(set(None), 5_000, 1_000));
        assert!(
            !needs_alarm(set(Some(4_000)), 5_000, 1_000),
            "an earlier one covers it"
        );
        assert!(!needs_alarm(set(Some(5_000)), 5_000, 1_000));
        assert!(needs_alarm(set(Some(6_000)), 5_000, 1_000), "moved earlier");
        assert!(needs_alarm(set(Some(900)), 5_000, 1_000), "past: stale");
    }
}
