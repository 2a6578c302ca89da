//! The stream pump: a task in `wait_until` reads the upstream and feeds the client
//! through a channel, so the client never pulls the upstream itself. The provider's own
//! streams take the fast path (`super::stream_tap`), which hands over to this loop once
//! the client left. When the client goes away the task keeps reading, within the drain
//! budget, until the provider's usage event arrives; past the budget it cancels the
//! upstream and bills the reservation. While the stream runs it extends its reservation (a heartbeat), so a
//! long stream is never expired from under itself. Every decision is the core's
//! (`stream_meter`, `reservation`); this file moves bytes and keeps time.

use super::client;
use crate::protocol::ExtendRequest;
use crate::reservation::heartbeat_due;
use crate::stream_meter::{broken_off, replayable, DrainBudget, Ending, StreamMeter};
use crate::usage::{Metered, Usage};
use futures_channel::mpsc;
use futures_util::future::{select, Either};
use futures_util::{FutureExt, Stream, StreamExt};
use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use worker::{AbortController, Delay, Env};

/// A body as chunks of bytes.
pub type Body = Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>>;

/// How often the pump looks at the clock and the client while the upstream is quiet.
pub(super) const TICK: Duration = Duration::from_millis(500);

/// Chunks queued for the client before the pump waits for it to read (on the fast
/// path's identity stream, that many 4 KiB).
pub(super) const QUEUE: usize = 16;

/// What the stream reports when it is over.
pub struct StreamEnd {
    pub metered: Metered,
    /// Everything sent to the client, if it fit in `crate::stream_meter::REPLAY_LIMIT` and was asked for.
    pub sent: Option<Vec<u8>>,
}

/// Keeps a reservation alive while its stream runs.
pub struct Heartbeat {
    pub env: Env,
    pub counter: String,
    pub reservation: u64,
    /// A stream admitted under a lease beats with a lease report instead.
    pub leased: Option<std::rc::Rc<super::leases::Leased>>,
}

pub struct Pump {
    pub upstream: Body,
    /// Shared with the fast path's forwarding closure (`super::stream_tap`).
    pub meter: Rc<RefCell<StreamMeter>>,
    pub budget: DrainBudget,
    /// Cancels the upstream fetch when the drain budget is spent.
    pub cancel: Option<AbortController>,
    pub heartbeat: Heartbeat,
    pub reserved: Usage,
}

/// The client's side: the channel's receiving end, as a response body.
pub fn client_body(rx: mpsc::Receiver<Vec<u8>>) -> Body {
    Box::pin(rx.map(Ok))
}

/// A channel for one stream.
pub fn channel() -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
    mpsc::channel(QUEUE)
}

/// The client, while it is there.
pub(super) struct Client {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    /// When it left (real milliseconds) and how many bytes were drained since.
    left: Option<(f64, usize)>,
}

impl Client {
    /// A client that left at `at` (real milliseconds), `drained` bytes ago.
    pub(super) fn left_at(at: f64, drained: usize) -> Self {
        Client {
            tx: None,
            left: Some((at, drained)),
        }
    }

    fn gone(&mut self) {
        if self.tx.take().is_some() {
            super::metrics::bump(super::metrics::Metric::StreamsAborted);
            self.left = Some((worker::js_sys::Date::now(), 0));
        }
    }

    /// Hands `out` to the client; one that has not taken a chunk within the drain
    /// budget counts as gone, so a stalled client cannot hold the task past it.
    async fn send(&mut self, out: Vec<u8>, budget: &DrainBudget) {
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        // A client keeping up leaves room in the queue: no timer for that chunk.
        let room = futures_util::future::poll_fn(|cx| tx.poll_ready(cx)).now_or_never();
        if let Some(ready) = room {
            if !(ready.is_ok() && tx.start_send(out).is_ok()) {
                self.gone();
            }
            return;
        }
        let wait = Delay::from(Duration::from_millis(budget.ms));
        let ready = {
            let ready = futures_util::future::poll_fn(|cx| tx.poll_ready(cx));
            matches!(
                select(Box::pin(ready), wait).await,
                Either::Left((Ok(()), _))
            )
        };
        if !(ready && tx.start_send(out).is_ok()) {
            self.gone();
        }
    }
}

impl Pump {
    /// Runs the stream to its end and says how it is billed.
    pub async fn run(self, tx: mpsc::Sender<Vec<u8>>) -> StreamEnd {
        let client = Client {
            tx: Some(tx),
            left: None,
        };
        self.drive(client).await
    }

    /// Extends the reservation (or reports the lease) when its heartbeat is due.
    pub(super) async fn beat_if_due(&self, last_beat: &mut i64) {
        let now = super::clock::now_ms();
        if !heartbeat_due(*last_beat, now) {
            return;
        }
        *last_beat = now;
        let h = &self.heartbeat;
        match &h.leased {
            Some(leased) => super::leases::beat(&h.env, &leased.admission).await,
            None => {
                let beat = ExtendRequest {
                    reservation: h.reservation,
                    now_ms: now,
                };
                client::extend(&h.env, &h.counter, &beat).await;
            }
        }
    }

    /// The channel pump's loop, from a client that is there or already left.
    pub(super) async fn drive(mut self, mut client: Client) -> StreamEnd {
        let mut last_beat = super::clock::now_ms();
        // One timer for many chunks: made again only once it fired.
        let mut tick = Box::pin(Delay::from(TICK));
        let ending = loop {
            let next = self.upstream.next();
            match select(next, tick.as_mut()).await {
                Either::Left((Some(Ok(chunk)), _)) => {
                    let out = self.meter.borrow_mut().forward(&chunk);
                    if let Some((_, drained)) = &mut client.left {
                        *drained += chunk.len();
                    } else if !out.is_empty() {
                        client.send(out, &self.budget).await;
                    }
                }
                // Broken after the client left: what it generated is unknown.
                Either::Left((Some(Err(_)), _)) if client.left.is_some() => {
                    break broken_off(true);
                }
                Either::Left((Some(Err(_)) | None, _)) => {
                    // An unfinished last event is forwarded under the same rules; a
                    // broken upstream ends the stream and what it reported is billed.
                    let rest = self.meter.borrow_mut().rest();
                    if !rest.is_empty() {
                        client.send(rest, &self.budget).await;
                    }
                    break broken_off(false);
                }
                Either::Right(_) => tick = Box::pin(Delay::from(TICK)),
            }
            if client.tx.as_ref().is_some_and(|tx| tx.is_closed()) {
                client.gone();
            }
            // After the client left, the upstream is read to its end (its usage comes
            // last), within the drain budget.
            if let Some((at, drained)) = client.left {
                let waited = worker::js_sys::Date::now() - at;
                if self.budget.spent(waited, drained) {
                    super::metrics::bump(super::metrics::Metric::AbortsBilledAtBound);
                    break Ending::DrainSpent;
                }
                continue; // nobody to keep the reservation alive for
            }
            self.beat_if_due(&mut last_beat).await;
        };
        self.end(ending, client.left.is_some())
    }

    /// Ends the stream: the upstream is cancelled after a spent drain, and what it is
    /// billed and may replay is said.
    pub(super) fn end(mut self, ending: Ending, client_left: bool) -> StreamEnd {
        if ending == Ending::DrainSpent {
            if let Some(c) = self.cancel.take() {
                c.abort(); // nothing more is billed from the provider
            }
        }
        let sent = self.meter.borrow_mut().take_sent();
        StreamEnd {
            metered: self.meter.borrow().metered(ending, &self.reserved),
            // What a client that left saw is not the answer: it is never replayed.
            sent: replayable(sent, client_left),
        }
    }
}

/// An SSE answer of a route not metered by tokens (an opted-in route): passed through
/// event by event under the same error-event rules, its usage not read.
pub fn scrubbed(body: Body) -> Body {
    let meter = StreamMeter::new(Box::new(crate::usage::OpenAi::default()), false, 0, false);
    let state = (body, meter, false);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut body, mut meter, done)| async move {
            if done {
                return None;
            }
            loop {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let out = meter.forward(&chunk);
                        if !out.is_empty() {
                            return Some((Ok(out), (body, meter, false)));
                        }
                    }
                    Some(Err(_)) | None => {
                        let rest = meter.rest();
                        return (!rest.is_empty()).then_some((Ok(rest), (body, meter, true)));
                    }
                }
            }
        },
    ))
}
