//! Tests of the counter's push bookkeeping through lost answers and partial
//! acknowledgements.
use super::*;
use crate::period::Period;
use crate::tally::Tally;
use crate::usage::Usage;

const PERIOD: Period = Period {
    start_ms: 1_000,
    end_ms: 2_000,
};

fn stamp() -> Stamp {
    Stamp {
        customer: "c".into(),
        plan: "open".into(),
        livemode: true,
    }
}

fn row(model: &str, input: u64) -> FlushRow {
    let mut tally = Tally::default();
    let usage = Usage {
        input,
        ..Usage::default()
    };
    tally.add(&usage, false);
    FlushRow {
        period: PERIOD,
        meter: "chat.completions".into(),
        model: model.into(),
        tally,
        flushed: Tally::default(),
        closed: false,
    }
}

fn ids(records: &[UsageRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

#[test]
fn a_lost_answer_pushes_the_same_records_again_and_nothing_new() {
    let mut p = PushState::default();
    let rows = [row("a", 10)];
    let first = p.take_new(&stamp(), &rows, 1, 0, 1_500);
    assert_eq!((first.new, first.records.len(), first.seq), (1, 1, 1));
    // The shard's answer was lost: nothing changed meanwhile, the same id goes again.
    let again = p.take_new(&stamp(), &rows, 1, 0, 1_600);
    assert_eq!((again.new, ids(&again.records)), (0, ids(&first.records)));
    let applied = p.acknowledged(&rows, &ids(&again.records), &again, 1_600);
    assert_eq!(applied.acked, 1);
    assert_eq!(applied.rows[0].flushed, rows[0].tally);
    assert!(p.pending.is_empty());
    assert_eq!((p.flushed_seq, p.pushed_seq), (1, 1));
}

#[test]
fn only_acknowledged_records_move_the_watermark() {
    let mut p = PushState::default();
    let rows = [row("a", 10), row("b", 20)];
    let taken = p.take_new(&stamp(), &rows, 3, 0, 1_500);
    assert_eq!(taken.new, 2);
    let first = vec![taken.records[0].id.clone()];
    let applied = p.acknowledged(&rows, &first, &taken, 1_500);
    assert_eq!((applied.acked, p.pending.len()), (1, 1));
    assert_eq!(p.flushed_seq, 3);
    // An id this counter does not hold changes nothing.
    let stranger = p.acknowledged(&rows, &["x".to_string()], &taken, 1_600);
    assert_eq!((stranger.acked, p.pending.len()), (0, 1));
}

#[test]
fn failures_count_up_until_a_push_reaches_the_shard() {
    let mut p = PushState::default();
    p.failed(1_000);
    p.failed(2_000);
    assert_eq!((p.failures, p.last_push_ms), (2, Some(2_000)));
    let rows = [row("a", 1)];
    let after = p.after(4, &rows, 2_000, None, 2_000);
    assert_eq!(
        after.period_end_ms,
        Some(2_000),
        "its rows need a final record"
    );
    assert_eq!(p.after(4, &[], 2_000, None, 2_000).period_end_ms, None);
    assert_eq!(after.failures, 2);
    assert!(after.changed_since, "seq 4 was never taken");
    let taken = p.take_new(&stamp(), &rows, 4, 0, 3_000);
    p.acknowledged(&rows, &[], &taken, 3_000);
    assert_eq!(p.failures, 0);
    assert!(!p.after(4, &rows, 2_000, None, 3_000).changed_since);
    assert_eq!(p.pending.len(), 1, "unacknowledged records are held");
}

#[test]
fn a_finished_period_gets_one_final_record() {
    let mut p = PushState::default();
    let rows = [row("a", 10)];
    let taken = p.take_new(&stamp(), &rows, 1, PERIOD.end_ms, 2_100);
    assert!(taken.records[0].is_final);
    let again = p.take_new(&stamp(), &rows, 1, PERIOD.end_ms, 2_200);
    assert_eq!(again.new, 0, "the final record is in flight already");
}
