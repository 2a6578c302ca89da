//! Semantic checks of a parsed price book. Each failure names the JSON path of the
//! offending value, so whoever edits prices sees exactly what to fix.

use super::input::BillableMeter;
use super::money::{is_date, minor_units, negative};
use super::plan::{
    BookPlan, Charge, ChargeModel, PackageTerms, PerUnit, PercentageTerms, PriceBook, Tier, Tiered,
};
use super::RatingError;
use crate::catalog::MAX_COUNTER;
use rust_decimal::Decimal;

/// The largest price, fee or rate accepted (1e6). With [`MAX_FX`], the input bounds in
/// `lines.rs` and at most [`MAX_SEGMENTS`] segments, every amount the engine forms stays
/// below 1e29 (`Decimal`'s range): a line is at most 2^53 units × 1e6 × 1e4 ≈ 9e25, so
/// rating can never panic on overflow.
pub const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The largest exchange rate accepted (1e4; USD -> KRW is about 1.4e3).
pub const MAX_FX: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

/// The most plan segments (plan changes + 1) one period can have.
pub const MAX_SEGMENTS: usize = 32;

fn err(path: String, message: impl Into<String>) -> Result<(), RatingError> {
    Err(RatingError::new(path, message))
}

/// A price or fee: not negative, at most [`MAX_PRICE`].
pub(crate) fn check_amount(path: String, value: Decimal) -> Result<(), RatingError> {
    if negative(value) {
        return err(path, format!("must not be negative, got {value}"));
    }
    if value > MAX_PRICE {
        return err(path, format!("must be at most {MAX_PRICE}, got {value}"));
    }
    Ok(())
}

pub(crate) fn check_currency(path: String, code: &str) -> Result<(), RatingError> {
    match minor_units(code) {
        Some(_) => Ok(()),
        None => err(path, format!("unknown ISO 4217 currency `{code}`")),
    }
}

impl PriceBook {
    /// Every rule a parsed book must satisfy; the first failure is returned.
    pub fn validate(&self) -> Result<(), RatingError> {
        if self.version.trim().is_empty() {
            return err("$.version".into(), "must not be empty");
        }
        check_currency("$.currency".into(), &self.currency)?;
        if let Some(fx) = &self.fx {
            if !is_date(&fx.as_of) {
                return err("$.fx.as_of".into(), "must be a date `YYYY-MM-DD`");
            }
            for (from, row) in &fx.rates {
                check_currency(format!("$.fx.rates.{from}"), from)?;
                for (to, rate) in row {
                    let path = format!("$.fx.rates.{from}.{to}");
                    check_currency(path.clone(), to)?;
                    if rate.is_zero() || negative(*rate) || *rate > MAX_FX {
                        return err(path, format!("an exchange rate must be in (0, {MAX_FX}]"));
                    }
                }
            }
        }
        for (code, rule) in &self.tax.countries {
            let base = format!("$.tax.countries.{code}");
            if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                return err(base, "country must be an ISO 3166-1 alpha-2 code like `DE`");
            }
            check_rate(format!("{base}.rate"), rule.rate)?;
            for (region, r) in &rule.regions {
                check_rate(format!("{base}.regions.{region}.rate"), r.rate)?;
            }
        }
        if self.plans.is_empty() {
            return err("$.plans".into(), "at least one plan is required");
        }
        for (name, plan) in &self.plans {
            check_plan(&format!("$.plans.{name}"), plan)?;
        }
        Ok(())
    }
}

fn check_rate(path: String, rate: Decimal) -> Result<(), RatingError> {
    if negative(rate) || rate >= Decimal::ONE {
        return err(
            path,
            format!("a tax rate is a fraction in [0, 1), got {rate}"),
        );
    }
    Ok(())
}

fn check_plan(base: &str, plan: &BookPlan) -> Result<(), RatingError> {
    check_amount(format!("{base}.base_fee"), plan.base_fee)?;
    if let Some(min) = plan.minimum_commitment {
        check_amount(format!("{base}.minimum_commitment"), min)?;
    }
    for (i, charge) in plan.charges.iter().enumerate() {
        let path = format!("{base}.charges[{i}]");
        check_charge(&path, charge)?;
        let earlier = plan.charges[..i]
            .iter()
            .position(|c| c.meter == charge.meter && c.model == charge.model);
        if let Some(j) = earlier {
            return err(
                path,
                format!("prices the same meter and model as charges[{j}]"),
            );
        }
    }
    Ok(())
}

fn check_charge(base: &str, c: &Charge) -> Result<(), RatingError> {
    if c.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return err(
            format!("{base}.model"),
            "must not be empty; omit it for all models",
        );
    }
    if c.included_units > Decimal::from(MAX_COUNTER) {
        return err(format!("{base}.included_units"), "must be below 2^53");
    }
    if let Some(min) = c.minimum {
        check_amount(format!("{base}.minimum"), min)?;
    }
    let percentage = matches!(c.pricing, ChargeModel::Percentage(_));
    if percentage != (c.meter == BillableMeter::TransactionValue) {
        return err(
            format!("{base}.pricing.kind"),
            "`percentage` prices exactly the `transaction_value` meter",
        );
    }
    if percentage && c.included_units > Decimal::ZERO {
        return err(
            format!("{base}.included_units"),
            "a percentage charge has no units; use free_transactions or free_amount",
        );
    }
    let per_applies = matches!(
        c.pricing,
        ChargeModel::PerUnit(_) | ChargeModel::Graduated(_) | ChargeModel::Volume(_)
    );
    match c.price_per {
        Some(_) if !per_applies => {
            return err(
                format!("{base}.price_per"),
                "only per_unit, graduated and volume prices are quoted per units",
            )
        }
        Some(per) if per == 0 || per > MAX_COUNTER => {
            return err(format!("{base}.price_per"), "must be between 1 and 2^53")
        }
        _ => {}
    }
    let p = format!("{base}.pricing");
    match &c.pricing {
        ChargeModel::PerUnit(PerUnit { unit_price }) => {
            check_amount(format!("{p}.unit_price"), *unit_price)
        }
        ChargeModel::Graduated(Tiered { tiers }) | ChargeModel::Volume(Tiered { tiers }) => {
            check_tiers(&p, tiers)
        }
        ChargeModel::Package(PackageTerms {
            package_size,
            package_price,
            free_units,
        }) => {
            // At least a thousandth: then no count of packages times a price can leave
            // Decimal's range (2^53 / 0.001 packages at MAX_PRICE is below 1e25).
            if *package_size < Decimal::new(1, 3) || *package_size > Decimal::from(MAX_COUNTER) {
                return err(
                    format!("{p}.package_size"),
                    "must be between 0.001 and 2^53",
                );
            }
            if *free_units > Decimal::from(MAX_COUNTER) {
                return err(format!("{p}.free_units"), "must be below 2^53");
            }
            check_amount(format!("{p}.package_price"), *package_price)
        }
        ChargeModel::Percentage(PercentageTerms {
            rate,
            fixed_fee,
            min_per_transaction,
            max_per_transaction,
            free_transactions: _,
            free_amount,
        }) => {
            check_amount(format!("{p}.rate"), *rate)?;
            check_amount(format!("{p}.fixed_fee"), *fixed_fee)?;
            check_amount(format!("{p}.free_amount"), *free_amount)?;
            if let Some(min) = min_per_transaction {
                check_amount(format!("{p}.min_per_transaction"), *min)?;
            }
            if let Some(max) = max_per_transaction {
                check_amount(format!("{p}.max_per_transaction"), *max)?;
            }
            if let (Some(min), Some(max)) = (min_per_transaction, max_per_transaction) {
                if min > max {
                    return err(
                        format!("{p}.max_per_transaction"),
                        format!("is below min_per_transaction ({max} < {min})"),
                    );
                }
            }
            Ok(())
        }
    }
}

/// Tiers are contiguous by construction (each starts where the previous ends), so the
/// failures are an overlap (a bound not above the previous one), a gap above the last
/// bound (the last tier is not open-ended), or an open tier that is not last.
fn check_tiers(base: &str, tiers: &[Tier]) -> Result<(), RatingError> {
    if tiers.is_empty() {
        return err(format!("{base}.tiers"), "at least one tier is required");
    }
    let mut previous = Decimal::ZERO;
    for (i, tier) in tiers.iter().enumerate() {
        let path = format!("{base}.tiers[{i}]");
        check_amount(format!("{path}.unit_price"), tier.unit_price)?;
        check_amount(format!("{path}.flat_fee"), tier.flat_fee)?;
        let last = i + 1 == tiers.len();
        match tier.up_to {
            None if !last => {
                return err(
                    format!("{path}.up_to"),
                    "only the last tier may be open-ended (`up_to: null`); later tiers overlap it",
                )
            }
            None => {}
            Some(_) if last => {
                return err(
                    format!("{path}.up_to"),
                    format!(
                        "the last tier must have `up_to: null`, or units above {previous_bound} have no price (a gap)",
                        previous_bound = tier.up_to.unwrap_or_default()
                    ),
                )
            }
            Some(up_to) if up_to <= previous => {
                let message = if i == 0 {
                    "must be above 0".to_string()
                } else {
                    format!("overlaps the previous tier: {up_to} is not above its bound {previous}")
                };
                return err(format!("{path}.up_to"), message);
            }
            Some(up_to) if up_to > Decimal::from(MAX_COUNTER) => {
                return err(format!("{path}.up_to"), "must be below 2^53")
            }
            Some(up_to) => previous = up_to,
        }
    }
    Ok(())
}
