//! Tests of `reconcile`: every step agrees, a held record explains a gap, estimates
//! are split out, and usage nobody handed over is unexplained.
use super::*;

fn tally(requests: u64, input: u64, output: u64) -> Tally {
    Tally {
        requests,
        input,
        output,
        ..Tally::default()
    }
}

fn held(id: &str, t: Tally) -> UsageRecord {
    UsageRecord {
        id: id.into(),
        meter: "chat.completions".into(),
        model: "m".into(),
        requests: t.requests,
        input_tokens: t.input,
        output_tokens: t.output,
        ..UsageRecord::default()
    }
}

fn counter(metered: Tally, acknowledged: Tally, held_records: Vec<UsageRecord>) -> CounterView {
    CounterView {
        period: Period {
            start_ms: 0,
            end_ms: 10,
        },
        rows: vec![CounterRow {
            meter: "chat.completions".into(),
            model: "m".into(),
            metered,
            acknowledged,
            closed: false,
        }],
        held: held_records,
        settled_since_taken: 0,
    }
}

fn ledger(rated: Tally, stored: &[&str]) -> LedgerView {
    LedgerView {
        totals: vec![("chat.completions".into(), "m".into(), rated)],
        stored_held: stored.iter().map(|s| s.to_string()).collect(),
        refused_held: BTreeMap::new(),
    }
}

#[test]
fn everything_flushed_and_rated_has_no_difference() {
    let t = tally(3, 30, 9);
    let r = report("c", true, &counter(t, t, vec![]), Some(&ledger(t, &[])), 5);
    assert!(r.differences.is_empty(), "{:?}", r.differences);
    assert_eq!((r.unexplained, r.lines[0].rated), (0, Some(t)));
}

#[test]
fn held_records_and_stored_ones_explain_their_gaps_exactly() {
    let (acked, waiting, stored) = (tally(2, 20, 6), tally(1, 10, 3), tally(1, 5, 1));
    let metered = acked.plus(&waiting).plus(&stored);
    let view = counter(metered, acked, vec![held("a", waiting), held("b", stored)]);
    let r = report(
        "c",
        true,
        &view,
        Some(&ledger(acked.plus(&stored), &["b"])),
        5,
    );
    assert_eq!(r.unexplained, 0, "{:?}", r.differences);
    let between: Vec<&str> = r.differences.iter().map(|d| d.between.as_str()).collect();
    assert_eq!(between, ["held", "rated - acknowledged"]);
    assert_eq!(r.differences[0].amounts["input"], 15);
    assert!(r.differences[0].cause.starts_with("2 record(s)"));
    assert!(r.differences[1]
        .cause
        .starts_with("1 record(s) stored by the ledger"));
}

#[test]
fn estimates_are_split_from_what_the_provider_reported() {
    let mut t = tally(4, 100, 40);
    (t.estimated, t.estimated_input, t.estimated_output) = (1, 25, 12);
    let r = report("c", true, &counter(t, t, vec![]), None, 5);
    let line = &r.lines[0];
    assert_eq!((line.reported_input, line.reported_output), (75, 28));
    assert_eq!((line.estimated_requests, line.estimated_input), (1, 25));
    assert_eq!(line.rated, None, "rated elsewhere");
    assert_eq!(r.unexplained, 0);
    let d = &r.differences[0];
    assert_eq!(d.between, "metered - reported");
    assert_eq!(
        d.amounts,
        BTreeMap::from([("input".into(), 25), ("output".into(), 12)])
    );
    assert!(d.explained && d.cause.starts_with("1 request(s) estimated"));
}

#[test]
fn usage_nobody_handed_over_or_lost_bookkeeping_is_unexplained() {
    let t = tally(2, 20, 6);
    // the ledger holds one request more than the counter ever handed over
    let r = report(
        "c",
        true,
        &counter(t, t, vec![]),
        Some(&ledger(tally(3, 20, 6), &[])),
        5,
    );
    assert_eq!(r.unexplained, 1, "{:?}", r.differences);
    let d = r.differences.iter().find(|d| !d.explained).unwrap();
    assert_eq!(d.amounts, BTreeMap::from([("requests".into(), 1)]));
    // the counter metered more than it acknowledged and holds: not taken yet while
    // settlements came since its last push and the period is open; lost otherwise
    let mut view = counter(t, tally(1, 10, 3), vec![]);
    assert_eq!(
        report("c", true, &view, None, 5).unexplained,
        1,
        "nothing settled since"
    );
    view.settled_since_taken = 2;
    let r = report("c", true, &view, None, 5);
    assert_eq!(r.unexplained, 0, "{:?}", r.differences);
    assert!(r.differences[0].cause.starts_with("2 settlement(s) since"));
    view.rows[0].closed = true;
    assert_eq!(report("c", true, &view, None, 5).unexplained, 1);
    // acknowledged and held add up to more than was metered: counted twice
    let r = report(
        "c",
        true,
        &counter(t, t, vec![held("a", tally(1, 0, 0))]),
        None,
        5,
    );
    assert_eq!(r.unexplained, 1, "{:?}", r.differences);
    // a model only the ledger knows is unexplained too
    let mut other = ledger(t, &[]);
    other
        .totals
        .push(("chat.completions".into(), "x".into(), tally(1, 1, 1)));
    let r = report("c", true, &counter(t, t, vec![]), Some(&other), 5);
    assert_eq!(r.unexplained, 1, "{:?}", r.differences);
}

#[test]
fn a_fleet_summary_adds_reports_up_and_names_who_to_look_at() {
    let t = tally(2, 20, 6);
    let good = report("a", true, &counter(t, t, vec![]), Some(&ledger(t, &[])), 5);
    let bad = report(
        "b",
        false,
        &counter(t, t, vec![]),
        Some(&ledger(tally(3, 20, 6), &[])),
        5,
    );
    let mut shard_one = FleetSummary::default();
    shard_one.add(&good);
    let mut shard_two = FleetSummary::default();
    shard_two.add(&bad);
    shard_two.fail("c", "the counter answered 503".into());
    let mut fleet = FleetSummary::default();
    fleet.merge(shard_one);
    fleet.merge(shard_two);
    assert_eq!((fleet.customers, fleet.unexplained), (2, 1));
    assert_eq!(fleet.customers_unexplained, ["test:b"]);
    assert_eq!(fleet.metered, t.plus(&t));
    assert_eq!(fleet.rated.requests, 5);
    assert_eq!((fleet.failed.len(), fleet.failed_count), (1, 1));
}

#[test]
fn an_estimate_replaced_after_it_was_flushed_is_named() {
    // Acknowledged: one request estimated at 100 in, 50 out. The provider's report came
    // later: 60 in, 20 out. Records only add, so the ledger keeps the estimate.
    let mut acked = tally(1, 100, 50);
    (
        acked.estimated,
        acked.estimated_input,
        acked.estimated_output,
    ) = (1, 100, 50);
    let metered = tally(1, 60, 20);
    let r = report(
        "c",
        true,
        &counter(metered, acked, vec![]),
        Some(&ledger(acked, &[])),
        5,
    );
    assert_eq!(r.unexplained, 0, "{:?}", r.differences);
    let d = &r.differences[0];
    assert!(
        d.cause.starts_with("1 estimated request(s) settled"),
        "{}",
        d.cause
    );
    assert_eq!(d.amounts["input"], -40);
}

#[test]
fn differences_of_saturated_counters_do_not_wrap() {
    let big = Tally {
        input: u64::MAX,
        ..Tally::default()
    };
    assert_eq!(difference(&big, &Tally::default())["input"], i64::MAX);
    assert_eq!(difference(&Tally::default(), &big)["input"], i64::MIN);
}

#[test]
fn a_held_record_refused_for_good_is_named_as_never_billed() {
    let (acked, late) = (tally(2, 20, 6), tally(1, 10, 3));
    let view = counter(acked.plus(&late), acked, vec![held("late", late)]);
    let mut l = ledger(acked, &[]);
    l.refused_held
        .insert("late".into(), "the backdating window closed".into());
    let r = report("c", true, &view, Some(&l), 5);
    assert_eq!(r.unexplained, 0, "{:?}", r.differences);
    let d = r
        .differences
        .iter()
        .find(|d| d.between == "held (refused)")
        .unwrap();
    assert!(
        d.cause
            .contains("never billed: the backdating window closed"),
        "{}",
        d.cause
    );
    assert_eq!(d.amounts["requests"], 1);
}

#[test]
fn the_counter_side_reads_the_current_period_a_stored_one_or_the_anchors() {
    const DAY: i64 = 86_400_000;
    let current = Period {
        start_ms: 40 * DAY,
        end_ms: 70 * DAY,
    };
    let none = |_: i64| Ok::<_, ()>(None);
    let at = 50 * DAY;
    assert_eq!(counter_period(current, 1, at, |_| Err(())), Ok(current));
    // Before the current period: the latest period with rows begun by then.
    let started = counter_period(current, 1, 20 * DAY, |_| Ok::<_, ()>(Some(10 * DAY)));
    let started = started.unwrap();
    assert_eq!(started.start_ms, 10 * DAY);
    // Its rows say where it really ended (it was closed late).
    let ends = [35 * DAY, 41 * DAY];
    let stored = as_stored(started, current, ends.into_iter());
    assert_eq!((stored.start_ms, stored.end_ms), (10 * DAY, 41 * DAY));
    assert_eq!(as_stored(current, current, ends.into_iter()), current);
    // No rows at all: the anchor's period at that time.
    let anchored = counter_period(current, 1, 20 * DAY, none).unwrap();
    assert_eq!(anchored, period_at(20 * DAY, 1));
}

#[test]
fn the_report_at_finalization_is_the_one_kept_or_the_first_read_after() {
    let kept = Report {
        customer: "kept".into(),
        ..Report::default()
    };
    let now = Report {
        customer: "now".into(),
        ..Report::default()
    };
    let shown = |kept, is_final| at_finalization(kept, is_final, now.clone());
    assert_eq!(shown(Some(kept.clone()), true), (Some(kept), false));
    assert_eq!(shown(None, true), (Some(now.clone()), true));
    assert_eq!(shown(None, false), (None, false), "open: none yet");
}

#[test]
fn only_an_unexplained_report_is_looked_at_again() {
    let mut r = Report::default();
    assert!(!r.needs_second_look());
    r.unexplained = 2;
    assert!(r.needs_second_look());
}
