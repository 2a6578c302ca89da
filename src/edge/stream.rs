//! The metered stream: forwards an SSE body event by event as soon as each event is
//! complete, reads usage as it passes, hides the usage-only event when the client did
//! not ask for it, and reports the final usage exactly once, when the stream ends or
//! when the client goes away and the runtime drops it.

use crate::sse::{event_data, SseScanner};
use crate::usage::{settle_stream, EventKind, Metered, UsageAdapter};
use futures_channel::oneshot;
use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body as chunks of bytes.
pub type Body = Pin<Box<dyn Stream<Item = worker::Result<Vec<u8>>>>>;

/// Responses kept for idempotent replay are capped at this size.
pub const REPLAY_LIMIT: usize = 1 << 20;

/// What the stream reports when it is over.
pub struct StreamEnd {
    pub metered: Metered,
    /// Everything sent to the client, if it fit in [`REPLAY_LIMIT`] and was asked for.
    pub sent: Option<Vec<u8>>,
}

pub struct MeteredStream {
    upstream: Body,
    scanner: SseScanner,
    adapter: Box<dyn UsageAdapter>,
    hide_usage: bool,
    input_estimate: u64,
    sent: Option<Vec<u8>>,
    done: Option<oneshot::Sender<StreamEnd>>,
}

impl MeteredStream {
    /// Wraps `upstream`; the receiver resolves once with the stream's final usage.
    pub fn new(
        upstream: Body,
        adapter: Box<dyn UsageAdapter>,
        hide_usage: bool,
        input_estimate: u64,
        keep_sent: bool,
    ) -> (Self, oneshot::Receiver<StreamEnd>) {
        let (tx, rx) = oneshot::channel();
        let stream = MeteredStream {
            upstream,
            scanner: SseScanner::default(),
            adapter,
            hide_usage,
            input_estimate,
            sent: keep_sent.then(Vec::new),
            done: Some(tx),
        };
        (stream, rx)
    }

    fn finish(&mut self) {
        if let Some(tx) = self.done.take() {
            let metered = settle_stream(self.adapter.as_ref(), self.input_estimate);
            let _ = tx.send(StreamEnd {
                metered,
                sent: self.sent.take(),
            });
        }
    }

    fn record(&mut self, out: &[u8]) {
        if let Some(sent) = &mut self.sent {
            if sent.len() + out.len() > REPLAY_LIMIT {
                self.sent = None;
            } else {
                sent.extend_from_slice(out);
            }
        }
    }

    /// The bytes to forward for one upstream chunk: every event it completes, minus a
    /// hidden usage event.
    fn forward(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        for event in self.scanner.push(chunk) {
            let data = event_data(&event);
            let kind = match &data {
                Some(data) => self.adapter.on_event(data),
                None => EventKind::Other,
            };
            if self.hide_usage && kind == EventKind::UsageOnly {
                continue;
            }
            match data.and_then(|d| crate::surface::events::rewrite(&event, &d)) {
                Some(scrubbed) => out.extend_from_slice(&scrubbed),
                None => out.extend_from_slice(&event),
            }
        }
        self.record(&out);
        out
    }
}

/// An SSE answer of a route not metered by tokens (an opted-in route): passed through
/// event by event under the same error-event rules, its usage not read. The metering
/// half of `MeteredStream` reports to nobody here.
pub fn scrubbed(body: Body) -> Body {
    let adapter = Box::new(crate::usage::OpenAi::default());
    let (stream, _unread) = MeteredStream::new(body, adapter, false, 0, false);
    Box::pin(stream)
}

impl Stream for MeteredStream {
    type Item = worker::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done.is_none() {
            return Poll::Ready(None); // finished: the upstream is not polled again
        }
        loop {
            match self.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = self.forward(&chunk);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                    // An unfinished last event is forwarded under the same rules as a
                    // finished one; a broken upstream ends the stream and what was
                    // delivered is metered.
                    let rest = self.scanner.take_rest();
                    let rest = event_data(&rest)
                        .and_then(|d| crate::surface::events::rewrite(&rest, &d))
                        .unwrap_or(rest);
                    self.record(&rest);
                    self.finish();
                    return Poll::Ready((!rest.is_empty()).then_some(Ok(rest)));
                }
            }
        }
    }
}

impl Drop for MeteredStream {
    /// The client went away: meter what was generated so far.
    fn drop(&mut self) {
        self.finish();
    }
}
