//! `scripts/build`'s settings check: reads the `[vars]` of a wrangler.toml and refuses
//! (exit 1) a combination that cannot work, by the same rules `/healthz` reports
//! (`edgemeter::settings_check`). Secrets are not in the file; `/healthz` checks them.

use edgemeter::settings_check::{problems, Stage};
use std::collections::BTreeMap;

/// The `NAME = "value"` (or `'value'`, `'''value'''`) lines of the `[vars]` table.
fn vars(toml: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_vars = false;
    let mut lines = toml.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.starts_with('[') {
            in_vars = line == "[vars]";
            continue;
        }
        let Some((name, value)) = line
            .split_once('=')
            .filter(|_| in_vars && !line.starts_with('#'))
        else {
            continue;
        };
        let value = value.trim();
        let value = if let Some(rest) = value.strip_prefix("'''") {
            let mut text = rest.to_string();
            while !text.contains("'''") {
                let Some(next) = lines.next() else { break };
                text.push('\n');
                text.push_str(next);
            }
            text.split("'''").next().unwrap_or("").to_string()
        } else {
            value.trim_matches(|c| c == '"' || c == '\'').to_string()
        };
        out.insert(name.trim().to_string(), value);
    }
    out
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "wrangler.toml".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let vars = vars(&text);
    let read = |file: &str| std::fs::read_to_string(file).ok();
    let catalog = read("catalog.json").and_then(|t| edgemeter::catalog::Catalog::parse(&t).ok());
    let book = read("price_book.json").and_then(|t| edgemeter::rating::PriceBook::parse(&t).ok());
    let bundled = (catalog.as_ref(), book.as_ref());
    let found = problems(|name| vars.get(name).cloned(), Stage::Build, bundled);
    if found.is_empty() {
        return;
    }
    for p in &found {
        eprintln!("{path}: {p}");
    }
    std::process::exit(1);
}
