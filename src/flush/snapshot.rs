//! What a counter hands to a flush: the difference between its tallies and what the
//! receiver has acknowledged, frozen with a sequence range so a retry sends the very
//! same records. A period that is over gets a last record marked final, even when
//! nothing changed, so the receiver knows the period is complete.

use super::{UsageRecord, RECORD_SCHEMA};
use crate::period::Period;
use crate::tally::Tally;

/// One stored usage row and what of it the receiver has acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlushRow {
    pub period: Period,
    pub meter: String,
    pub model: String,
    pub tally: Tally,
    pub flushed: Tally,
    /// The final record of this row's period was acknowledged.
    pub closed: bool,
}

/// The delta a record carries, as a tally.
pub fn delta_of(r: &UsageRecord) -> Tally {
    Tally {
        requests: r.requests,
        input: r.input_tokens,
        output: r.output_tokens,
        cached: r.cached_tokens,
        reasoning: r.reasoning_tokens,
        images: r.images,
        duration_ms: r
            .duration_ms
            .saturating_add(r.legacy_seconds.saturating_mul(1000)),
        estimated: r.estimated,
        cache_write: r.cache_write_tokens,
        cache_write_1h: r.cache_write_1h_tokens,
        audio: r.audio_tokens,
        estimated_input: r.estimated_input_tokens,
        estimated_output: r.estimated_output_tokens,
    }
}

fn over(row: &FlushRow, current_period_start: i64) -> bool {
    row.period.end_ms <= current_period_start
}

fn same_row(r: &FlushRow, rec: &UsageRecord) -> bool {
    r.period.start_ms == rec.period_start_ms && r.meter == rec.meter && r.model == rec.model
}

/// Whose records a snapshot takes: the customer, the plan the counter assigns them
/// (the one plan assignment) and the key mode the counter meters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub customer: String,
    pub plan: String,
    pub livemode: bool,
}

/// New records for what is neither acknowledged nor already in flight (`pending`),
/// covering counter sequence numbers `taken_seq + 1 ..= seq`. Snapshots taken one after
/// another cover disjoint ranges, so their ids differ and their deltas add up; a
/// finished period gets one final record, after which its row takes nothing more.
pub fn take(
    stamp: &Stamp,
    rows: &[FlushRow],
    pending: &[UsageRecord],
    current_period_start: i64,
    seq: (u64, u64),
    now_ms: i64,
) -> Vec<UsageRecord> {
    let (taken_seq, seq) = seq;
    let range = (taken_seq + 1, seq);
    rows.iter()
        .filter(|r| !r.closed)
        .filter_map(|r| {
            let in_flight = pending.iter().filter(|p| same_row(r, p));
            let mut handed = r.flushed;
            let mut final_in_flight = false;
            for p in in_flight {
                handed = handed.plus(&delta_of(p));
                final_in_flight |= p.is_final;
            }
            let d = r.tally.minus(&handed);
            let is_final = over(r, current_period_start);
            if final_in_flight || (d.is_zero() && !is_final) {
                return None;
            }
            let record = UsageRecord {
                id: String::new(),
                customer: stamp.customer.clone(),
                period_start_ms: r.period.start_ms,
                period_end_ms: r.period.end_ms,
                meter: r.meter.clone(),
                model: r.model.clone(),
                seq_from: range.0,
                seq_to: range.1,
                requests: d.requests,
                input_tokens: d.input,
                output_tokens: d.output,
                cached_tokens: d.cached,
                reasoning_tokens: d.reasoning,
                images: d.images,
                duration_ms: d.duration_ms,
                legacy_seconds: 0,
                estimated: d.estimated,
                cache_write_tokens: d.cache_write,
                cache_write_1h_tokens: d.cache_write_1h,
                audio_tokens: d.audio,
                schema: RECORD_SCHEMA,
                plan: stamp.plan.clone(),
                is_final,
                recorded_at_ms: now_ms,
                livemode: stamp.livemode,
                estimated_input_tokens: d.estimated_input,
                estimated_output_tokens: d.estimated_output,
            };
            Some(UsageRecord {
                id: record.content_id(),
                ..record
            })
        })
        .collect()
}

/// The rows that acknowledged records change, with what is flushed of them afterwards
/// and whether they are closed (their final record was acknowledged). Several records of
/// one row add up.
pub fn acknowledge(rows: &[FlushRow], acked: &[UsageRecord]) -> Vec<FlushRow> {
    let mut changed: Vec<FlushRow> = Vec::new();
    for rec in acked {
        let Some(row) = rows.iter().find(|r| same_row(r, rec)) else {
            continue;
        };
        let i = match changed.iter().position(|c| same_row(c, rec)) {
            Some(i) => i,
            None => {
                changed.push(row.clone());
                changed.len() - 1
            }
        };
        let c = &mut changed[i];
        c.flushed = c.flushed.plus(&delta_of(rec));
        c.closed |= rec.is_final;
    }
    changed
}

/// What the shard's answer to a push does to a counter's flush bookkeeping: the rows
/// acknowledged records change ([`acknowledge`]), the records still waiting for an
/// acknowledgement, and the highest acknowledged sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledged {
    pub rows: Vec<FlushRow>,
    pub pending: Vec<UsageRecord>,
    pub acked: usize,
    pub flushed_seq: u64,
}

/// Splits `pending` by the ids the receiver acknowledged (ids the counter does not
/// hold change nothing) and moves the acknowledged ones into the rows' flushed totals.
pub fn apply_acks(
    rows: &[FlushRow],
    pending: Vec<UsageRecord>,
    acked_ids: &[String],
    flushed_seq: u64,
) -> Acknowledged {
    let (acked, pending): (Vec<UsageRecord>, Vec<UsageRecord>) =
        pending.into_iter().partition(|r| acked_ids.contains(&r.id));
    let top = acked.iter().map(|r| r.seq_to).max().unwrap_or(0);
    Acknowledged {
        rows: acknowledge(rows, &acked),
        acked: acked.len(),
        pending,
        flushed_seq: flushed_seq.max(top),
    }
}

/// Whether a counter has nothing left to flush: every row acknowledged, and every row
/// of a finished period closed.
pub fn is_clean(rows: &[FlushRow], current_period_start: i64) -> bool {
    rows.iter()
        .all(|r| r.closed || (r.tally == r.flushed && !over(r, current_period_start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV: Period = Period {
        start_ms: 100,
        end_ms: 200,
    };
    const DEC: Period = Period {
        start_ms: 200,
        end_ms: 300,
    };

    fn acme() -> Stamp {
        Stamp {
            customer: "acme".into(),
            plan: "open".into(),
            livemode: true,
        }
    }

    fn tally(requests: u64, input: u64) -> Tally {
        Tally {
            requests,
            input,
            ..Tally::default()
        }
    }

    fn row(period: Period, t: Tally, flushed: Tally) -> FlushRow {
        FlushRow {
            period,
            meter: "chat.completions".into(),
            model: "m".into(),
            tally: t,
            flushed,
            closed: false,
        }
    }

    #[test]
    fn delta_is_what_was_not_acknowledged() {
        let rows = [row(NOV, tally(5, 500), tally(2, 200))];
        let recs = take(&acme(), &rows, &[], NOV.start_ms, (7, 10), 150);
        assert_eq!(recs.len(), 1);
        // 5 - 2 requests, 500 - 200 tokens, over sequence numbers 8..=10
        assert_eq!((recs[0].requests, recs[0].input_tokens), (3, 300));
        assert_eq!(
            (recs[0].seq_from, recs[0].seq_to, recs[0].is_final),
            (8, 10, false)
        );
        // Taking again from the same state gives the same ids: a retry is recognisable.
        assert_eq!(
            take(&acme(), &rows, &[], NOV.start_ms, (7, 10), 999)[0].id,
            recs[0].id
        );
        assert!(!is_clean(&rows, NOV.start_ms));
    }

    #[test]
    fn acknowledged_current_rows_are_clean_and_send_nothing() {
        let rows = [row(NOV, tally(5, 500), tally(5, 500))];
        assert!(take(&acme(), &rows, &[], NOV.start_ms, (10, 10), 150).is_empty());
        assert!(is_clean(&rows, NOV.start_ms));
    }

    #[test]
    fn a_finished_period_sends_a_final_record_even_without_change() {
        let rows = [
            row(NOV, tally(5, 500), tally(5, 500)),
            row(DEC, tally(1, 10), Tally::default()),
        ];
        let recs = take(&acme(), &rows, &[], DEC.start_ms, (10, 11), 250);
        let nov = recs
            .iter()
            .find(|r| r.period_start_ms == NOV.start_ms)
            .unwrap();
        assert!(nov.is_final && nov.requests == 0);
        let dec = recs
            .iter()
            .find(|r| r.period_start_ms == DEC.start_ms)
            .unwrap();
        assert!(!dec.is_final && dec.requests == 1);
        assert!(!is_clean(&rows, DEC.start_ms));
        let closed = [FlushRow {
            closed: true,
            ..rows[0].clone()
        }];
        assert!(is_clean(&closed, DEC.start_ms));
        assert!(take(&acme(), &closed, &[], DEC.start_ms, (11, 11), 250).is_empty());
    }

    #[test]
    fn snapshots_in_flight_are_not_taken_again_and_acks_add_up() {
        let mut rows = [row(NOV, tally(3, 300), Tally::default())];
        let first = take(&acme(), &rows, &[], NOV.start_ms, (0, 3), 110);
        // Two more requests arrive while the first snapshot is in flight.
        rows[0].tally = tally(5, 500);
        let second = take(&acme(), &rows, &first, NOV.start_ms, (3, 5), 120);
        assert_eq!(second.len(), 1);
        // (5 - 0 flushed - 3 in flight) requests, (500 - 300) tokens, over 4..=5
        assert_eq!((second[0].requests, second[0].input_tokens), (2, 200));
        assert_eq!((second[0].seq_from, second[0].seq_to), (4, 5));
        assert_ne!(second[0].id, first[0].id);
        let both = [first.clone(), second.clone()].concat();
        assert!(take(&acme(), &rows, &both, NOV.start_ms, (5, 5), 130).is_empty());
        // Acknowledged in either order, in one call: 3 + 2 requests, 300 + 200 tokens.
        let acked = acknowledge(&rows, &[second[0].clone(), first[0].clone()]);
        assert_eq!(acked.len(), 1);
        assert_eq!(acked[0].flushed, tally(5, 500));
        assert!(!acked[0].closed && is_clean(&acked, NOV.start_ms));
    }

    #[test]
    fn a_final_record_in_flight_is_the_last_of_its_row() {
        let rows = [row(NOV, tally(2, 20), tally(1, 10))];
        let fin = take(&acme(), &rows, &[], DEC.start_ms, (4, 6), 250);
        assert!(fin[0].is_final && fin[0].requests == 1);
        assert!(take(&acme(), &rows, &fin, DEC.start_ms, (6, 6), 260).is_empty());
        let acked = acknowledge(&rows, &fin);
        assert!(acked[0].closed && acked[0].flushed == tally(2, 20));
        assert!(is_clean(&acked, DEC.start_ms));
    }

    #[test]
    fn acknowledgements_split_what_is_pending_and_add_to_the_rows() {
        let rows = vec![row(NOV, tally(5, 50), tally(0, 0))];
        let first = take(&acme(), &rows, &[], NOV.start_ms, (0, 3), 150);
        assert_eq!(first.len(), 1, "{first:?}");
        let mut pending = first.clone();
        let mut rows_now = rows.clone();
        rows_now[0].tally = tally(7, 70);
        pending.extend(take(
            &acme(),
            &rows_now,
            &pending,
            DEC.start_ms,
            (3, 5),
            160,
        ));
        assert_eq!(pending.len(), 2);
        // Only the first is acknowledged (and an id the counter never held changes nothing).
        let ids = vec![pending[0].id.clone(), "rec_unknown".to_string()];
        let done = apply_acks(&rows_now, pending.clone(), &ids, 0);
        assert_eq!((done.acked, done.pending.len()), (1, 1));
        assert_eq!(done.pending[0].id, pending[1].id);
        assert_eq!(done.rows[0].flushed, delta_of(&pending[0]));
        assert!(!done.rows[0].closed, "its period is still running");
        assert_eq!(done.flushed_seq, pending[0].seq_to);
        // Nothing acknowledged: nothing moves, and the watermark never goes back.
        let none = apply_acks(&rows_now, pending.clone(), &[], 9);
        assert_eq!(
            (none.acked, none.pending.len(), none.flushed_seq),
            (0, 2, 9)
        );
        assert!(none.rows.is_empty());
    }

    #[test]
    fn tally_arithmetic_round_trips() {
        let a = Tally {
            requests: 3,
            input: 10,
            output: 4,
            cached: 2,
            reasoning: 1,
            images: 1,
            duration_ms: 9,
            estimated: 1,
            ..Tally::default()
        };
        let b = Tally {
            requests: 1,
            input: 4,
            output: 1,
            cached: 1,
            reasoning: 0,
            images: 0,
            duration_ms: 2,
            estimated: 0,
            ..Tally::default()
        };
        assert_eq!(a.minus(&b).plus(&b), a);
        assert!(b.minus(&a).is_zero());
    }
}
