//! Tests of a Ledger's invoices over books in memory: kept invoices, credits drawn in
//! period order, and corrections of final periods.
use super::*;
use crate::rating::LineKind;
use rust_decimal::Decimal;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::str::FromStr;

const DAY: i64 = 86_400_000;
const P1: i64 = 0;
const P2: i64 = 31 * DAY;
const P3: i64 = 59 * DAY;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[derive(Default)]
struct MemoryBooks {
    book: RefCell<Option<Rc<PriceBook>>>,
    account: Option<(Account, String)>,
    totals: BTreeMap<i64, (Vec<MeterTotals>, i64)>,
    finals: BTreeMap<i64, Invoice>,
    kept: RefCell<BTreeMap<i64, Kept>>,
    late: BTreeMap<i64, u64>,
    ratings: RefCell<u32>,
    notes: RefCell<Vec<String>>,
}

impl Books for MemoryBooks {
    fn book(&self) -> Result<Rc<PriceBook>, ApiError> {
        let mut book = self.book.borrow_mut();
        Ok(book
            .get_or_insert_with(|| Rc::new(crate::fixtures::price_book()))
            .clone())
    }
    fn account(&self, _: &PriceBook) -> Result<Option<(Account, String)>, ApiError> {
        Ok(self.account.clone())
    }
    fn livemode(&self) -> Result<bool, ApiError> {
        Ok(true)
    }
    fn finality(&self) -> Finality {
        Finality::from_days(None, None)
    }
    fn recorded_plan(&self, _: i64) -> Result<Option<String>, ApiError> {
        Ok(None)
    }
    fn totals(&self, start: i64) -> Result<(Vec<MeterTotals>, Option<i64>), ApiError> {
        Ok(match self.totals.get(&start) {
            Some((t, end)) => (t.clone(), Some(*end)),
            None => (Vec::new(), None),
        })
    }
    fn starts_before(&self, before: i64) -> Result<Vec<i64>, ApiError> {
        Ok(self.totals.range(..before).map(|(s, _)| *s).collect())
    }
    fn unfinal_starts(&self) -> Result<Vec<i64>, ApiError> {
        let open = self.totals.keys().filter(|s| !self.finals.contains_key(s));
        Ok(open.copied().collect())
    }
    fn latest_end(&self) -> Result<Option<i64>, ApiError> {
        Ok(self.totals.values().map(|(_, end)| *end).max())
    }
    fn finals_before(&self, before: i64) -> Result<Vec<i64>, ApiError> {
        Ok(self.finals.range(..before).map(|(s, _)| *s).collect())
    }
    fn final_invoice(&self, start: i64) -> Result<Option<Invoice>, ApiError> {
        Ok(self.finals.get(&start).cloned())
    }
    fn kept(&self, start: i64) -> Result<Option<Kept>, ApiError> {
        Ok(self.kept.borrow().get(&start).cloned())
    }
    fn keep(&self, start: i64, kept: &Kept) -> Result<(), ApiError> {
        *self.ratings.borrow_mut() += 1;
        let mut all = self.kept.borrow_mut();
        all.retain(|s, _| *s <= start);
        all.insert(start, kept.clone());
        Ok(())
    }
    fn late_records(&self, start: i64) -> Result<u64, ApiError> {
        Ok(self.late.get(&start).copied().unwrap_or(0))
    }
    fn carried(&self, _: i64) -> Result<u64, ApiError> {
        Ok(0)
    }
    fn billed(&self, start: i64) -> Result<Charges, ApiError> {
        Ok(self
            .finals
            .get(&start)
            .map(Charges::own)
            .unwrap_or_default())
    }
    fn note(&self, message: &str) {
        self.notes.borrow_mut().push(message.to_string());
    }
}

fn tokens(input: u64) -> Vec<MeterTotals> {
    let t = Tally {
        requests: 1,
        input,
        ..Tally::default()
    };
    vec![("chat.completions".into(), "gpt-4o-mini".into(), t)]
}

/// A pro customer (base fee 49.00) with a 100.00 grant, and usage in three periods.
fn books() -> MemoryBooks {
    let doc = r#"{"customer_id": "c", "country": "US", "grants": [{"id": "g", "amount": "100", "currency": "USD"}]}"#;
    let account = Account::parse(doc, &crate::fixtures::price_book()).unwrap();
    let mut b = MemoryBooks {
        account: Some((account, "pro".into())),
        ..MemoryBooks::default()
    };
    for (start, end) in [(P1, P2), (P2, P3), (P3, 90 * DAY)] {
        b.totals.insert(start, (tokens(1_000), end));
    }
    b
}

#[test]
fn credits_are_drawn_in_period_order_and_each_period_sees_what_is_left() {
    let b = books();
    let now = 100 * DAY;
    let first = rated_invoice(&b, P1, now).unwrap();
    let second = rated_invoice(&b, P2, now).unwrap();
    let third = rated_invoice(&b, P3, now).unwrap();
    assert!(first.credits_applied > d("49") && first.total.is_zero());
    let left = first.credit_balance;
    assert_eq!(
        second.credits_applied, left,
        "the second draws what the first left"
    );
    assert_eq!(third.credits_applied, Decimal::ZERO);
    assert!(third.total > d("49"));
}

#[test]
fn a_kept_invoice_serves_until_the_book_changes_and_rating_again_forgets_later_ones() {
    let b = books();
    let now = 100 * DAY;
    rated_invoice(&b, P3, now).unwrap();
    let rated = *b.ratings.borrow();
    assert_eq!(
        rated, 3,
        "the third rated the two before it to learn their draws"
    );
    rated_invoice(&b, P3, now).unwrap();
    assert_eq!(*b.ratings.borrow(), rated, "read again: the kept invoice");
    // A new book version: everything is rated again on read.
    let mut book = crate::fixtures::price_book();
    book.version = "next".into();
    *b.book.borrow_mut() = Some(Rc::new(book));
    rated_invoice(&b, P1, now).unwrap();
    assert!(
        b.kept.borrow().keys().all(|s| *s <= P1),
        "later periods drew on it"
    );
}

#[test]
fn an_unratable_period_draws_nothing_and_is_noted() {
    let mut b = books();
    b.totals.insert(P1, (tokens(u64::MAX), P2));
    let mut book = crate::fixtures::price_book();
    book.plans.remove("pro");
    *b.book.borrow_mut() = Some(Rc::new(book));
    let e = rated_invoice(&b, P2, 100 * DAY).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("rating_error"));
    assert!(b
        .notes
        .borrow()
        .iter()
        .any(|n| n.contains("rating period 0")));
}

/// Books whose first period is final, with 1M more tokens for it arriving after. Pay
/// as you go: under pro's minimum commitment a little more usage changes nothing.
fn final_with_late_usage(now: i64) -> MemoryBooks {
    let mut b = books();
    b.account.as_mut().unwrap().1 = "starter".into();
    let billed = rated_invoice(&b, P1, now).unwrap().finalize();
    b.finals.insert(P1, billed);
    b.totals.insert(P1, (tokens(1_001_000), P2));
    b.late.insert(P1, 1);
    b
}

#[test]
fn late_usage_of_a_final_period_is_corrected_on_the_next_open_invoice() {
    let now = 40 * DAY;
    let b = final_with_late_usage(now);
    let adjustments = adjustments_for(&b, P2, now).unwrap();
    assert_eq!(adjustments.len(), 1);
    assert_eq!(adjustments[0].period.start_ms, P1);
    assert!(adjustments[0].net > Decimal::ZERO);
    let second = rated_invoice(&b, P2, now).unwrap();
    let adjustment = second.lines.iter().find(|l| l.kind == LineKind::Adjustment);
    assert!(adjustment.is_some(), "{:?}", second.lines);
    // Nothing lands on a period that is not the next open one.
    assert!(adjustments_for(&b, P3, now).unwrap().is_empty());
}

#[test]
fn a_final_invoice_bills_itself_and_the_corrections_it_carries() {
    let now = 40 * DAY;
    let b = final_with_late_usage(now);
    let made = finalize(&b, P2, "EM-000002", now).unwrap();
    assert_eq!(made.invoice.number.as_deref(), Some("EM-000002"));
    assert_eq!(made.invoice.status, crate::rating::InvoiceStatus::Final);
    let periods: Vec<i64> = made.billed.iter().map(|(p, _)| *p).collect();
    assert_eq!(periods, [P2, P1], "its own charges, then the correction's");
    assert!(made.billed[1].1.net > Decimal::ZERO);
    assert_eq!(made.carried, [P1]);
}
