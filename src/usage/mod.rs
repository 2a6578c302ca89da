//! Usage as edgemeter counts it, and the adapters that read it from each provider's
//! responses. One adapter per provider sits behind [`UsageAdapter`], so a new API shape
//! is a new file, not a rewrite of the proxy.

mod anthropic;
mod openai;

pub use anthropic::Anthropic;
pub use openai::OpenAi;

use serde::{Deserialize, Serialize};

/// Units consumed by one request. `input` is the whole prompt; `cached` (read from the
/// provider's prompt cache), `cache_write` and `cache_write_1h` (written to it, for
/// the default 5 minutes or for an hour) and `audio` (audio input tokens) are parts of
/// it, each priced differently. `reasoning` is the part of `output` spent on hidden
/// reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
    pub images: u64,
    /// Audio or video duration, in milliseconds (the billable `seconds` meter is
    /// this over 1000, so fractions of a second are billed exactly).
    pub duration_ms: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
    pub audio: u64,
}

impl Usage {
    /// Tokens that count against token quotas.
    pub fn tokens(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// `input` split by rate: (fresh, cache reads, cache writes, one-hour cache writes,
    /// audio). Each part is at most what is left of `input`, so an upstream reporting
    /// parts larger than the whole is never billed beyond the whole.
    pub fn input_parts(&self) -> InputParts {
        let mut left = self.input;
        let mut take = |part: u64| {
            let t = part.min(left);
            left -= t;
            t
        };
        let (cached, cache_write) = (take(self.cached), take(self.cache_write));
        let (cache_write_1h, audio) = (take(self.cache_write_1h), take(self.audio));
        InputParts {
            fresh: left,
            cached,
            cache_write,
            cache_write_1h,
            audio,
        }
    }
}

/// A prompt's tokens by the rate they are priced at ([`Usage::input_parts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputParts {
    pub fresh: u64,
    pub cached: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
    pub audio: u64,
}

/// Characters per token used to estimate usage when the provider reported none.
/// Four is the usual English average; estimates are stored with an `estimated` flag.
pub const CHARS_PER_TOKEN: u64 = 4;

/// Tokens estimated from a character count, rounded up.
pub fn estimate_tokens(chars: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// What one streamed event turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Carries only usage (no choices): hidden from clients that did not ask for it.
    UsageOnly,
    Other,
}

/// Reads usage from one provider's responses.
pub trait UsageAdapter {
    /// Usage reported in a complete JSON response body, if any.
    fn read_body(&self, body: &[u8]) -> Option<Usage>;
    /// Observes the `data` of one streamed event.
    fn on_event(&mut self, data: &str) -> EventKind;
    /// Usage the provider reported in the stream so far, if any.
    fn reported(&self) -> Option<Usage>;
    /// Characters of generated text delivered so far (for estimating aborted streams).
    fn delivered_chars(&self) -> u64;
    /// Input tokens the provider reported before the output, if the API does that.
    fn reported_input(&self) -> Option<u64> {
        None
    }
}

/// How a finished or aborted stream is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    pub usage: Usage,
    pub estimated: bool,
}

impl Metered {
    /// What a call on a stored resource or an opted-in route bills: one request and no
    /// tokens, whatever its answer says (or if it cannot be read).
    pub fn one_request() -> Metered {
        Metered {
            usage: Usage::default(),
            estimated: false,
        }
    }
}

/// Usage of a buffered answer: what its body reports; the admission's input estimate
/// when it reports none; and the reserved bound when the answer could not be read at
/// all (the provider did the work, so it is never billed as nothing).
pub fn settle_buffered(
    adapter: &dyn UsageAdapter,
    body: Option<&[u8]>,
    input_estimate: u64,
    reserved: Usage,
) -> Metered {
    let Some(body) = body else {
        return Metered {
            usage: reserved,
            estimated: true,
        };
    };
    match adapter.read_body(body) {
        Some(usage) => Metered {
            usage,
            estimated: false,
        },
        None => Metered {
            usage: Usage {
                input: input_estimate,
                ..Usage::default()
            },
            estimated: true,
        },
    }
}

/// What the `x-edgemeter-cost-basis` header says of a cost worked out from `metered`.
pub fn cost_basis(metered: &Metered) -> &'static str {
    match metered.estimated {
        true => "estimated",
        false => "actual",
    }
}

/// Final usage of a stream: what the provider reported when it did, otherwise an
/// estimate from the delivered text and the admission's input estimate.
pub fn settle_stream(adapter: &dyn UsageAdapter, input_estimate: u64) -> Metered {
    if let Some(usage) = adapter.reported() {
        return Metered {
            usage,
            estimated: false,
        };
    }
    Metered {
        usage: Usage {
            input: adapter.reported_input().unwrap_or(input_estimate),
            output: estimate_tokens(adapter.delivered_chars()),
            ..Usage::default()
        },
        estimated: true,
    }
}

#[cfg(test)]
mod buffered_tests {
    use super::*;

    #[test]
    fn a_buffered_answer_bills_what_it_reports_an_estimate_or_the_bound() {
        let adapter = OpenAi::default();
        let reserved = Usage {
            input: 100,
            output: 64,
            ..Usage::default()
        };
        let body = br#"{"usage": {"prompt_tokens": 12, "completion_tokens": 5}}"#;
        let read = settle_buffered(&adapter, Some(body), 90, reserved);
        assert_eq!((read.usage.input, read.usage.output), (12, 5));
        assert_eq!(cost_basis(&read), "actual");
        let silent = settle_buffered(&adapter, Some(b"{}"), 90, reserved);
        assert_eq!((silent.usage.input, silent.usage.output), (90, 0));
        assert_eq!(cost_basis(&silent), "estimated");
        let unreadable = settle_buffered(&adapter, None, 90, reserved);
        assert_eq!(unreadable.usage, reserved, "never billed as nothing");
        assert!(unreadable.estimated);
    }
}
