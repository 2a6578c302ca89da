//! Grants as balances: what earlier invoices drew on them, and the balances the admin
//! API lists. Above both credits and invoices: it reads what invoices drew.

use super::account::{Account, CreditGrant};
use super::invoice::Invoice;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The account as a later period sees it: each grant reduced by what the invoices of
/// earlier periods drew on it (`earlier`, in period order), so a period never spends
/// credit an earlier one already used. A grant is never below zero.
pub fn net_of_draws<'a>(
    account: &Account,
    earlier: impl IntoIterator<Item = &'a Invoice>,
) -> Account {
    let mut net = account.clone();
    for invoice in earlier {
        for draw in &invoice.credits {
            if let Some(g) = net.grants.iter_mut().find(|g| g.id == draw.grant_id) {
                g.amount = (g.amount - draw.drawn).max(Decimal::ZERO);
            }
        }
    }
    net
}

/// A grant as the admin API lists it: what was granted, what invoices drew on it so
/// far (drafts included), and what is left to use now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantBalance {
    #[serde(flatten)]
    pub grant: CreditGrant,
    pub drawn: Decimal,
    /// Left in the grant's own units; zero once it expired or was voided.
    pub balance: Decimal,
    pub status: GrantStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Not effective yet.
    Scheduled,
    Active,
    Used,
    Expired,
    Voided,
}

/// Each grant's balance after every invoice in `invoices` drew on it, at `at_ms`.
pub fn grant_balances<'a>(
    account: &Account,
    invoices: impl IntoIterator<Item = &'a Invoice>,
    at_ms: i64,
) -> Vec<GrantBalance> {
    let net = net_of_draws(account, invoices);
    account
        .grants
        .iter()
        .zip(&net.grants)
        .map(|(granted, left)| {
            let status = match granted {
                g if g.voided_at_ms.is_some_and(|v| v <= at_ms) => GrantStatus::Voided,
                g if g.expires_at_ms.is_some_and(|e| e <= at_ms) => GrantStatus::Expired,
                g if g.effective_at_ms > at_ms => GrantStatus::Scheduled,
                _ if left.amount <= Decimal::ZERO => GrantStatus::Used,
                _ => GrantStatus::Active,
            };
            let usable = matches!(status, GrantStatus::Active | GrantStatus::Scheduled);
            GrantBalance {
                grant: granted.clone(),
                drawn: granted.amount - left.amount,
                // zero in the grant's own scale, as amounts are written
                balance: match usable {
                    true => left.amount,
                    false => Decimal::new(0, granted.amount.scale()),
                },
                status,
            }
        })
        .collect()
}
