//! A tally: what one meter and model used in a period (requests, tokens, images,
//! duration, and the estimated parts), with its arithmetic. A leaf value type: the
//! counter, the flush, the ledger and the rating input all count in it.

use crate::usage::Usage;
use serde::{Deserialize, Serialize};

/// Usage of one meter and model in the current period. Stored rows from before a
/// field existed read it as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Tally {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
    pub images: u64,
    /// Audio or video duration, in milliseconds.
    pub duration_ms: u64,
    /// Requests whose usage was estimated because the provider reported none.
    pub estimated: u64,
    pub cache_write: u64,
    pub cache_write_1h: u64,
    pub audio: u64,
    /// The input and output tokens of estimated requests: what the provider did not
    /// report, kept apart for reconciliation.
    pub estimated_input: u64,
    pub estimated_output: u64,
}

impl Tally {
    /// A tally as stored. Rows written before durations were counted in milliseconds
    /// hold whole `seconds`: they are read as that many thousand milliseconds.
    pub fn stored(text: &str) -> Result<Tally, serde_json::Error> {
        if !text.contains("\"seconds\"") {
            return serde_json::from_str(text);
        }
        let mut v: serde_json::Value = serde_json::from_str(text)?;
        if let Some(o) = v.as_object_mut() {
            if let (Some(s), false) = (o.remove("seconds"), o.contains_key("duration_ms")) {
                let ms = s.as_u64().unwrap_or(0).saturating_mul(1000);
                o.insert("duration_ms".into(), ms.into());
            }
        }
        serde_json::from_value(v)
    }

    pub fn usage(&self) -> Usage {
        Usage {
            input: self.input,
            output: self.output,
            cached: self.cached,
            reasoning: self.reasoning,
            images: self.images,
            duration_ms: self.duration_ms,
            cache_write: self.cache_write,
            cache_write_1h: self.cache_write_1h,
            audio: self.audio,
        }
    }

    /// One request with usage `u`.
    pub fn one(u: &Usage, estimated: bool) -> Tally {
        let mut t = Tally::default();
        t.add(u, estimated);
        t
    }

    /// One more request with usage `u`.
    pub fn add(&mut self, u: &Usage, estimated: bool) {
        let mut one = Tally {
            requests: 1,
            estimated: u64::from(estimated),
            ..Tally::default()
        };
        (one.input, one.output, one.cached) = (u.input, u.output, u.cached);
        (one.reasoning, one.images, one.duration_ms) = (u.reasoning, u.images, u.duration_ms);
        (one.cache_write, one.cache_write_1h) = (u.cache_write, u.cache_write_1h);
        one.audio = u.audio;
        if estimated {
            (one.estimated_input, one.estimated_output) = (u.input, u.output);
        }
        *self = self.plus(&one);
    }
}

/// A meter (API family, e.g. `chat.completions`) and a model.
pub type MeterKey = (String, String);

impl Tally {
    /// `f` applied field by field. With `fields` (the stored form's names), one of the
    /// two places that list every field; the stored form's test fails if `fields`
    /// misses one.
    fn zip(&self, o: &Tally, f: impl Fn(u64, u64) -> u64) -> Tally {
        Tally {
            requests: f(self.requests, o.requests),
            input: f(self.input, o.input),
            output: f(self.output, o.output),
            cached: f(self.cached, o.cached),
            reasoning: f(self.reasoning, o.reasoning),
            images: f(self.images, o.images),
            duration_ms: f(self.duration_ms, o.duration_ms),
            estimated: f(self.estimated, o.estimated),
            cache_write: f(self.cache_write, o.cache_write),
            cache_write_1h: f(self.cache_write_1h, o.cache_write_1h),
            audio: f(self.audio, o.audio),
            estimated_input: f(self.estimated_input, o.estimated_input),
            estimated_output: f(self.estimated_output, o.estimated_output),
        }
    }

    /// Component-wise `self - other`, never below zero.
    pub fn minus(&self, o: &Tally) -> Tally {
        self.zip(o, u64::saturating_sub)
    }

    /// Component-wise `self + other`, saturating: a counter never wraps.
    pub fn plus(&self, o: &Tally) -> Tally {
        self.zip(o, u64::saturating_add)
    }

    pub fn is_zero(&self) -> bool {
        *self == Tally::default()
    }

    /// Every field by its serialized name.
    fn fields(&self) -> [(&'static str, u64); 13] {
        [
            ("requests", self.requests),
            ("input", self.input),
            ("output", self.output),
            ("cached", self.cached),
            ("reasoning", self.reasoning),
            ("images", self.images),
            ("duration_ms", self.duration_ms),
            ("estimated", self.estimated),
            ("cache_write", self.cache_write),
            ("cache_write_1h", self.cache_write_1h),
            ("audio", self.audio),
            ("estimated_input", self.estimated_input),
            ("estimated_output", self.estimated_output),
        ]
    }

    /// The stored form: a JSON object of the fields that are not zero (read back with
    /// serde, a missing field is zero). Ledger totals are updated in place by the
    /// hundred per batch, and a row a quarter of the full form's size keeps those
    /// writes to fewer pages.
    pub fn stored_json(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push('{');
        for (name, v) in self.fields().into_iter().filter(|(_, v)| *v != 0) {
            if out.len() > 1 {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            out.push_str(&v.to_string());
        }
        out.push('}');
        out
    }
}

impl Tally {
    /// Swaps one estimated request's `billed` usage for its real `usage`.
    pub fn replace(&mut self, billed: &Usage, usage: &Usage, estimated: bool) {
        let mut less = Tally::default();
        less.add(billed, true);
        less.requests = 0;
        *self = self.minus(&less);
        self.requests = self.requests.saturating_sub(1);
        self.add(usage, estimated);
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn the_stored_form_keeps_every_field_and_leaves_zeros_out() {
        let mut t = Tally::default();
        assert_eq!(t.stored_json(), "{}");
        assert_eq!(Tally::stored(&t.stored_json()).unwrap(), t);
        // Every field set, each to its own value: a field missing from `fields` would
        // read back as zero.
        let full = Tally {
            requests: 1,
            input: 2,
            output: 3,
            cached: 4,
            reasoning: 5,
            images: 6,
            duration_ms: 7,
            estimated: 8,
            cache_write: 9,
            cache_write_1h: 10,
            audio: 11,
            estimated_input: 12,
            estimated_output: u64::MAX,
        };
        assert_eq!(Tally::stored(&full.stored_json()).unwrap(), full);
        let full_form: serde_json::Value = serde_json::to_value(full).unwrap();
        let stored_form: serde_json::Value = serde_json::from_str(&full.stored_json()).unwrap();
        assert_eq!(stored_form, full_form);
        t.input = 1000;
        t.requests = 1;
        assert_eq!(t.stored_json(), r#"{"requests":1,"input":1000}"#);
        assert_eq!(Tally::stored(&t.stored_json()).unwrap(), t);
    }
}
