//! Building a segment's invoice lines: the prorated base fee, one line per charge (usage
//! matched to it by meter and model), and minimum commitment true-ups. Also the checks
//! the rating input must pass first.

use super::charges::{graduated, package, per_unit, percentage, volume};
use super::input::{BillableMeter, MeterTotal, RatingInput, Segment};
use super::line::{Line, LineKind, Proration};
use super::money::negative;
use super::plan::{BookPlan, Charge, ChargeModel, PackageTerms, PerUnit, PriceBook, Tiered};
use super::tax::TaxTreatment;
use super::validate::MAX_SEGMENTS;
use super::{RatingError, Rounding};
use crate::catalog::MAX_COUNTER;
use rust_decimal::Decimal;

/// The most transaction value one segment can carry (1e15).
const MAX_TRANSACTIONS: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// A line whose amount is rounded but whose tax is not yet split off.
pub(crate) struct LineDraft(Line);

impl LineDraft {
    pub(crate) fn kind(&self) -> super::line::LineKind {
        self.0.kind
    }

    pub(crate) fn exact_amount(&self) -> Decimal {
        self.0.exact_amount
    }

    pub(crate) fn finish(self, tax: &TaxTreatment, rounding: Rounding, currency: &str) -> Line {
        let mut line = self.0;
        let split = tax.split(line.amount, rounding, currency);
        line.net = split.net;
        line.tax = split.tax;
        line.note = tax.note().map(str::to_string);
        line
    }
}

fn fail<T>(path: String, message: impl Into<String>) -> Result<T, RatingError> {
    Err(RatingError::new(path, message))
}

/// The charge of `plan` that prices `meter` for `model`: its own, else the meter's
/// model-less charge.
fn charge_for<'a>(plan: &'a BookPlan, meter: BillableMeter, model: &str) -> Option<&'a Charge> {
    let on_meter = || plan.charges.iter().filter(move |c| c.meter == meter);
    on_meter()
        .find(|c| c.model.as_deref() == Some(model))
        .or_else(|| on_meter().find(|c| c.model.is_none()))
}

/// Meters newer than a price book (cache writes, audio input) that its plan does not
/// price are rated as the model's plain input, as they were before they were metered
/// apart, rather than failing the whole invoice.
pub(crate) fn fold_unpriced(book: &PriceBook, input: &RatingInput) -> RatingInput {
    let mut out = input.clone();
    for s in &mut out.segments {
        let Some(plan) = book.plans.get(&s.plan) else {
            continue;
        };
        let mut folded: Vec<MeterTotal> = Vec::with_capacity(s.usage.len());
        for u in s.usage.drain(..) {
            let newer = matches!(
                u.meter,
                BillableMeter::CacheWriteTokens
                    | BillableMeter::CacheWrite1hTokens
                    | BillableMeter::AudioInputTokens
            );
            let meter = match newer && charge_for(plan, u.meter, &u.model).is_none() {
                true => BillableMeter::InputTokens,
                false => u.meter,
            };
            match folded
                .iter_mut()
                .find(|f| f.meter == meter && f.model == u.model)
            {
                Some(f) => f.units = f.units.saturating_add(u.units),
                None => folded.push(MeterTotal { meter, ..u }),
            }
        }
        s.usage = folded;
    }
    out
}

/// The consistency the input needs beyond its types.
pub(crate) fn check_input(book: &PriceBook, input: &RatingInput) -> Result<(), RatingError> {
    let (start, end) = (input.period.start_ms, input.period.end_ms);
    if end <= start {
        return fail("$.period".into(), "must end after it starts");
    }
    if input.segments.is_empty() || input.segments.len() > MAX_SEGMENTS {
        return fail(
            "$.segments".into(),
            format!("between 1 and {MAX_SEGMENTS} plan segments are required"),
        );
    }
    let mut previous = start;
    for (i, s) in input.segments.iter().enumerate() {
        let base = format!("$.segments[{i}]");
        let Some(plan) = book.plans.get(&s.plan) else {
            return fail(format!("{base}.plan"), format!("unknown plan `{}`", s.plan));
        };
        if s.from_ms < previous || s.from_ms >= end {
            return fail(
                format!("{base}.from_ms"),
                "segments must start in order, within the period",
            );
        }
        previous = s.from_ms;
        // Per meter, the segment's units must fit a counter (< 2^53), like each total.
        let mut per_meter = std::collections::BTreeMap::<BillableMeter, u64>::new();
        for (j, u) in s.usage.iter().enumerate() {
            let path = format!("{base}.usage[{j}]");
            if u.meter == BillableMeter::TransactionValue {
                return fail(
                    format!("{path}.meter"),
                    "transaction values go in `transactions`",
                );
            }
            let sum = per_meter.entry(u.meter).or_default();
            *sum = sum.saturating_add(u.units);
            if *sum > MAX_COUNTER {
                return fail(
                    format!("{path}.units"),
                    format!(
                        "the segment's `{}` units must stay below 2^53",
                        u.meter.name()
                    ),
                );
            }
            if charge_for(plan, u.meter, &u.model).is_none() {
                return fail(
                    path,
                    format!(
                        "plan `{}` has no charge for meter `{}` and model `{}`",
                        s.plan,
                        u.meter.name(),
                        u.model
                    ),
                );
            }
        }
        let mut value_sum = Decimal::ZERO;
        for (j, t) in s.transactions.iter().enumerate() {
            let path = format!("{base}.transactions[{j}]");
            value_sum += t.value.abs().min(MAX_TRANSACTIONS);
            if negative(t.value) || value_sum > MAX_TRANSACTIONS {
                return fail(
                    format!("{path}.value"),
                    "must not be negative, and a segment's values must total at most 1e15",
                );
            }
            if charge_for(plan, BillableMeter::TransactionValue, &t.model).is_none() {
                return fail(
                    path,
                    format!(
                        "plan `{}` has no percentage charge for model `{}`",
                        s.plan, t.model
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Everything one segment needs to price its lines.
struct Ctx<'a> {
    book: &'a PriceBook,
    plan_name: &'a str,
    proration: Proration,
    fx: Decimal,
    currency: &'a str,
}

impl Ctx<'_> {
    /// `amount` (price book currency, full period) prorated and converted, exact.
    fn prorate(&self, amount: Decimal) -> Decimal {
        amount * self.fx * Decimal::from(self.proration.days)
            / Decimal::from(self.proration.period_days)
    }

    fn proration(&self) -> Option<Proration> {
        (self.proration.days != self.proration.period_days).then_some(self.proration)
    }

    fn round(&self, amount: Decimal) -> Decimal {
        self.book.rounding.round(amount, self.currency)
    }

    fn line(&self, kind: LineKind, description: String, exact: Decimal) -> Line {
        let mut line = Line::bare(kind, self.plan_name, description, exact, self.round(exact));
        line.tax = self.round(Decimal::ZERO);
        line
    }

    /// A true-up line bringing `covered` (rounded) up to `minimum` prorated, if short.
    /// Its amount is round(minimum) − covered, so the lines reach the rounded minimum
    /// exactly; its exact amount is the unrounded minimum − covered.
    fn true_up(&self, minimum: Decimal, covered: Decimal, what: &str) -> Option<Line> {
        let exact_min = self.prorate(minimum);
        let short = self.round(exact_min) - covered;
        if short <= Decimal::ZERO {
            return None;
        }
        let mut line = self.line(
            LineKind::MinimumTrueUp,
            format!("Minimum commitment true-up: {what}"),
            exact_min - covered,
        );
        line.amount = short;
        line.net = short;
        line.proration = self.proration();
        Some(line)
    }

    fn charge_line(&self, plan: &BookPlan, charge: &Charge, segment: &Segment) -> Line {
        let covers = |meter: BillableMeter, model: &str| {
            charge_for(plan, meter, model).is_some_and(|c| std::ptr::eq(c, charge))
        };
        let mut line = self.line(LineKind::Usage, charge.label(), Decimal::ZERO);
        let book_amount = if let ChargeModel::Percentage(terms) = &charge.pricing {
            let values: Vec<Decimal> = segment
                .transactions
                .iter()
                .filter(|t| covers(BillableMeter::TransactionValue, &t.model))
                .map(|t| t.value)
                .collect();
            let outcome = percentage(&values, terms);
            line.quantity = Decimal::from(outcome.transactions);
            line.overage = outcome.chargeable_value;
            line.unit_price = Some(terms.rate);
            outcome.amount
        } else {
            let quantity: Decimal = segment
                .usage
                .iter()
                .filter(|u| covers(u.meter, &u.model))
                .map(|u| Decimal::from(u.units) / Decimal::from(u.meter.counted_per_unit()))
                .sum();
            let included = charge.included_units.min(quantity);
            line.quantity = quantity;
            line.included_units = charge.included_units;
            line.included_used = included;
            line.overage = quantity - included;
            self.price_units(charge, &mut line)
        };
        line.meter = Some(charge.meter);
        line.model = charge.model.clone();
        line.exact_amount = book_amount * self.fx;
        line.amount = self.round(line.exact_amount);
        line.net = line.amount;
        line
    }

    /// Prices `line.overage` by a unit-based model; fills the line's price details.
    fn price_units(&self, charge: &Charge, line: &mut Line) -> Decimal {
        let q = line.overage;
        let per = charge.per();
        let zero = self.book.zero_usage_flat_fee;
        match &charge.pricing {
            ChargeModel::PerUnit(PerUnit { unit_price }) => {
                line.unit_price = Some(*unit_price);
                line.price_per = charge.price_per;
                per_unit(q, *unit_price, per)
            }
            ChargeModel::Graduated(Tiered { tiers }) => {
                line.price_per = charge.price_per;
                line.tiers = graduated(q, tiers, per, zero);
                line.tiers.iter().map(|t| t.amount).sum()
            }
            ChargeModel::Volume(Tiered { tiers }) => {
                line.price_per = charge.price_per;
                let part = volume(q, tiers, per, zero);
                let amount = part.amount;
                line.unit_price = Some(part.unit_price);
                line.tiers = vec![part];
                amount
            }
            ChargeModel::Package(PackageTerms {
                package_size,
                package_price,
                free_units,
            }) => {
                let (packages, amount) = package(q, *package_size, *package_price, *free_units);
                line.unit_price = Some(*package_price);
                // a whole package size is also the unit the price is quoted per
                let whole = package_size.fract().is_zero();
                line.price_per = u64::try_from(*package_size).ok().filter(|_| whole);
                line.description = format!(
                    "{}: {packages} packages of {package_size}",
                    line.description
                );
                amount
            }
            ChargeModel::Percentage(_) => Decimal::ZERO,
        }
    }
}

/// The lines of one plan segment, amounts rounded, tax not yet split.
pub(crate) fn segment_lines(
    book: &PriceBook,
    segment: &Segment,
    proration: Proration,
    fx: Decimal,
    currency: &str,
) -> Vec<LineDraft> {
    let plan = &book.plans[&segment.plan];
    let ctx = Ctx {
        book,
        plan_name: &segment.plan,
        proration,
        fx,
        currency,
    };
    let mut lines = Vec::new();
    if !plan.base_fee.is_zero() {
        let mut line = ctx.line(
            LineKind::BaseFee,
            "Base fee".into(),
            ctx.prorate(plan.base_fee),
        );
        line.unit_price = Some(plan.base_fee);
        line.quantity = Decimal::ONE;
        line.proration = ctx.proration();
        lines.push(line);
    }
    for charge in &plan.charges {
        let line = ctx.charge_line(plan, charge, segment);
        let covered = line.amount;
        lines.push(line);
        if let Some(min) = charge.minimum {
            lines.extend(ctx.true_up(min, covered, &charge.label()));
        }
    }
    if let Some(min) = plan.minimum_commitment {
        let covered: Decimal = lines.iter().map(|l| l.amount).sum();
        lines.extend(ctx.true_up(min, covered, &format!("plan {}", segment.plan)));
    }
    lines.into_iter().map(LineDraft).collect()
}
