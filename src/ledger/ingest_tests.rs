//! Tests of `ledger::ingest` on the in-memory store: dedupe whatever the order, late
//! usage counted or refused, the plan and the final records' arrival kept right.
use super::*;
use crate::finality::DAY_MS;
use proptest::prelude::*;

const END: i64 = 31 * DAY_MS;

fn record(seq: u64, model: &str, tokens: u64) -> UsageRecord {
    let mut r = crate::fixtures::record("c", model, (seq, seq), 1);
    r.input_tokens = tokens;
    r
}

fn finality() -> Finality {
    Finality::from_days(None, None)
}

fn take(store: &mut MemoryStore, records: &[UsageRecord], now_ms: i64) -> Ingested {
    ingest(store, records, &finality(), now_ms)
}

#[test]
fn each_record_is_taken_once_even_twice_in_one_batch() {
    let mut store = MemoryStore::default();
    let (a, b) = (record(1, "m", 10), record(2, "m", 5));
    let out = take(&mut store, &[a.clone(), b, a.clone()], 1);
    assert_eq!((out.stored, out.duplicates, out.periods), (2, 1, vec![0]));
    let key = (0, "chat.completions".to_string(), "m".to_string());
    assert_eq!(store.totals[&key].tally.input, 15);
    let again = take(&mut store, &[a], 2);
    assert_eq!((again.stored, again.duplicates), (0, 1));
    assert_eq!(store.totals[&key].tally.input, 15);
}

#[test]
fn the_latest_plan_by_sequence_wins_and_final_records_are_noted_once() {
    let mut store = MemoryStore::default();
    let mut late_plan = record(9, "m", 1);
    late_plan.plan = "pro".into();
    late_plan.id = late_plan.content_id();
    let mut old = record(3, "m", 1);
    old.is_final = true;
    old.id = old.content_id();
    take(&mut store, &[late_plan], 100);
    take(&mut store, &[old], 200);
    let book = &store.periods[&0];
    assert_eq!(book.plan, Some(("pro".to_string(), 9)));
    assert_eq!(book.final_arrived_ms, Some(200));
    let mut another = record(4, "x", 1);
    another.is_final = true;
    another.id = another.content_id();
    take(&mut store, &[another], 300);
    assert_eq!(
        store.periods[&0].final_arrived_ms,
        Some(200),
        "first arrival kept"
    );
    assert!(
        store.totals.values().all(|t| t.is_final),
        "final marked on its totals"
    );
}

#[test]
fn late_usage_is_counted_in_the_window_and_refused_after_it_once() {
    let mut store = MemoryStore::default();
    let first = record(1, "m", 10);
    take(&mut store, std::slice::from_ref(&first), 1);
    store.periods.get_mut(&0).unwrap().invoiced = true;
    let late = record(2, "m", 7);
    let out = take(&mut store, std::slice::from_ref(&late), END + DAY_MS);
    assert_eq!((out.stored, out.refused.len()), (1, 0));
    assert_eq!(store.periods[&0].late_records, 1);
    // a record stored before is a duplicate, never a refusal or a late record
    let out = take(&mut store, &[first, late], END + 40 * DAY_MS);
    assert_eq!((out.duplicates, out.refused.len()), (2, 0));
    assert_eq!(store.periods[&0].late_records, 1);
    // after the window: refused, kept once, never stored
    let too_late = record(3, "m", 5);
    for _ in 0..2 {
        let out = take(
            &mut store,
            std::slice::from_ref(&too_late),
            END + 40 * DAY_MS,
        );
        assert_eq!((out.stored, out.refused.len()), (0, 1));
        assert!(out.refused[0].reason.contains("backdating window closed"));
    }
    assert_eq!(store.refused.len(), 1);
    assert!(!store.seen.contains(&too_late.id));
}

#[test]
fn test_mode_usage_marks_its_ledger() {
    let mut store = MemoryStore::default();
    take(&mut store, &[record(1, "m", 1)], 1);
    assert!(!store.test_mode);
    let mut test = record(2, "m", 1);
    test.livemode = false;
    test.id = test.content_id();
    take(&mut store, &[test], 2);
    assert!(store.test_mode);
}

fn records(spec: &[(u8, u8, u16)]) -> Vec<UsageRecord> {
    // A record's id follows from its content, as the flush's ids do.
    spec.iter()
        .map(|(seq, model, tokens)| {
            let mut r = record(u64::from(*seq), ["m1", "m2", "m3"][*model as usize % 3], 0);
            r.seq_to = u64::from(*tokens);
            r.input_tokens = u64::from(*tokens);
            r.id = r.content_id();
            r
        })
        .collect()
}

proptest! {
    #[test]
    fn re_ingesting_changes_nothing_and_order_does_not_matter(
        first in proptest::collection::vec((0u8..4, 0u8..3, 0u16..5000), 0..40),
        second in proptest::collection::vec((0u8..4, 0u8..3, 0u16..5000), 0..40),
    ) {
        let (a, b) = (records(&first), records(&second));
        let mut once = MemoryStore::default();
        take(&mut once, &a, 1);
        take(&mut once, &b, 1);
        let mut again = once.clone();
        let out = take(&mut again, &b, 1);
        prop_assert_eq!((out.stored, out.duplicates), (0, b.len() as u64));
        take(&mut again, &a, 1);
        prop_assert_eq!(&again, &once);
        let mut other = MemoryStore::default();
        take(&mut other, &b, 1);
        take(&mut other, &a, 1);
        prop_assert_eq!(&other.totals, &once.totals);
        prop_assert_eq!(&other.seen, &once.seen);
    }
}

#[test]
fn a_batch_reads_only_what_it_touches_and_writes_only_what_changed() {
    let mut store = MemoryStore::default();
    let (a, b) = (record(1, "m", 10), record(2, "n", 5));
    take(&mut store, std::slice::from_ref(&a), 1);
    let batch = [a.clone(), b.clone()];
    let known = store.known(&batch);
    assert_eq!(known.seen, BTreeSet::from([a.id.clone()]));
    assert_eq!(known.totals.len(), 1, "the total of n is not there yet");
    let (out, changes) = super::take(&known, &batch, &finality(), 2);
    assert_eq!((out.stored, out.duplicates), (1, 1));
    assert_eq!(changes.stored, vec![(b.id.clone(), 0)]);
    let n = (0, "chat.completions".to_string(), "n".to_string());
    assert_eq!(changes.totals.keys().collect::<Vec<_>>(), vec![&n]);
    assert_eq!(changes.totals[&n].tally.input, 5);
    // only the book's plan sequence moved (to the newer record's)
    let book = &changes.books[&0];
    assert_eq!(book.plan.as_ref().map(|p| p.1), Some(2));
    assert_eq!(book.final_arrived_ms, None);
}

#[test]
fn a_first_final_arrival_is_told_and_a_later_one_is_not() {
    let mut first = record(1, "m", 1);
    first.is_final = true;
    first.id = first.content_id();
    let mut store = MemoryStore::default();
    let (_, changes) = super::take(
        &store.known(std::slice::from_ref(&first)),
        std::slice::from_ref(&first),
        &finality(),
        5,
    );
    assert!(changes.final_arrived);
    store.apply(changes);
    let mut again = record(2, "n", 1);
    again.is_final = true;
    again.id = again.content_id();
    let (_, changes) = super::take(
        &store.known(std::slice::from_ref(&again)),
        std::slice::from_ref(&again),
        &finality(),
        6,
    );
    assert!(
        !changes.final_arrived,
        "the period's final records had arrived already"
    );
}
