// The Worker's entry: scripts/build writes it over worker-build's build/worker/shim.mjs
// (which only re-exports ../index.js), so its imports are relative to that place.
//
// The metered proxy's common case (a request admitted under the isolate's quota lease,
// see src/edge/fast.rs) does its I/O here, with the runtime's own awaits, and makes
// every decision in the wasm through MeteredFast's synchronous calls. Every other
// request goes to the wasm's fetch handler whole.
import Worker, { MeteredFast } from "../index.js";
export * from "../index.js";

export default class Edge extends Worker {
  fetch(request) {
    const { env, ctx } = this;
    const id = proxied(request) ? MeteredFast.route(env, ctx, request.url, request.headers) : 0;
    if (id === 0) return super.fetch(request);
    return metered(id, request, (r) => super.fetch(r));
  }
}

// A POST under /v1/: the only requests worth asking MeteredFast about.
function proxied(request) {
  if (request.method !== "POST") return false;
  const url = request.url;
  return url.startsWith("/v1/", url.indexOf("/", url.indexOf("//") + 2));
}

async function metered(id, request, whole) {
  let body;
  try {
    body = new Uint8Array(await request.arrayBuffer());
  } catch (e) {
    MeteredFast.forget(id);
    throw e;
  }
  const plan = MeteredFast.begin(id, body);
  if (plan === undefined) return whole(new Request(request, { body }));
  if (plan instanceof Response) return plan;
  let resp;
  try {
    resp = await fetch(plan.url, plan.init);
  } catch (e) {
    return MeteredFast.finish(id, undefined, undefined, String(e));
  }
  if (plan.stream) return MeteredFast.stream(id, resp);
  let bytes;
  try {
    bytes = await capped(resp, plan.limit);
  } catch (e) {
    return MeteredFast.finish(id, resp, undefined, String(e));
  }
  return MeteredFast.finish(id, resp, bytes, undefined);
}

// The whole body, or null past `limit` bytes (read no further).
async function capped(resp, limit) {
  const declared = resp.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    resp.body?.cancel().catch(() => {});
    return null;
  }
  if (declared !== null || resp.body === null) {
    const bytes = new Uint8Array(await resp.arrayBuffer());
    return bytes.length > limit ? null : bytes;
  }
  const reader = resp.body.getReader();
  const chunks = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > limit) {
      reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
