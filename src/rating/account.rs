//! The customer side of rating: where they are taxed, what currency they are invoiced
//! in, and their prepaid credit grants. Checked against a price book, because whether a
//! country or a grant currency is acceptable depends on that book's tables.

use super::money::{minor_units, negative};
use super::plan::PriceBook;
use super::validate::{check_currency, MAX_PRICE};
use super::RatingError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The most a grant can hold, in its own units (1e16): generous, and far from overflow.
fn max_grant() -> Decimal {
    Decimal::from(10_000_000_000_000_000u64)
}

/// A customer as the rating engine needs to know them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub customer_id: String,
    /// ISO 3166-1 alpha-2 country the customer is taxed in; must be in the tax table.
    pub country: String,
    /// Region (state, province) with its own rate, when the tax table lists it.
    #[serde(default)]
    pub region: Option<String>,
    /// A business (not a consumer): with a tax id, it may be reverse charged.
    #[serde(default)]
    pub business: bool,
    #[serde(default)]
    pub tax_id: Option<String>,
    /// Currency invoices are issued in; defaults to the price book's.
    #[serde(default)]
    pub invoice_currency: Option<String>,
    /// Prepaid credit grants, in creation order (the last tie-breaker when drawing).
    #[serde(default)]
    pub grants: Vec<CreditGrant>,
}

/// Prepaid credit, in a currency or in credit units. Exactly one of `currency` and
/// `credit_rate` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditGrant {
    pub id: String,
    /// The amount granted, in the grant's own units (currency or credits). What is
    /// left of it for a period is this less what earlier periods drew
    /// (`credits::net_of_draws`): never write a remaining balance back here.
    pub amount: Decimal,
    /// A currency grant: converted to the invoice currency with the price book's FX.
    #[serde(default)]
    pub currency: Option<String>,
    /// A credit-unit grant: the value of one credit in the invoice currency.
    #[serde(default)]
    pub credit_rate: Option<Decimal>,
    /// Promotional credit is drawn before paid credit; then lower `priority` first.
    #[serde(default)]
    pub category: GrantCategory,
    /// Lower is drawn first, within a category.
    #[serde(default)]
    pub priority: u32,
    /// First instant the grant can be used.
    #[serde(default)]
    pub effective_at_ms: i64,
    /// From this instant on the grant is unusable; `None` never expires.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    /// Voided at this instant: unusable from then on, kept with what it paid before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voided_at_ms: Option<i64>,
}

/// Whether a grant was given away or paid for: promotional credit is spent first, so
/// what the customer paid for lasts longest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantCategory {
    Promotional,
    #[default]
    Paid,
}

impl Account {
    /// The first instant after `at_ms` at which a grant becomes usable or stops being
    /// usable: an invoice rated at `at_ms` holds until then. `None`: no change is coming.
    pub fn next_credit_change(&self, at_ms: i64) -> Option<i64> {
        self.grants
            .iter()
            .flat_map(|g| [Some(g.effective_at_ms), g.expires_at_ms, g.voided_at_ms])
            .flatten()
            .filter(|&t| t > at_ms)
            .min()
    }

    /// Parses an account and checks it against `book`; errors carry the JSON path.
    pub fn parse(json: &str, book: &PriceBook) -> Result<Account, RatingError> {
        let account: Account = serde_json::from_str(json).map_err(|e| {
            let path = crate::json_path::path_at(json, e.line(), e.column());
            RatingError::new(path, e.to_string()).in_document("account")
        })?;
        account.check(book)?;
        Ok(account)
    }

    /// The currency this account is invoiced in under `book`.
    pub fn currency<'a>(&'a self, book: &'a PriceBook) -> &'a str {
        self.invoice_currency.as_deref().unwrap_or(&book.currency)
    }

    /// Whether this account can be rated under `book`: its country is taxed there, and
    /// every currency it uses has an FX rate into the invoice currency.
    pub fn check(&self, book: &PriceBook) -> Result<(), RatingError> {
        self.check_fields(book)
            .map_err(|e| e.in_document("account"))
    }

    fn check_fields(&self, book: &PriceBook) -> Result<(), RatingError> {
        let fail = |path: &str, message: String| Err(RatingError::new(path.to_string(), message));
        if self.customer_id.trim().is_empty() {
            return fail("$.customer_id", "must not be empty".into());
        }
        if !book.tax.countries.contains_key(&self.country) {
            return fail(
                "$.country",
                format!(
                    "the price book's tax table ($.tax.countries) has no entry for `{}`",
                    self.country
                ),
            );
        }
        let currency = self.currency(book);
        if let Some(code) = &self.invoice_currency {
            check_currency("$.invoice_currency".into(), code)?;
            if book.fx_rate(code).is_none() {
                return fail(
                    "$.invoice_currency",
                    format!("no FX rate {} -> {code} in the price book", book.currency),
                );
            }
        }
        for (i, g) in self.grants.iter().enumerate() {
            let base = format!("$.grants[{i}]");
            if g.id.trim().is_empty() {
                return fail(&format!("{base}.id"), "must not be empty".into());
            }
            if self.grants[..i].iter().any(|h| h.id == g.id) {
                return fail(
                    &format!("{base}.id"),
                    format!("duplicate grant id `{}`", g.id),
                );
            }
            if negative(g.amount) || g.amount > max_grant() {
                return fail(
                    &format!("{base}.amount"),
                    format!("must be between 0 and {}, got {}", max_grant(), g.amount),
                );
            }
            match (&g.currency, g.credit_rate) {
                (Some(code), None) => {
                    check_currency(format!("{base}.currency"), code)?;
                    if grant_fx(book, code, currency).is_none() {
                        return fail(
                            &format!("{base}.currency"),
                            format!(
                                "grant in {code} but the price book has no FX rate {code} -> {currency}"
                            ),
                        );
                    }
                }
                (None, Some(rate)) if rate.is_zero() || negative(rate) || rate > MAX_PRICE => {
                    return fail(
                        &format!("{base}.credit_rate"),
                        format!("must be in (0, {MAX_PRICE}]"),
                    )
                }
                (None, Some(_)) => {}
                _ => {
                    return fail(
                        &base,
                        "set exactly one of `currency` (a money grant) and `credit_rate` (credit units)"
                            .into(),
                    )
                }
            }
            if g.expires_at_ms.is_some_and(|e| e <= g.effective_at_ms) {
                return fail(
                    &format!("{base}.expires_at_ms"),
                    "must be after effective_at_ms".into(),
                );
            }
        }
        debug_assert!(minor_units(currency).is_some());
        Ok(())
    }
}

/// The rate turning one unit of a grant currency into the invoice currency.
pub(crate) fn grant_fx(book: &PriceBook, from: &str, to: &str) -> Option<Decimal> {
    if from == to {
        return Some(Decimal::ONE);
    }
    book.fx.as_ref()?.rate(from, to)
}

impl CreditGrant {
    /// Value of one unit of this grant in `currency` under `book` (its FX rate or its
    /// credit rate); `None` when the account was not checked against this book.
    pub fn unit_value(&self, book: &PriceBook, currency: &str) -> Option<Decimal> {
        match (&self.currency, self.credit_rate) {
            (Some(code), _) => grant_fx(book, code, currency),
            (None, rate) => rate,
        }
    }

    /// Usable at `at_ms`: effective, and neither expired nor voided yet (both are
    /// exclusive).
    pub fn usable_at(&self, at_ms: i64) -> bool {
        let before = |end: Option<i64>| end.is_none_or(|e| at_ms < e);
        self.effective_at_ms <= at_ms && before(self.expires_at_ms) && before(self.voided_at_ms)
    }
}
