//! When a counter wakes itself to push usage to its registry shard. The counter's own
//! alarm does the pushing, so a cron run reads only the shards and never has to open
//! thousands of counters at once.

use super::backoff_ms;

/// A period's final records are taken this long after it ends.
pub const PERIOD_END_GRACE_MS: i64 = 1_000;

/// How a counter paces its pushes, from `FLUSH_PUSH_MS` and `FLUSH_CHECK_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushTiming {
    /// How long after its first change a counter pushes; changes within that time
    /// travel in one push.
    pub delay_ms: i64,
    /// How long after a push the counter asks its shard again whether its records in
    /// flight were acknowledged; doubling while they are not, up to an hour.
    pub check_ms: i64,
}

impl Default for PushTiming {
    fn default() -> Self {
        PushTiming {
            delay_ms: 5_000,
            check_ms: 90_000,
        }
    }
}

impl PushTiming {
    /// From the two settings (milliseconds), each defaulted when absent or unreadable.
    /// The check is at least a second, so a counter never spins on its shard.
    pub fn from_settings(delay: Option<&str>, check: Option<&str>) -> PushTiming {
        let d = PushTiming::default();
        let ms = |v: Option<&str>| v.and_then(|v| v.trim().parse::<i64>().ok());
        PushTiming {
            delay_ms: ms(delay).unwrap_or(d.delay_ms).clamp(0, 3_600_000),
            check_ms: ms(check).unwrap_or(d.check_ms).clamp(1_000, 3_600_000),
        }
    }
}

/// When a counter that has just pushed should wake next: to learn what became of its
/// records in flight (`checks` is how many times in a row it found some still
/// unacknowledged), or after its period ends (`period_end_ms`, when it has usage
/// there) to send the final records. `None`: nothing to wake for.
pub fn next_wake(
    now_ms: i64,
    in_flight: bool,
    checks: u32,
    t: PushTiming,
    period_end_ms: Option<i64>,
) -> Option<i64> {
    let check = in_flight.then(|| now_ms + backoff_ms(checks + 1, t.check_ms));
    let end = period_end_ms.map(|e| e + PERIOD_END_GRACE_MS);
    match (check, end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: PushTiming = PushTiming {
        delay_ms: 5_000,
        check_ms: 90_000,
    };

    #[test]
    fn records_in_flight_are_checked_with_a_doubling_wait() {
        // 1000 + 90 s, then 1000 + 2 * 90 s, then 1000 + 4 * 90 s
        assert_eq!(next_wake(1_000, true, 0, T, None), Some(91_000));
        assert_eq!(next_wake(1_000, true, 1, T, None), Some(181_000));
        assert_eq!(next_wake(1_000, true, 2, T, None), Some(361_000));
        // never more than an hour
        assert_eq!(next_wake(0, true, 40, T, None), Some(3_600_000));
    }

    #[test]
    fn the_period_end_comes_first_when_it_is_sooner() {
        assert_eq!(next_wake(0, true, 0, T, Some(10_000)), Some(11_000));
        assert_eq!(next_wake(0, true, 0, T, Some(200_000)), Some(90_000));
        assert_eq!(next_wake(0, false, 0, T, Some(200_000)), Some(201_000));
        assert_eq!(next_wake(0, false, 0, T, None), None);
    }

    #[test]
    fn settings_are_defaulted_and_bounded() {
        assert_eq!(PushTiming::from_settings(None, None), T);
        let t = PushTiming::from_settings(Some("0"), Some("5"));
        assert_eq!((t.delay_ms, t.check_ms), (0, 1_000));
        let t = PushTiming::from_settings(Some("soon"), Some(" 2500 "));
        assert_eq!((t.delay_ms, t.check_ms), (5_000, 2_500));
    }
}
