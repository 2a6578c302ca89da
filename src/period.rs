//! Billing periods: calendar months in UTC, or months anchored to the day of the month
//! the customer started on. An anchor past a month's end (say the 31st in April) falls
//! on that month's last day, so every period is one month long and periods never overlap.
//!
//! The civil-date arithmetic is the well-known days-from-civil algorithm, a dozen lines,
//! which spares the bundle a date crate.

use serde::{Deserialize, Serialize};

const DAY_MS: i64 = 86_400_000;

/// A half-open interval `[start_ms, end_ms)` of Unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32
}

/// Midnight UTC of the anchor day in month `m` of year `y` (months may over/underflow).
fn anchor_ms(y: i64, m: i64, anchor_day: u32) -> i64 {
    let y = y + (m - 1).div_euclid(12);
    let m = ((m - 1).rem_euclid(12) + 1) as u32;
    let d = anchor_day.min(days_in_month(y, m));
    days_from_civil(y, m, d) * DAY_MS
}

/// The billing period containing `now_ms` for a month anchored on `anchor_day` (1–31;
/// 1 means calendar months).
pub fn period_at(now_ms: i64, anchor_day: u32) -> Period {
    let anchor_day = anchor_day.clamp(1, 31);
    let (y, m, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
    let m = m as i64;
    let this = anchor_ms(y, m, anchor_day);
    if now_ms >= this {
        Period {
            start_ms: this,
            end_ms: anchor_ms(y, m + 1, anchor_day),
        }
    } else {
        Period {
            start_ms: anchor_ms(y, m - 1, anchor_day),
            end_ms: this,
        }
    }
}

/// The day of the month (UTC) of a timestamp, used as a customer's anchor.
pub fn day_of_month(now_ms: i64) -> u32 {
    civil_from_days(now_ms.div_euclid(DAY_MS)).2
}

/// Midnight UTC of a `YYYY-MM-DD` date, as Unix milliseconds.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if text.len() != 10 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS)
}

/// ISO 8601 UTC rendering of a timestamp, to the second.
pub fn iso8601(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d) * DAY_MS
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(
            iso8601(ms(2026, 11, 25) + 3_723_000),
            "2026-11-25T01:02:03Z"
        );
    }

    #[test]
    fn calendar_month_rolls_over_exactly_at_midnight() {
        let p = period_at(ms(2026, 12, 1) - 1, 1);
        assert_eq!(
            p,
            Period {
                start_ms: ms(2026, 11, 1),
                end_ms: ms(2026, 12, 1)
            }
        );
        let next = period_at(ms(2026, 12, 1), 1);
        assert_eq!(
            next,
            Period {
                start_ms: ms(2026, 12, 1),
                end_ms: ms(2027, 1, 1)
            }
        );
    }

    #[test]
    fn anchor_past_month_end_clamps_to_last_day() {
        // Anchored on the 31st: Feb 2028 (leap) has 29 days, so that period starts Feb 29.
        let p = period_at(ms(2028, 3, 10), 31);
        assert_eq!(
            p,
            Period {
                start_ms: ms(2028, 2, 29),
                end_ms: ms(2028, 3, 31)
            }
        );
        let p = period_at(ms(2026, 4, 30), 31);
        assert_eq!(
            p,
            Period {
                start_ms: ms(2026, 4, 30),
                end_ms: ms(2026, 5, 31)
            }
        );
    }

    #[test]
    fn anchored_period_before_anchor_day_belongs_to_previous_month() {
        let p = period_at(ms(2027, 1, 14), 15);
        assert_eq!(
            p,
            Period {
                start_ms: ms(2026, 12, 15),
                end_ms: ms(2027, 1, 15)
            }
        );
        assert_eq!(day_of_month(ms(2027, 1, 14) + 5), 14);
    }
}
