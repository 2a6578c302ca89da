//! The stream pump's fast path: a loop in the runtime's JavaScript reads the upstream,
//! passes each chunk through the wasm meter (`StreamMeter::forward`, one call) and
//! writes what it returns to the client's stream (the runtime's identity stream). A
//! chunk then costs one call into the wasm instead of a chain of promises through Rust
//! futures and a channel.
//!
//! The Rust side (`Pump::tapped`) wakes only on a tick, to keep the reservation alive
//! and to judge a stalled or departed client, and when the loop stops: at the end of
//! the upstream, when it breaks, or when the client left. After that it reads the rest
//! itself under the drain budget, as the channel pump does (`Pump::drive`).

use super::metrics::{bump, Metric};
use super::stream::{Body, Client, Pump, StreamEnd, TICK};
use crate::stream_meter::{broken_off, Ending};
use futures_util::future::{select, Either};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use worker::js_sys::{Date, Promise, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::ReadableStream;
use worker::Delay;

// `run` resolves to "end", "error" or "gone". A chunk read after the client left is
// still metered (the usage may be in it) and counted as drained; a forward that throws
// (the meter dropped after a spent drain) ends the loop as an error.
#[wasm_bindgen(inline_js = r#"
// Where the first event of `bytes` ends (after its blank line), or 0 if it does not
// within the first 4 KiB.
function eventEnd(bytes) {
  const end = Math.min(bytes.length, 4096) - 1;
  for (let i = 0; i < end; i++) {
    if (bytes[i] !== 10) continue;
    if (bytes[i + 1] === 10) return i + 2;
    if (bytes[i + 1] === 13 && bytes[i + 2] === 10) return i + 3;
  }
  return 0;
}
export class Tap {
  constructor(source, forward, queue) {
    this.reader = source.getReader();
    this.forward = forward;
    this.leftAt = -1;
    this.drainedBytes = 0;
    this.fullSince = -1;
    // The runtime's own identity stream: its readable side goes to the client with no
    // JavaScript queue in between (a byte ReadableStream fed by enqueue cost about a
    // quarter more CPU per stream).
    const pipe = new IdentityTransformStream({ highWaterMark: queue * 4096 });
    this.body = pipe.readable;
    this.writer = pipe.writable.getWriter();
    // The client cancelled: a waiting write fails, and the loop stops.
    this.writer.closed.catch(() => this.leave());
  }
  leave() {
    if (this.leftAt < 0) this.leftAt = Date.now();
    this.writer.abort().catch(() => {});
  }
  async run() {
    try {
      let head = true;
      for (;;) {
        const { done, value } = await this.reader.read();
        if (done) return "end";
        let rest = value;
        if (head) {
          // The first event goes out on its own: a burst the provider already sent
          // would otherwise hold it back until all of the burst is metered.
          head = false;
          const cut = eventEnd(value);
          if (cut > 0 && cut < value.length) {
            rest = value.subarray(cut);
            if (!(await this.put(value.subarray(0, cut)))) {
              await this.put(rest);
              return "gone";
            }
          }
        }
        if (!(await this.put(rest))) return "gone";
      }
    } catch (_) {
      return "error";
    }
  }
  // Meters `value` and writes what the meter lets through: false once the client left
  // (then it is metered, never delivered, and counted as drained).
  async put(value) {
    const out = this.forward(value);
    if (this.leftAt < 0) {
      if (out.length === 0) return true;
      this.fullSince = Date.now();
      const written = await this.writer.write(out).then(() => true, () => false);
      this.fullSince = -1;
      if (written) return true;
      this.leave();
    }
    this.drainedBytes += value.length;
    return false;
  }
  left_at() { return this.leftAt; }
  drained() { return this.drainedBytes; }
  stalled_since() { return this.fullSince; }
  finish(rest) {
    if (rest.length > 0) this.writer.write(rest).catch(() => {});
    this.writer.close().catch(() => {});
  }
  async next() {
    const { done, value } = await this.reader.read();
    return done ? null : value;
  }
}
"#)]
extern "C" {
    type Tap;
    #[wasm_bindgen(constructor)]
    fn new(source: &ReadableStream, forward: &Forward, queue: u32) -> Tap;
    #[wasm_bindgen(method, getter)]
    fn body(this: &Tap) -> ReadableStream;
    #[wasm_bindgen(method)]
    fn run(this: &Tap) -> Promise;
    #[wasm_bindgen(method)]
    fn leave(this: &Tap);
    #[wasm_bindgen(method)]
    fn left_at(this: &Tap) -> f64;
    #[wasm_bindgen(method)]
    fn drained(this: &Tap) -> f64;
    #[wasm_bindgen(method)]
    fn stalled_since(this: &Tap) -> f64;
    #[wasm_bindgen(method)]
    fn finish(this: &Tap, rest: &[u8]);
    /// The next chunk (`null` at the end), once the loop has stopped.
    #[wasm_bindgen(method)]
    fn next(this: &Tap) -> Promise;
}

type Forward = Closure<dyn FnMut(Vec<u8>) -> Vec<u8>>;

/// How the JavaScript loop stopped, or why the Rust side stopped waiting for it.
enum Stop {
    End,
    Broken,
    Gone,
    /// The client left and the drain budget ran out while the upstream was quiet.
    Spent,
}

impl Pump {
    /// Starts the fast path on the provider's own stream: gives the client's body and
    /// the task that runs the stream to its end (for `wait_until`).
    pub fn tapped(
        self,
        source: &ReadableStream,
    ) -> (ReadableStream, impl std::future::Future<Output = StreamEnd>) {
        let meter = Rc::clone(&self.meter);
        let forward: Forward =
            Closure::new(move |chunk: Vec<u8>| meter.borrow_mut().forward(&chunk));
        let tap = Tap::new(source, &forward, super::stream::QUEUE as u32);
        let body = tap.body();
        (body, self.run_tapped(tap, forward))
    }

    async fn run_tapped(mut self, tap: Tap, forward: Forward) -> StreamEnd {
        let stop = self.watch(&tap).await;
        drop(forward); // the loop has stopped, or it is cut off: it can call it no more
        let left = tap.left_at();
        if left >= 0.0 {
            bump(Metric::StreamsAborted);
        }
        let ending = match stop {
            // Broken after the client left: what it generated is unknown.
            Stop::Broken if left >= 0.0 => broken_off(true),
            // An unfinished last event is forwarded (and metered) under the same rules.
            Stop::End | Stop::Broken => {
                let rest = self.meter.borrow_mut().rest();
                tap.finish(&rest);
                broken_off(false)
            }
            Stop::Spent => {
                bump(Metric::AbortsBilledAtBound);
                Ending::DrainSpent
            }
            Stop::Gone => {
                // The rest is read here, under the drain budget, as the channel pump does.
                let client = Client::left_at(left, tap.drained() as usize);
                self.upstream = rest_of(tap);
                return self.drive(client).await;
            }
        };
        self.end(ending, left >= 0.0)
    }

    /// Waits for the JavaScript loop to stop, waking on each tick to beat the
    /// heartbeat, to let a client that stopped reading go, and to spend the drain
    /// budget of one that left while the upstream is quiet.
    async fn watch(&mut self, tap: &Tap) -> Stop {
        let mut run = JsFuture::from(tap.run());
        let mut last_beat = super::clock::now_ms();
        loop {
            let tick = Box::pin(Delay::from(TICK));
            match select(&mut run, tick).await {
                Either::Left((Ok(v), _)) => {
                    return match v.as_string().as_deref() {
                        Some("end") => Stop::End,
                        Some("gone") => Stop::Gone,
                        _ => Stop::Broken,
                    }
                }
                Either::Left((Err(_), _)) => return Stop::Broken,
                Either::Right(_) => {}
            }
            let now = Date::now();
            let left = tap.left_at();
            if left >= 0.0 {
                if self.budget.spent(now - left, tap.drained() as usize) {
                    return Stop::Spent;
                }
                continue;
            }
            let stalled = tap.stalled_since();
            if stalled >= 0.0 && now - stalled >= self.budget.ms as f64 {
                tap.leave(); // the loop stops at once: it was waiting for room
                continue;
            }
            self.beat_if_due(&mut last_beat).await;
        }
    }
}

/// The rest of the provider's stream, read by Rust from here on through the tap's
/// reader (a stream once read from cannot be handed to anything else).
fn rest_of(tap: Tap) -> Body {
    Box::pin(futures_util::stream::unfold(Some(tap), |tap| async move {
        let tap = tap?;
        match JsFuture::from(tap.next()).await {
            Ok(v) if v.is_null() => None,
            Ok(v) => Some((Ok(Uint8Array::new(&v).to_vec()), Some(tap))),
            Err(e) => Some((Err(worker::Error::from(e)), None)),
        }
    }))
}
