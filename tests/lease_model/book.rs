//! The model's isolates keep their `LeaseBook` as the calls made on it, replayed to
//! rebuild it (it is neither Clone nor Hash), and compare by a hash of its `Debug` text.

use super::{Req, COUNTER, FAR, HOLDER};
use edgemeter::lease::{Grant, Report, Slice};
use edgemeter::lease_holder::{Admission, Held, LeaseBook};
use edgemeter::request::AdmitAsk;
use edgemeter::usage::Usage;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

pub fn ask_of(tokens: u64) -> AdmitAsk {
    let mut a = AdmitAsk::default();
    (a.meter, a.model) = ("chat.completions".into(), "gpt-4o-mini".into());
    (a.input_estimate, a.input_reserve) = (tokens - tokens / 2, tokens - tokens / 2);
    (a.output_cap, a.choices) = (Some(tokens / 2), 1);
    a
}

pub fn usage_of(tokens: u64) -> Usage {
    let mut u = Usage::default();
    (u.input, u.output) = (tokens - tokens / 2, tokens / 2);
    u
}

/// A call on a book, kept to rebuild it.
#[derive(Debug)]
pub enum Op {
    Install(u64, Grant, i64, i64),
    Admit(Slice, i64),
    Finish(Adm, Req, i64),
    Retire(i64),
    Take(i64),
    Failed(Vec<Report>, i64),
}

fn run(b: &mut LeaseBook, op: &Op) -> (Option<Admission>, Vec<Report>) {
    match op {
        Op::Install(id, grant, window, asked) => {
            let held = Held::new(*id, "open".into(), grant.clone(), *asked, *window);
            b.install(HOLDER, COUNTER, *id, held, *asked);
        }
        Op::Admit(one, now) => return (b.admit(HOLDER, one, *now), vec![]),
        Op::Finish(a, (tokens, used), now) => {
            let (key, usage) = ((ask_of(1).meter, ask_of(1).model), usage_of(*tokens));
            b.finish(&a.0, used.then_some((&key, &usage, false)), *now);
        }
        Op::Retire(now) => return (None, b.retire(HOLDER, *now)),
        Op::Take(now) => return (None, b.take_at(COUNTER, *now)),
        Op::Failed(reports, now) => b.failed(COUNTER, reports, *now),
    }
    (None, vec![])
}

/// The calls made on a book, newest first, shared between states.
#[derive(Debug)]
struct Log(Op, Option<Arc<Log>>);

#[derive(Clone, Default)]
pub struct Book {
    log: Option<Arc<Log>>,
    seen: u64,
    /// It has a change not sent (kept, not to replay the book for every look).
    pub unsent: bool,
}

impl Book {
    pub fn build(&self) -> LeaseBook {
        let (mut ops, mut at) = (vec![], &self.log);
        while let Some(Log(op, before)) = at.as_deref() {
            ops.push(op);
            at = before;
        }
        let mut b = LeaseBook::default();
        ops.into_iter().rev().for_each(|op| drop(run(&mut b, op)));
        b
    }

    /// Makes the call; one that changed nothing is not kept.
    pub fn call(&mut self, op: Op) -> (Option<Admission>, Vec<Report>) {
        let mut b = self.build();
        let out = run(&mut b, &op);
        // Since when a change waits matters only to `due`, which the model leaves to
        // chance (a batch may go at any time): only that it waits is kept.
        let mut h = DefaultHasher::new();
        for part in format!("{b:?}").split("waiting_since: Some(") {
            part.trim_start_matches(char::is_numeric).hash(&mut h);
        }
        self.unsent = b.due(COUNTER, FAR);
        if h.finish() != self.seen {
            (self.log, self.seen) = (Some(Arc::new(Log(op, self.log.take()))), h.finish());
        }
        out
    }
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.build().fmt(f)
    }
}

/// Equality and hash by a key.
macro_rules! by_key {
    ($t:ty, $key:expr) => {
        impl PartialEq for $t {
            fn eq(&self, o: &$t) -> bool {
                $key(self) == $key(o)
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, h: &mut H) {
                $key(self).hash(h)
            }
        }
    };
}
by_key!(Book, |b: &Book| b.seen);

/// An `Admission` (not Hash): here only its lease and bounds differ.
#[derive(Clone, Debug)]
pub struct Adm(pub Admission);
by_key!(Adm, |a: &Adm| (a.0.lease, a.0.bounds.clone()));
