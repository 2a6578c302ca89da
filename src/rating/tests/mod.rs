//! Tests of the rating engine: the charge models' arithmetic, each PRICING.md rule at its
//! boundary, price book validation, whole invoices, and properties under proptest.

mod book;
mod charges;
pub(crate) mod fixtures;
mod grants;
mod invoices;
mod props;
mod rules;
mod rules_billing;
