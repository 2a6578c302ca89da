//! Tax per invoice line: the customer's country (or region) rate, exclusive or
//! inclusive, or a reverse charge. Tax is rounded per line and the invoice's tax is the
//! sum of its lines', so lines and totals always reconcile.

use super::account::Account;
use super::money::Rounding;
use super::plan::{TaxMode, TaxTable};
use rust_decimal::Decimal;

/// The note printed on every line of a reverse-charged invoice.
pub const REVERSE_CHARGE_NOTE: &str =
    "Reverse charge: tax to be accounted for by the recipient (customer tax id on file)";

/// How a customer is taxed, resolved once per invoice from the price book's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxTreatment {
    pub rate: Decimal,
    pub mode: TaxMode,
    pub reverse_charge: bool,
}

/// A line amount split into its net and its tax, both in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaxSplit {
    pub net: Decimal,
    pub tax: Decimal,
}

impl TaxTreatment {
    /// The customer's treatment: the region's rate when the country lists that region,
    /// else the country's; reverse charge when the country allows it and the customer is
    /// a business with a tax id. `None` when the country is not in the table.
    pub fn resolve(table: &TaxTable, account: &Account) -> Option<TaxTreatment> {
        let rule = table.countries.get(&account.country)?;
        let rate = account
            .region
            .as_ref()
            .and_then(|r| rule.regions.get(r))
            .map_or(rule.rate, |r| r.rate);
        let has_tax_id = account
            .tax_id
            .as_ref()
            .is_some_and(|t| !t.trim().is_empty());
        Some(TaxTreatment {
            rate,
            mode: rule.mode,
            reverse_charge: rule.reverse_charge && account.business && has_tax_id,
        })
    }

    /// Splits a rounded line amount. Exclusive: tax = round(net × rate). Inclusive: the
    /// amount is gross, tax = round(gross × rate / (1 + rate)), net = gross − tax.
    /// Reverse charge: tax 0 and the amount is the net.
    pub fn split(&self, amount: Decimal, rounding: Rounding, currency: &str) -> TaxSplit {
        if self.reverse_charge {
            return TaxSplit {
                net: amount,
                tax: rounding.round(Decimal::ZERO, currency),
            };
        }
        match self.mode {
            TaxMode::Exclusive => TaxSplit {
                net: amount,
                tax: rounding.round(amount * self.rate, currency),
            },
            TaxMode::Inclusive => {
                let tax = rounding.round(amount * self.rate / (Decimal::ONE + self.rate), currency);
                TaxSplit {
                    net: amount - tax,
                    tax,
                }
            }
        }
    }

    /// The line note a reverse charge requires.
    pub fn note(&self) -> Option<&'static str> {
        self.reverse_charge.then_some(REVERSE_CHARGE_NOTE)
    }
}
