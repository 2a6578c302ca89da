//! Tests of the holder's lease book.
use super::*;
use crate::lease::LEASE_MS;

const NOW: i64 = 1_764_547_200_000;

fn one() -> Slice {
    Slice {
        requests: 1,
        tokens: 20,
        cost: rust_decimal::Decimal::ZERO,
    }
}

fn book(requests: u64) -> LeaseBook {
    let mut b = LeaseBook::default();
    let grant = Grant {
        requests,
        tokens: Some(20 * requests),
        cost: None,
        concurrent: None,
    };
    b.install(
        "cus/key",
        "cus",
        7,
        Held::new(7, "pro".into(), grant, NOW, LEASE_MS),
        NOW,
    );
    b
}

fn key() -> MeterKey {
    ("chat.completions".into(), "m".into())
}

#[test]
fn it_admits_within_the_grant_and_the_window_only() {
    let mut b = book(3);
    assert_eq!(b.plan("cus/key", NOW), Some("pro"));
    for _ in 0..3 {
        assert!(b.admit("cus/key", &one(), NOW + 1).is_some());
    }
    assert_eq!(b.admit("cus/key", &one(), NOW + 1), None, "spent");
    let mut b = book(3);
    assert_eq!(
        b.admit("cus/key", &one(), NOW + LEASE_MS),
        None,
        "its window is over"
    );
    assert_eq!(b.plan("cus/key", NOW + LEASE_MS), None);
    assert_eq!(
        b.admit("other", &one(), NOW),
        None,
        "another holder has none"
    );
}

#[test]
fn reports_are_due_by_age_or_count_and_are_cumulative() {
    let mut b = book(2 * REPORT_CHANGES);
    let a = b.admit("cus/key", &one(), NOW).unwrap();
    assert!(!b.due("cus", NOW + REPORT_MS - 1));
    assert!(b.due("cus", NOW + REPORT_MS));
    let u = Usage {
        input: 10,
        output: 5,
        ..Usage::default()
    };
    b.finish(&a, Some((&key(), &u, false)), NOW + 1);
    let first = b.take_at("cus", NOW + 2);
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].admitted.requests, first[0].finished.requests),
        (1, 1)
    );
    assert!(b.take_at("cus", NOW + 3).is_empty(), "nothing new");
    let mut n = 0;
    while !b.due("cus", NOW + 3) {
        b.admit("cus/key", &one(), NOW + 3).unwrap();
        n += 1;
    }
    assert_eq!(n, REPORT_CHANGES);
    let second = b.take_at("cus", NOW + 3);
    assert_eq!(second[0].admitted.requests, 1 + REPORT_CHANGES);
    assert_eq!(second[0].usage, vec![(key(), Tally::one(&u, false))]);
    assert!(second[0].seq > first[0].seq);
}

#[test]
fn a_failed_report_is_sent_again_and_a_finished_lease_is_forgotten() {
    let mut b = book(10);
    let a = b.admit("cus/key", &one(), NOW).unwrap();
    let sent = b.take_at("cus", NOW + 1);
    b.failed("cus", &sent, NOW + 2);
    assert_eq!(b.take_at("cus", NOW + 3), sent, "the same report again");
    b.finish(&a, None, NOW + 4);
    let last = b.retire("cus/key", NOW + 5);
    assert!(last[0].done && last[0].open().requests == 0);
    assert!(last[0].usage.is_empty(), "a released request used nothing");
    assert!(b.is_empty(), "nothing more can change");
    b.failed("cus", &last, NOW + 6);
    assert_eq!(
        b.take_at("cus", NOW + 7),
        last,
        "kept until it is delivered"
    );
    assert!(b.is_empty());
}

#[test]
fn a_lease_whose_window_ended_reports_done() {
    let mut b = book(10);
    let a = b.admit("cus/key", &one(), NOW).unwrap();
    b.finish(&a, None, NOW + 1);
    let reports = b.take_at("cus", NOW + LEASE_MS);
    assert!(reports[0].done);
    assert!(b.is_empty());
}

#[test]
fn a_lease_replaced_by_a_concurrent_grant_is_returned() {
    let mut b = book(10);
    b.admit("cus/key", &one(), NOW).unwrap();
    let grant = Grant {
        requests: 5,
        tokens: None,
        cost: None,
        concurrent: Some(1),
    };
    b.install(
        "cus/key",
        "cus",
        8,
        Held::new(8, "pro".into(), grant, NOW, LEASE_MS),
        NOW + 1,
    );
    let a = b.admit("cus/key", &one(), NOW + 2).unwrap();
    assert_eq!(a.lease, 8, "the newest admits");
    assert_eq!(b.admit("cus/key", &one(), NOW + 2), None, "one at a time");
    b.finish(&a, None, NOW + 2);
    assert!(
        b.admit("cus/key", &one(), NOW + 2).is_some(),
        "the slot is free again"
    );
    let reports = b.take_at("cus", NOW + 3);
    let old = reports.iter().find(|r| r.lease == 7).unwrap();
    assert!(old.done, "the replaced one says it is done: {old:?}");
}

#[test]
fn a_counter_s_leases_can_all_be_retired_at_once() {
    let mut b = book(10);
    b.retire_counter("other", NOW);
    assert!(b.admit("cus/key", &one(), NOW).is_some());
    b.retire_counter("cus", NOW + 1);
    assert_eq!(b.admit("cus/key", &one(), NOW + 2), None);
    assert!(b.take_at("cus", NOW + 3)[0].done);
}

#[test]
fn one_waiter_per_counter_carries_every_change_until_it_wakes() {
    let mut b = book(10);
    b.admit("cus/key", &one(), NOW).unwrap();
    assert_eq!(b.schedule("cus", NOW), Wake::At(NOW + REPORT_MS));
    b.admit("cus/key", &one(), NOW + 1).unwrap();
    assert_eq!(b.schedule("cus", NOW + 1), Wake::Pending);
    assert_eq!(b.schedule("other", NOW + 1), Wake::At(NOW + 1 + REPORT_MS));
    // Once a change is old enough, whoever changes the lease next sends at once.
    assert_eq!(b.schedule("cus", NOW + REPORT_MS), Wake::Now);
    b.woke("cus");
    let sent = b.take_at("cus", NOW + REPORT_MS);
    assert_eq!(sent[0].admitted.requests, 2, "the waiter carries both");
    b.admit("cus/key", &one(), NOW + REPORT_MS + 1).unwrap();
    assert!(matches!(
        b.schedule("cus", NOW + REPORT_MS + 1),
        Wake::At(_)
    ));
}

#[test]
fn a_waiter_that_never_woke_is_replaced() {
    let mut b = book(10);
    b.admit("cus/key", &one(), NOW).unwrap();
    assert_eq!(b.schedule("cus", NOW), Wake::At(NOW + REPORT_MS));
    b.take_at("cus", NOW + 1); // sent by another request; the waiter is still out
    b.admit("cus/key", &one(), NOW + 2 * REPORT_MS).unwrap();
    // Its request was cancelled: a new waiter is made rather than the change left.
    let late = NOW + 2 * REPORT_MS;
    assert_eq!(b.schedule("cus", late), Wake::At(late + REPORT_MS));
}

#[test]
fn batches_that_fail_out_of_order_lose_nothing() {
    // Found by the lease model: the older batch fails after the lease was forgotten,
    // then the newer one fails too; what is sent again must be the newer.
    let mut b = book(10);
    let a = b.admit("cus/key", &one(), NOW).unwrap();
    let first = b.take_at("cus", NOW + 1);
    let u = Usage {
        input: 3,
        ..Usage::default()
    };
    b.finish(&a, Some((&key(), &u, false)), NOW + 2);
    let last = b.retire("cus/key", NOW + 3);
    assert!(b.is_empty());
    b.failed("cus", &first, NOW + 4);
    b.failed("cus", &last, NOW + 5);
    let again = b.take_at("cus", NOW + 6);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].finished.requests, 1, "{again:?}");
    assert_eq!(again[0].usage, last[0].usage);
    assert!(again[0].seq >= last[0].seq);
}

fn install(b: &mut LeaseBook, counter: &str, lease: u64, now: i64) {
    let grant = Grant {
        requests: 10,
        tokens: Some(200),
        cost: None,
        concurrent: None,
    };
    let holder = format!("{counter}/key");
    let held = Held::new(lease, "pro".into(), grant, now, LEASE_MS);
    b.install(&holder, counter, lease, held, now);
}

#[test]
fn a_quiet_key_is_forgotten_once_its_lease_is_over_but_not_a_running_one() {
    let mut b = LeaseBook::default();
    install(&mut b, "quiet", 1, NOW);
    install(&mut b, "running", 2, NOW);
    let u = Usage {
        input: 3,
        ..Usage::default()
    };
    let quiet = b.admit("quiet/key", &one(), NOW).unwrap();
    b.finish(&quiet, Some((&key(), &u, false)), NOW + 1);
    let running = b.admit("running/key", &one(), NOW).unwrap();
    // The window's end: the quiet lease's last report is taken and it is gone; the
    // running one stays until its request finishes.
    let end = NOW + LEASE_MS;
    assert!(b.take_at("quiet", end)[0].done);
    assert_eq!(b.take_at("running", end).len(), 1);
    assert_eq!((b.len(), b.holders()), (1, 2));

    // Within the grace nothing is swept; past it, only the quiet key's entry goes.
    install(&mut b, "late", 3, NOW + RELEASE_GRACE_MS - 1);
    assert_eq!(b.holders(), 3);
    install(&mut b, "later", 4, NOW + 2 * RELEASE_GRACE_MS);
    assert_eq!(b.holders(), 3, "running, late and later");
    assert_eq!(b.plan("quiet/key", end), None);
    b.finish(&running, Some((&key(), &u, false)), end + 1);
    let last = b.take_at("running", end + 1);
    assert_eq!(last[0].usage, vec![(key(), Tally::one(&u, false))]);
    assert_eq!(last[0].open().requests, 0);
}
