//! The runtime objects the entry's common case needs (`super::fast`), each built by
//! one call into JavaScript: the provider's fetch and the replies. Byte bodies cross as
//! views of the wasm's memory, valid only during the call, so each is copied there.

use wasm_bindgen::prelude::*;
use worker::web_sys;

#[wasm_bindgen(inline_js = r#"
export function fetch_plan(url, lines, body, limit, signal) {
  // A copy: `body` is a view of the wasm's memory, valid only during this call.
  const init = { method: "POST", headers: headers(lines), body: body.slice(), redirect: "manual" };
  if (signal !== undefined) init.signal = signal;
  return { url, limit, stream: signal !== undefined, init };
}
export function reply_of(status, lines, body) {
  return new Response(body.slice(), { status, headers: headers(lines) });
}
export function stream_reply(status, lines, body) {
  return new Response(body, { status, headers: headers(lines) });
}
// Headers from name and value lines (`js_headers::lines_of`), appended in order. A
// Headers object costs the runtime half what converting an array of pairs does.
function headers(lines) {
  const out = new Headers();
  if (lines === "") return out;
  const parts = lines.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) out.append(parts[i], parts[i + 1]);
  return out;
}
"#)]
extern "C" {
    /// Throws when the runtime refuses a header (a provider key holding a character
    /// no header may carry).
    #[wasm_bindgen(catch)]
    pub(super) fn fetch_plan(
        url: &str,
        lines: &str,
        body: &[u8],
        limit: usize,
        signal: Option<&web_sys::AbortSignal>,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    pub(super) fn reply_of(
        status: u16,
        lines: &str,
        body: &[u8],
    ) -> Result<web_sys::Response, JsValue>;
    #[wasm_bindgen(catch)]
    pub(super) fn stream_reply(
        status: u16,
        lines: &str,
        body: &web_sys::ReadableStream,
    ) -> Result<web_sys::Response, JsValue>;
}
