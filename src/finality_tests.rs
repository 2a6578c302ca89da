//! Tests of `finality`: the windows, corrections, where they land, numbers.
use super::*;

const END: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn a_period_is_final_its_grace_days_after_its_final_records() {
    let f = Finality::from_days(None, None);
    assert_eq!(f.final_at(END), END + 3 * DAY_MS);
    let zero = Finality::from_days(Some(0), None);
    assert_eq!(zero.final_at(END), END);
}

#[test]
fn late_usage_is_taken_within_the_backdating_window_and_refused_after() {
    let f = Finality::from_days(None, None);
    assert_eq!(f.late(END, END + 35 * DAY_MS - 1), Late::Adjust);
    match f.late(END, END + 35 * DAY_MS) {
        Late::Refuse(why) => assert!(why.contains("2026-02-05"), "{why}"),
        other => panic!("{other:?}"),
    }
    let short = Finality::from_days(None, Some(1));
    assert!(matches!(short.late(END, END + DAY_MS), Late::Refuse(_)));
}

#[test]
fn a_correction_is_what_is_owed_now_less_what_was_billed() {
    let period = Period {
        start_ms: END - 31 * DAY_MS,
        end_ms: END,
    };
    let billed = Charges {
        net: d("10.00"),
        tax: d("0.80"),
    };
    let late = Since {
        late_records: 2,
        final_under: "v1",
        rated_under: "v1",
    };
    assert_eq!(correction(period, billed, billed, late), None);
    let now = Charges {
        net: d("12.50"),
        tax: d("1.00"),
    };
    let a = correction(period, now, billed, late).unwrap();
    assert_eq!((a.net, a.tax), (d("2.50"), d("0.20")));
    assert!(
        a.reason.contains("2 usage record(s) arrived after"),
        "{}",
        a.reason
    );
    let cheaper = Charges {
        net: d("9.00"),
        tax: d("0.72"),
    };
    let book = Since {
        late_records: 0,
        rated_under: "v2",
        ..late
    };
    let a = correction(period, cheaper, billed, book).unwrap();
    assert_eq!((a.net, a.tax), (d("-1.00"), d("-0.08")));
    assert_eq!(a.reason, "re-rated under price book v2 (final under v1)");
    let account = Since {
        late_records: 0,
        ..late
    };
    let a = correction(period, cheaper, billed, account).unwrap();
    assert!(a.reason.contains("account changed"), "{}", a.reason);
    // once a later final invoice carried it, the billed sum agrees and nothing is left
    let after = billed.plus(Charges {
        net: d("2.50"),
        tax: d("0.20"),
    });
    assert_eq!(correction(period, now, after, late), None);
}

#[test]
fn a_correction_lands_on_the_first_open_period_after_the_final_one() {
    assert_eq!(lands_on(100, &[300, 200, 50]), Some(200));
    assert_eq!(lands_on(300, &[300, 200, 50]), None);
}

#[test]
fn invoice_numbers_are_padded_and_ordered() {
    assert_eq!(invoice_number("EM-", 42), "EM-000042");
    assert!(invoice_number("EM-", 9) < invoice_number("EM-", 10));
    assert_eq!(invoice_number("EM-", 1_234_567), "EM-1234567");
}

#[test]
fn periods_become_final_in_order_and_an_open_one_holds_back_the_rest() {
    let f = Finality::from_days(None, None);
    let (jan, feb) = (END - 31 * DAY_MS, END);
    // February's final records came and its grace is over, but January's have not.
    let later_due = [(feb, Some(feb + 31 * DAY_MS)), (jan, None)];
    assert_eq!(f.next(&later_due, feb + 40 * DAY_MS), Next::Wait);
    let both = [(feb, Some(END + 31 * DAY_MS)), (jan, Some(END))];
    assert_eq!(
        f.next(&both, END + DAY_MS),
        Next::WaitUntil(END + 3 * DAY_MS)
    );
    assert_eq!(f.next(&both, END + 3 * DAY_MS), Next::Finalize(jan));
    assert_eq!(f.next(&[], END), Next::Wait);
}

#[test]
fn a_final_period_is_corrected_for_uncarried_late_records_or_inside_its_window() {
    let f = Finality::from_days(None, None);
    let inside = END + DAY_MS;
    let after = END + 40 * DAY_MS;
    assert!(
        f.corrects(END, 0, 0, inside),
        "a changed book, inside the window"
    );
    assert!(!f.corrects(END, 0, 0, after), "a changed book, after it");
    assert!(
        f.corrects(END, 2, 1, after),
        "a late record not carried yet"
    );
    assert!(!f.corrects(END, 2, 2, after), "every late record carried");
}

#[test]
fn test_invoices_are_numbered_apart_under_the_deployments_prefix() {
    assert_eq!(invoice_prefix(None, true), "EM-");
    assert_eq!(invoice_prefix(None, false), "EM-TEST-");
    assert_eq!(invoice_prefix(Some("ACME-"), false), "ACME-TEST-");
    assert_eq!(invoice_number(&invoice_prefix(None, true), 42), "EM-000042");
}
