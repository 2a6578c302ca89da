//! Headers crossing between the wasm and the runtime in one call each way. Every
//! string a wasm-bindgen call passes is decoded on its own, so setting a dozen headers
//! one by one costs two dozen decodes and a dozen calls; here they cross as one text.
//! Header names and values never hold a newline, which separates them.

use wasm_bindgen::prelude::*;
use worker::web_sys;

#[wasm_bindgen(inline_js = r#"
export function headers_from_lines(text) {
  const headers = new Headers();
  if (text === "") return headers;
  const parts = text.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) headers.set(parts[i], parts[i + 1]);
  return headers;
}
const split = new Map();
export function present_lines(headers, names) {
  let list = split.get(names);
  if (list === undefined) {
    list = names.split("\n");
    if (split.size < 64) split.set(names, list);
  }
  const out = [];
  for (const name of list) {
    const value = headers.get(name);
    if (value !== null) out.push(name, value);
  }
  return out.join("\n");
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn headers_from_lines(text: &str) -> Result<web_sys::Headers, JsValue>;
    fn present_lines(headers: &web_sys::Headers, names: &str) -> String;
}

/// `Headers` holding `pairs`, set in order (a later name replaces an earlier one).
pub fn headers_of(pairs: &[(String, String)]) -> worker::Result<worker::Headers> {
    Ok(worker::Headers(headers_from_lines(&lines_of(pairs)?)?))
}

/// `pairs` as one text: name and value each on its own line.
pub fn lines_of(pairs: &[(String, String)]) -> worker::Result<String> {
    let mut text = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if k.contains('\n') || v.contains('\n') {
            return Err(worker::Error::RustError(format!(
                "header `{k}` holds a newline"
            )));
        }
        if i > 0 {
            text.push('\n');
        }
        text.push_str(k);
        text.push('\n');
        text.push_str(v);
    }
    Ok(text)
}

/// The headers among `names` that `headers` has, with their values.
pub fn present<'a>(
    headers: &web_sys::Headers,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, String)> {
    let names: Vec<&str> = names.into_iter().collect();
    let text = present_lines(headers, &names.join("\n"));
    if text.is_empty() {
        return Vec::new();
    }
    let mut parts = text.split('\n');
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        out.push((k.to_ascii_lowercase(), v.to_string()));
    }
    out
}
