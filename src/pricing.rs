//! How the edge prices a period's usage for spend caps and the usage report. When the
//! rating endpoint's price book has a plan of the customer's plan name, spend is that
//! plan's usage charges by the rating engine itself (included units, tiers and all),
//! so the edge and the rated invoice agree for the same usage. Otherwise it is the
//! catalog's list prices per model. A request's cost (`x-edgemeter-cost`) is what it
//! adds to that spend. Reservations are priced the same way: under a price-book plan
//! the engine prices settled and reserved usage together (`CounterState::totals`).

use crate::catalog::cost_of;
use crate::catalog::Catalog;
use crate::period::Period;
use crate::rating::{usage_amount, usage_totals, PriceBook};
use crate::tally::{MeterKey, Tally};
use crate::usage::Usage;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The pricing in force for one customer.
#[derive(Clone, Copy)]
pub enum Pricing<'a> {
    /// Catalog list prices.
    List(&'a Catalog),
    /// The rating engine under a price-book plan.
    Book {
        catalog: &'a Catalog,
        book: &'a PriceBook,
        plan: &'a str,
    },
}

impl<'a> Pricing<'a> {
    /// The price book's plan named `plan`, when the book has one; else list prices.
    pub fn for_plan(catalog: &'a Catalog, book: Option<&'a PriceBook>, plan: &'a str) -> Self {
        match book {
            Some(book) if book.plans.contains_key(plan) => Pricing::Book {
                catalog,
                book,
                plan,
            },
            _ => Pricing::List(catalog),
        }
    }

    pub fn catalog(&self) -> &'a Catalog {
        match self {
            Pricing::List(c) | Pricing::Book { catalog: c, .. } => c,
        }
    }

    /// Where the prices come from, for reports.
    pub fn label(&self) -> String {
        match self {
            Pricing::List(c) => format!("catalog {}", c.version),
            Pricing::Book { book, plan, .. } => format!("price book {}, plan {plan}", book.version),
        }
    }

    /// Whether spend depends on the period's totals (included units, tiers), so a
    /// request's cost needs them.
    pub fn needs_totals(&self) -> bool {
        matches!(self, Pricing::Book { .. })
    }

    /// What one more request with `usage` under `key` adds to the spend of `tallies`
    /// (`spent`, as [`Pricing::spend`] priced them; list pricing needs neither): its list
    /// price, or under a price-book plan the difference it makes to the invoice's usage
    /// charges. Successive requests' costs add up to the spend exactly.
    pub fn marginal(
        &self,
        period: Period,
        tallies: &BTreeMap<MeterKey, Tally>,
        spent: Decimal,
        key: &MeterKey,
        usage: &Usage,
    ) -> Decimal {
        if !self.needs_totals() {
            return cost_of(self.catalog(), &key.1, usage, 1);
        }
        let mut after = tallies.clone();
        after.entry(key.clone()).or_default().add(usage, false);
        self.spend(period, &after) - spent
    }

    /// Exact, unrounded spend of a period's tallies.
    pub fn spend(&self, period: Period, tallies: &BTreeMap<MeterKey, Tally>) -> Decimal {
        let list = |c: &Catalog| {
            tallies
                .iter()
                .map(|((_, model), t)| cost_of(c, model, &t.usage(), t.requests))
                .sum()
        };
        match self {
            Pricing::List(c) => list(c),
            Pricing::Book {
                catalog,
                book,
                plan,
            } => {
                let usage = usage_totals(tallies.iter().map(|((_, model), t)| (model.as_str(), t)));
                // Usage the book cannot price would be refused by the invoice too; the
                // list price keeps the cap meaningful meanwhile.
                usage_amount(book, plan, period, usage).unwrap_or_else(|_| list(catalog))
            }
        }
    }
}

/// What one finished request adds to its customer's spend: its list price, or under a
/// price-book plan the change to the invoice's usage charges from the period's totals
/// at admission (`at_admission`: the period, its tallies and their spend).
pub fn request_cost(
    pricing: &Pricing,
    at_admission: Option<(Period, &BTreeMap<MeterKey, Tally>, Decimal)>,
    key: &MeterKey,
    usage: &Usage,
) -> Decimal {
    match at_admission {
        Some((period, tallies, spent)) => pricing.marginal(period, tallies, spent, key, usage),
        None => cost_of(pricing.catalog(), &key.1, usage, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_costs_its_list_price_or_what_it_adds_to_the_invoice() {
        let catalog = crate::fixtures::catalog();
        let key: MeterKey = ("chat.completions".into(), "gpt-4o-mini".into());
        let usage = Usage {
            input: 1_000_000,
            ..Usage::default()
        };
        let list = request_cost(&Pricing::List(&catalog), None, &key, &usage);
        assert_eq!(list, cost_of(&catalog, &key.1, &usage, 1));
        let book = crate::fixtures::price_book();
        let plan = book.plans.keys().next().unwrap().clone();
        let pricing = Pricing::for_plan(&catalog, Some(&book), &plan);
        let period = Period {
            start_ms: 0,
            end_ms: 86_400_000 * 30,
        };
        let none = BTreeMap::new();
        let spent = pricing.spend(period, &none);
        let added = request_cost(&pricing, Some((period, &none, spent)), &key, &usage);
        let mut after = BTreeMap::new();
        after.insert(key.clone(), Tally::default());
        after.get_mut(&key).unwrap().add(&usage, false);
        assert_eq!(added, pricing.spend(period, &after) - spent);
    }

    #[test]
    fn the_price_book_prices_spend_when_it_has_the_plan() {
        let catalog = crate::fixtures::catalog();
        let book = crate::fixtures::price_book();
        let period = Period {
            start_ms: 0,
            end_ms: 86_400_000 * 30,
        };
        let mut tallies = BTreeMap::new();
        let t = Tally {
            requests: 2,
            input: 3_000_000,
            cached: 1_000_000,
            output: 1_000_000,
            ..Tally::default()
        };
        tallies.insert(("chat.completions".to_string(), "gpt-4o".to_string()), t);
        let book_pricing = Pricing::for_plan(&catalog, Some(&book), "starter");
        assert!(book_pricing.label().starts_with("price book"));
        // gpt-4o: 2M fresh * 2.50 + 1M cached * 1.25 + 1M out * 10.00 = 5 + 1.25 + 10 = 16.25
        assert_eq!(book_pricing.spend(period, &tallies), Decimal::new(1625, 2));
        // The demo catalog lists the same prices, so list pricing agrees here.
        let list = Pricing::for_plan(&catalog, Some(&book), "no-such-plan");
        assert_eq!(list.spend(period, &tallies), Decimal::new(1625, 2));
        assert!(list.label().starts_with("catalog"));
    }

    #[test]
    fn a_requests_cost_is_what_it_adds_to_the_invoice() {
        let catalog = crate::fixtures::catalog();
        let book = PriceBook::parse(
            r#"{"version": "m1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
            "plans": {"hybrid": {"charges": [
              {"meter": "output_tokens", "included_units": 100, "price_per": 1000,
               "pricing": {"kind": "per_unit", "unit_price": "2"}},
              {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
              {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0"}}]}}}"#,
        )
        .unwrap();
        let pricing = Pricing::for_plan(&catalog, Some(&book), "hybrid");
        let period = Period {
            start_ms: 0,
            end_ms: 86_400_000 * 30,
        };
        let key = ("chat.completions".to_string(), "gpt-4o".to_string());
        let out = |n| Usage {
            output: n,
            ..Usage::default()
        };
        let mut tallies = BTreeMap::new();
        let mut total = Decimal::ZERO;
        // 80 output tokens: inside the 100 included, free
        // 50 more: 20 still included, 30 over at 2 per 1000 = 0.06
        // 50 more: all over, 50 * 2 / 1000 = 0.10
        let expected = ["0", "0.06", "0.10"];
        for (n, want) in [80, 50, 50].into_iter().zip(expected) {
            let spent = pricing.spend(period, &tallies);
            let cost = pricing.marginal(period, &tallies, spent, &key, &out(n));
            assert_eq!(cost, want.parse::<Decimal>().unwrap(), "{n} tokens");
            total += cost;
            tallies.entry(key.clone()).or_default().add(&out(n), false);
        }
        assert_eq!(total, pricing.spend(period, &tallies));
    }

    /// The demo price book prices every meter of every demo catalog model under every
    /// demo plan, and agrees with the catalog's list prices, so `scripts/dev` serves
    /// each model (Claude included) out of the box.
    #[test]
    fn the_demo_book_prices_every_demo_model_as_listed() {
        let catalog = Catalog::parse(include_str!("../catalog.json")).unwrap();
        let book = PriceBook::parse(include_str!("../price_book.json")).unwrap();
        assert!(catalog.price("claude-sonnet-4-5").is_some());
        let period = Period {
            start_ms: 0,
            end_ms: 86_400_000 * 30,
        };
        let usage = Usage {
            input: 4_000_000,
            cached: 1_000_000,
            cache_write: 1_000_000,
            cache_write_1h: 1_000_000,
            output: 2_000_000,
            ..Usage::default()
        };
        for (model, price) in &catalog.models {
            // Embedding models read input only; only Claude models write caches.
            let usage = match (model.starts_with("text-"), price.cache_write_per_mtok) {
                (true, _) => Usage {
                    input: usage.input,
                    ..Usage::default()
                },
                (false, None) => Usage {
                    cache_write: 0,
                    cache_write_1h: 0,
                    ..usage
                },
                (false, Some(_)) => usage,
            };
            let mut tallies = BTreeMap::new();
            let mut t = Tally::default();
            t.add(&usage, false);
            tallies.insert(("chat.completions".to_string(), model.clone()), t);
            for plan in catalog.plans.keys() {
                let totals = usage_totals(tallies.iter().map(|((_, m), t)| (m.as_str(), t)));
                let rated = usage_amount(&book, plan, period, totals);
                let rated = rated.unwrap_or_else(|e| panic!("{plan}/{model}: {e:?}"));
                let list = price.cost(&usage);
                assert_eq!(rated, list, "{plan}/{model}");
            }
        }
    }
}
