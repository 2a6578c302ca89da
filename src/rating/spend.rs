//! The usage charges of a period so far, exact and unrounded, in the price book's
//! currency: what the edge checks spend caps against and reports as cost so far. It is
//! the invoice's own arithmetic (the same charge lines), so the edge and the rated
//! invoice agree for the same usage.

use super::input::{MeterTotal, RatingInput};
use super::line::{LineKind, Proration};
use super::lines::{check_input, fold_unpriced, segment_lines};
use super::{PriceBook, RatingError};
use crate::period::Period;
use rust_decimal::Decimal;

/// Exact sum of the usage lines (and per-charge minimums' true-ups excluded: they are
/// not usage) that `usage` makes under `plan` over a whole `period`.
pub fn usage_amount(
    book: &PriceBook,
    plan: &str,
    period: Period,
    usage: Vec<MeterTotal>,
) -> Result<Decimal, RatingError> {
    let input = RatingInput::single(plan, period, usage, period.start_ms);
    let input = fold_unpriced(book, &input);
    check_input(book, &input).map_err(|e| e.in_document("input"))?;
    let whole = Proration {
        days: 1,
        period_days: 1,
    };
    let lines = segment_lines(
        book,
        &input.segments[0],
        whole,
        Decimal::ONE,
        &book.currency,
    );
    Ok(lines
        .iter()
        .filter(|l| l.kind() == LineKind::Usage)
        .map(|l| l.exact_amount())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixtures::*;
    use super::*;
    use crate::rating::BillableMeter;

    fn units(meter: BillableMeter, model: &str, units: u64) -> MeterTotal {
        MeterTotal {
            meter,
            model: model.into(),
            units,
        }
    }

    #[test]
    fn per_unit_and_graduated_usage_is_exact() {
        let b = book();
        // payg: gpt-4o input 2.50/M; other input 0.15/M; output graduated 0.60/M to 10M then 0.40/M
        let usage = vec![
            units(BillableMeter::InputTokens, "gpt-4o", 2_000_000),
            units(BillableMeter::InputTokens, "gpt-4o-mini", 1_000_000),
            units(BillableMeter::OutputTokens, "gpt-4o", 12_000_000),
        ];
        // 2*2.50 + 1*0.15 + 10*0.60 + 2*0.40 = 5 + 0.15 + 6 + 0.8 = 11.95
        assert_eq!(
            usage_amount(&b, "payg", april(), usage).unwrap(),
            d("11.95")
        );
    }

    #[test]
    fn included_units_make_usage_free_and_base_fees_are_not_usage() {
        let b = book();
        // pro: 5M input included, base fee 49 and a 100 minimum that are not usage
        let usage = vec![units(BillableMeter::InputTokens, "gpt-4o", 5_000_000)];
        assert_eq!(
            usage_amount(&b, "pro", april(), usage).unwrap(),
            Decimal::ZERO
        );
        // 6M: 1M over at 1.00/M (volume tier 1)
        let usage = vec![units(BillableMeter::InputTokens, "gpt-4o", 6_000_000)];
        assert_eq!(usage_amount(&b, "pro", april(), usage).unwrap(), d("1.00"));
    }

    #[test]
    fn unpriced_usage_is_an_error() {
        let usage = vec![units(BillableMeter::Images, "x", 1)];
        assert!(usage_amount(&book(), "payg", april(), usage).is_err());
    }

    #[test]
    fn newer_meters_a_book_does_not_price_are_rated_as_plain_input() {
        // payg prices gpt-4o input at 2.50/M and has no cache-write or audio charge:
        // 1M written to the cache and 1M of audio are rated with the 2M of input, as
        // they were before they were metered apart; images still have no charge.
        let usage = vec![
            units(BillableMeter::InputTokens, "gpt-4o", 2_000_000),
            units(BillableMeter::CacheWriteTokens, "gpt-4o", 500_000),
            units(BillableMeter::CacheWrite1hTokens, "gpt-4o", 500_000),
            units(BillableMeter::AudioInputTokens, "gpt-4o", 1_000_000),
        ];
        assert_eq!(
            usage_amount(&book(), "payg", april(), usage).unwrap(),
            d("10.00")
        );
        let usage = vec![units(BillableMeter::Images, "gpt-4o", 1)];
        assert!(usage_amount(&book(), "payg", april(), usage).is_err());
    }
}
