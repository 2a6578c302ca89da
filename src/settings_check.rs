//! Setting combinations that cannot work. A Worker has no start-up phase to refuse
//! them in, so they are caught twice: `scripts/build` refuses a `wrangler.toml` whose
//! vars are wrong (`examples/check_settings`), and `/healthz` reports the deployed
//! Worker unhealthy with the same list, secrets included.

use crate::catalog::Catalog;
use crate::flush::Format;
use crate::rating::PriceBook;

/// Settings that must be whole numbers when set.
const NUMBERS: [&str; 12] = [
    "FLUSH_SHARDS",
    "FLUSH_BATCH_RECORDS",
    "FLUSH_PUSH_MS",
    "FLUSH_TIMEOUT_MS",
    "FLUSH_BACKOFF_MS",
    "MAX_BODY_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_UPLOAD_BYTES",
    "ABORT_DRAIN_MS",
    "ABORT_DRAIN_BYTES",
    "INVOICE_GRACE_DAYS",
    "BACKDATING_DAYS",
];

/// Settings that must be `true` or `false` when set.
const SWITCHES: [&str; 1] = ["EXPORT_TEST_USAGE"];

/// Where the check runs: at build time only vars are known (secrets are not in
/// `wrangler.toml`), and a test-only setting must never be deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Build,
    Running,
}

/// What is wrong with the settings `get` reads (empty values count as unset), each
/// naming the setting and what to do. `bundled` are the catalog and price book in
/// force when `CATALOG` and `PRICE_BOOK` are unset (`catalog.json`, `price_book.json`).
pub fn problems(
    get: impl Fn(&str) -> Option<String>,
    stage: Stage,
    bundled: (Option<&Catalog>, Option<&PriceBook>),
) -> Vec<String> {
    let (default_catalog, default_book) = bundled;
    let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let mut out = Vec::new();
    for name in NUMBERS {
        if get(name).is_some_and(|v| v.trim().parse::<u64>().is_err()) {
            out.push(format!("{name} must be a whole number"));
        }
    }
    for name in SWITCHES {
        if get(name).is_some_and(|v| !matches!(v.trim(), "true" | "false")) {
            out.push(format!("{name} must be true or false"));
        }
    }
    if get("FLUSH_SHARDS").is_some_and(|v| v.trim() == "0") {
        out.push(
            "FLUSH_SHARDS must be at least 1 (leave RATING_URL empty to flush nothing)".into(),
        );
    }
    let format = get("RATING_FORMAT").unwrap_or_default();
    let format = Format::parse(&format).or_else(|| {
        out.push(format!(
            "RATING_FORMAT `{format}` is not native, cloudevents or lago"
        ));
        None
    });
    let catalog = get("CATALOG").and_then(|text| match Catalog::parse(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            out.push(format!("CATALOG: {e}"));
            None
        }
    });
    let book = get("PRICE_BOOK").and_then(|text| match PriceBook::parse(&text) {
        Ok(b) => Some(b),
        Err(e) => {
            out.push(format!("PRICE_BOOK: {e:?}"));
            None
        }
    });
    if stage == Stage::Build && get(crate::test_clock::SETTING).is_some() {
        out.push("TEST_CLOCK is for local tests only; remove it from wrangler.toml".into());
    }
    let url = get("RATING_URL");
    let external = url.as_deref().is_some_and(|u| u != "internal");
    let catalog = catalog.as_ref().or(default_catalog);
    let book = book.as_ref().or(default_book);
    // The built-in rating endpoint rates each period under the plan its records carry,
    // which is the counter's catalog plan: the book must have every one.
    if url.as_deref() == Some("internal") {
        if let (Some(c), Some(b)) = (catalog, book) {
            for name in c.plans.keys().filter(|p| !b.plans.contains_key(*p)) {
                out.push(format!(
                    "CATALOG $.plans.{name}: not in the price book, so its usage cannot be rated"
                ));
            }
        }
    }
    if format == Some(Format::Lago) && external {
        if catalog.is_some_and(|c| c.subscriptions.is_empty()) {
            out.push("RATING_FORMAT lago needs the catalog's `subscriptions` (customer id to Lago external_subscription_id)".into());
        }
        if stage == Stage::Running && get("RATING_AUTH").is_none() {
            out.push("RATING_FORMAT lago needs RATING_AUTH (Lago's API key)".into());
        }
    }
    if stage == Stage::Running && url.is_some() && get("RATING_SECRET").is_none() {
        out.push("RATING_URL is set but RATING_SECRET is not: batches must be signed".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn check(vars: &[(&str, &str)], stage: Stage) -> Vec<String> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let demo = Catalog::parse(include_str!("../catalog.json")).unwrap();
        let book = PriceBook::parse(include_str!("../price_book.json")).unwrap();
        problems(|k| map.get(k).cloned(), stage, (Some(&demo), Some(&book)))
    }

    #[test]
    fn workable_settings_have_no_problems() {
        assert!(check(&[], Stage::Build).is_empty());
        let flushing = [
            ("RATING_URL", "https://rating.example"),
            ("RATING_SECRET", "s"),
            ("RATING_FORMAT", "native"),
            ("FLUSH_SHARDS", "16"),
            ("RATING_URL_", ""),
        ];
        assert!(check(&flushing, Stage::Running).is_empty());
        // empty values are unset, as the Worker reads them
        assert!(check(&[("RATING_URL", ""), ("FLUSH_SHARDS", " ")], Stage::Running).is_empty());
    }

    #[test]
    fn each_unworkable_combination_is_named() {
        let one = |vars: &[(&str, &str)], stage, needle: &str| {
            let p = check(vars, stage);
            assert!(p.iter().any(|m| m.contains(needle)), "{needle}: {p:?}");
        };
        one(
            &[("RATING_FORMAT", "csv")],
            Stage::Build,
            "RATING_FORMAT `csv`",
        );
        one(
            &[("FLUSH_SHARDS", "sixteen")],
            Stage::Build,
            "FLUSH_SHARDS must be a whole number",
        );
        one(&[("FLUSH_SHARDS", "0")], Stage::Build, "at least 1");
        one(
            &[("EXPORT_TEST_USAGE", "yes")],
            Stage::Build,
            "EXPORT_TEST_USAGE must be true or false",
        );
        one(
            &[("BACKDATING_DAYS", "-1")],
            Stage::Build,
            "BACKDATING_DAYS must be a whole number",
        );
        one(&[("CATALOG", "{}")], Stage::Build, "CATALOG");
        one(&[("PRICE_BOOK", "nope")], Stage::Build, "PRICE_BOOK");
        one(&[("TEST_CLOCK", "on")], Stage::Build, "TEST_CLOCK");
        one(
            &[("RATING_URL", "https://r")],
            Stage::Running,
            "RATING_SECRET",
        );
        let lago = [
            ("RATING_URL", "https://api.getlago.com"),
            ("RATING_FORMAT", "lago"),
            ("RATING_SECRET", "s"),
        ];
        one(&lago, Stage::Running, "RATING_AUTH");
        // the demo catalog maps no customer to a Lago subscription
        one(&lago, Stage::Build, "subscriptions");
        // at build time secrets are unknown: only what the vars say
        assert!(!check(&lago, Stage::Build)
            .iter()
            .any(|p| p.contains("RATING_AUTH")));
        assert!(check(&[("TEST_CLOCK", "on")], Stage::Running).is_empty());
        // Rated internally, every catalog plan must be in the price book.
        let catalog = r#"{"version": "v", "currency": "USD", "models": {}, "plans": {"gold": {}}}"#;
        let internal = [
            ("RATING_URL", "internal"),
            ("RATING_SECRET", "s"),
            ("CATALOG", catalog),
        ];
        one(&internal, Stage::Build, "$.plans.gold");
        assert!(
            check(&internal[..2], Stage::Build).is_empty(),
            "the demo files agree"
        );
    }
}
