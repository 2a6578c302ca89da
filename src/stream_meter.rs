//! Metering a streamed answer, event by event: each complete SSE event is forwarded
//! as soon as it is whole (an error event scrubbed), usage is read as it passes, the
//! usage-only event is hidden when the client did not ask for it, and what was sent is
//! kept for idempotent replay when it fits. How the stream ended decides how it is
//! billed ([`StreamMeter::metered`]). The Worker feeds it; nothing here does I/O.

use crate::sse::{event_data, SseScanner};
use crate::usage::{settle_stream, EventKind, Metered, Usage, UsageAdapter};

/// Responses kept for idempotent replay are capped at this size.
pub const REPLAY_LIMIT: usize = 1 << 20;

/// How long and how much of the upstream is still read after the client went away,
/// waiting for the usage event: `ABORT_DRAIN_MS` (default and most 20 s: the runtime
/// ends background work 30 s after the client leaves, and the settlement needs the
/// rest) and `ABORT_DRAIN_BYTES` (default 1 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainBudget {
    pub ms: u64,
    pub bytes: usize,
}

impl DrainBudget {
    /// Whether the drain after the client left is over: `waited_ms` since it left and
    /// `drained` bytes read since. Then the stream is billed its bound and cancelled.
    pub fn spent(&self, waited_ms: f64, drained: usize) -> bool {
        waited_ms >= self.ms as f64 || drained >= self.bytes
    }

    pub fn from_settings(ms: Option<&str>, bytes: Option<&str>) -> Self {
        let ms = ms.and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = bytes.and_then(|v| v.trim().parse::<usize>().ok());
        DrainBudget {
            ms: ms.unwrap_or(20_000).min(20_000),
            bytes: bytes.unwrap_or(1 << 20),
        }
    }
}

/// How a metered stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The upstream finished (or broke) while the client read it, or the usage event
    /// arrived after the client left.
    Upstream,
    /// The client left and the upstream did not finish within the drain budget (or
    /// broke first); it was cancelled.
    DrainSpent,
}

pub struct StreamMeter {
    scanner: SseScanner,
    adapter: Box<dyn UsageAdapter>,
    hide_usage: bool,
    input_estimate: u64,
    sent: Option<Vec<u8>>,
}

impl StreamMeter {
    pub fn new(
        adapter: Box<dyn UsageAdapter>,
        hide_usage: bool,
        input_estimate: u64,
        keep_sent: bool,
    ) -> Self {
        StreamMeter {
            scanner: SseScanner::default(),
            adapter,
            hide_usage,
            input_estimate,
            sent: keep_sent.then(Vec::new),
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
    pub fn forward(&mut self, chunk: &[u8]) -> Vec<u8> {
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

    /// The unfinished last event when the upstream ends, under the same rules as a
    /// finished one.
    pub fn rest(&mut self) -> Vec<u8> {
        let rest = self.scanner.take_rest();
        let rest = event_data(&rest)
            .and_then(|d| crate::surface::events::rewrite(&rest, &d))
            .unwrap_or(rest);
        self.record(&rest);
        rest
    }

    /// What the stream is billed: after a spent drain budget, everything reserved (the
    /// provider may have generated up to the cap, reasoning included, and usage seen
    /// before the end may be a running total); otherwise the provider's usage when it
    /// reported it, or an estimate from what was delivered.
    pub fn metered(&self, ending: Ending, reserved: &Usage) -> Metered {
        match ending {
            Ending::DrainSpent => Metered {
                usage: *reserved,
                estimated: true,
            },
            Ending::Upstream => settle_stream(self.adapter.as_ref(), self.input_estimate),
        }
    }

    /// Everything sent, if it was asked for and fit in [`REPLAY_LIMIT`].
    pub fn take_sent(&mut self) -> Option<Vec<u8>> {
        self.sent.take()
    }
}

/// How a stream ends when its upstream breaks off: while the client reads, on what
/// was reported; after it left, what the provider generated is unknown (the bound).
pub fn broken_off(client_left: bool) -> Ending {
    match client_left {
        true => Ending::DrainSpent,
        false => Ending::Upstream,
    }
}

/// What is kept of a stream for idempotent retries: what the client saw, and only if
/// it saw the whole answer (what a client that left saw is not the answer).
pub fn replayable(sent: Option<Vec<u8>>, client_left: bool) -> Option<Vec<u8>> {
    sent.filter(|_| !client_left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::OpenAi;

    fn meter() -> StreamMeter {
        StreamMeter::new(Box::new(OpenAi::default()), true, 7, true)
    }

    const RESERVED: Usage = Usage {
        input: 100,
        output: 400,
        cached: 0,
        reasoning: 0,
        images: 0,
        duration_ms: 0,
        cache_write: 0,
        cache_write_1h: 0,
        audio: 0,
    };

    #[test]
    fn a_spent_drain_budget_bills_the_reservation_even_after_a_running_total() {
        let mut m = meter();
        m.forward(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello there\"}}]}\n\n");
        let spent = m.metered(Ending::DrainSpent, &RESERVED);
        assert_eq!((spent.usage, spent.estimated), (RESERVED, true));
        let ended = m.metered(Ending::Upstream, &RESERVED);
        assert!(ended.estimated);
        assert_eq!(ended.usage.input, 7);
        m.forward(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":30,\"total_tokens\":42}}\n\n");
        let got = m.metered(Ending::Upstream, &RESERVED);
        assert_eq!(
            (got.usage.input, got.usage.output, got.estimated),
            (12, 30, false)
        );
        // An upstream that did not finish may have reported a running total only.
        assert_eq!(m.metered(Ending::DrainSpent, &RESERVED).usage, RESERVED);
    }

    #[test]
    fn the_hidden_usage_event_is_not_forwarded_or_kept() {
        let mut m = meter();
        let out = m.forward(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n");
        assert_eq!(out, b"data: [DONE]\n\n");
        assert_eq!(m.take_sent().unwrap(), b"data: [DONE]\n\n");
    }

    #[test]
    fn drain_settings_have_safe_defaults_and_bounds() {
        let d = DrainBudget::from_settings(None, None);
        assert_eq!((d.ms, d.bytes), (20_000, 1 << 20));
        let d = DrainBudget::from_settings(Some("60000"), Some("4096"));
        assert_eq!((d.ms, d.bytes), (20_000, 4096));
        let d = DrainBudget::from_settings(Some("soon"), Some("-1"));
        assert_eq!((d.ms, d.bytes), (20_000, 1 << 20));
    }

    #[test]
    fn a_client_that_left_is_drained_within_its_budget_and_never_replayed() {
        let budget = DrainBudget {
            ms: 1_000,
            bytes: 100,
        };
        assert!(!budget.spent(999.0, 99));
        assert!(budget.spent(1_000.0, 0) && budget.spent(0.0, 100));
        assert_eq!(broken_off(true), Ending::DrainSpent);
        assert_eq!(broken_off(false), Ending::Upstream);
        assert_eq!(
            replayable(Some(b"all".to_vec()), false),
            Some(b"all".to_vec())
        );
        assert_eq!(replayable(Some(b"part".to_vec()), true), None);
    }
}
