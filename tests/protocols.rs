//! The flush protocol, model-checked with stateright over the core's own decisions:
//! the counter takes records and learns what was acknowledged (`flush::push::PushState`,
//! the bookkeeping the counter object stores), the shard stores pushes and answers
//! (`flush::outbox::accept`), and the ledger ingests deliveries (`ledger::ingest`).
//! Every message can be lost or repeated, and a period can end at any point. Checked:
//! no usage is ever counted twice, nothing is acknowledged that the ledger lacks, and
//! once nothing is held anywhere the ledger has exactly what was metered.

use edgemeter::finality::Finality;
use edgemeter::flush::outbox::{accept, MemoryOutbox, Place};
use edgemeter::flush::push::PushState;
use edgemeter::flush::snapshot::{FlushRow, Stamp};
use edgemeter::ledger::{ingest, MemoryStore};
use edgemeter::period::Period;
use edgemeter::tally::Tally;
use edgemeter::usage::Usage;
use stateright::{Checker, Model, Property};

const PERIOD: Period = Period {
    start_ms: 0,
    end_ms: 100,
};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    row: FlushRow,
    seq: u64,
    push: PushState,
    period_over: bool,
    outbox: MemoryOutbox,
    ledger: MemoryStore,
    settles_left: u8,
    pushes_left: u8,
    deliveries_left: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// A request settles `tokens` input tokens on the counter.
    Settle(u64),
    /// The period ends: what is left of it goes as its final record.
    EndPeriod,
    /// The counter takes what is new and pushes what it holds. The push may never
    /// reach the shard, or reach it and its answer be lost.
    Push { reaches: bool, answered: bool },
    /// The shard delivers what waits to the ledger; the ledger's answer may be lost.
    Deliver { answered: bool },
}

struct FlushProtocol;

fn stamp() -> Stamp {
    Stamp {
        customer: "c".into(),
        plan: "open".into(),
        livemode: true,
    }
}

fn rated(s: &State) -> Tally {
    let all = s.ledger.totals.values();
    all.fold(Tally::default(), |sum, t| sum.plus(&t.tally))
}

/// `a <= b` in every field.
fn within(a: &Tally, b: &Tally) -> bool {
    a.minus(b).is_zero()
}

impl Model for FlushProtocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            row: FlushRow {
                period: PERIOD,
                meter: "chat.completions".into(),
                model: "m".into(),
                tally: Tally::default(),
                flushed: Tally::default(),
                closed: false,
            },
            seq: 0,
            push: PushState::default(),
            period_over: false,
            outbox: MemoryOutbox::default(),
            ledger: MemoryStore::default(),
            settles_left: 2,
            pushes_left: 4,
            deliveries_left: 3,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.settles_left > 0 && !s.period_over {
            actions.extend([Action::Settle(1), Action::Settle(2)]);
        }
        if !s.period_over {
            actions.push(Action::EndPeriod);
        }
        if s.pushes_left > 0 {
            for (reaches, answered) in [(true, true), (true, false), (false, false)] {
                actions.push(Action::Push { reaches, answered });
            }
        }
        if s.deliveries_left > 0 && !s.outbox.waiting().is_empty() {
            actions.extend([
                Action::Deliver { answered: true },
                Action::Deliver { answered: false },
            ]);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Settle(tokens) => {
                let usage = Usage {
                    input: tokens,
                    ..Usage::default()
                };
                s.row.tally.add(&usage, false);
                s.seq += 1;
                s.settles_left -= 1;
            }
            Action::EndPeriod => s.period_over = true,
            Action::Push { reaches, answered } => {
                s.pushes_left -= 1;
                let current = if s.period_over { PERIOD.end_ms } else { 0 };
                let rows = [s.row.clone()];
                let taken = s.push.take_new(&stamp(), &rows, s.seq, current, 50);
                let acked = match reaches {
                    true => Some(accept(&mut s.outbox, "c", true, &taken.records).ok()?),
                    false => None,
                };
                // A push that never reached the shard, or whose answer was lost, failed.
                match acked.filter(|_| answered) {
                    Some(acked) => {
                        let applied = s.push.acknowledged(&rows, &acked, &taken, 50);
                        if let Some(row) = applied.rows.into_iter().next() {
                            s.row = row;
                        }
                    }
                    None => s.push.failed(50),
                }
            }
            Action::Deliver { answered } => {
                s.deliveries_left -= 1;
                let waiting = s.outbox.waiting();
                let finality = Finality::from_days(None, None);
                ingest(&mut s.ledger, &waiting, &finality, 60);
                if answered {
                    let ids: Vec<String> = waiting.iter().map(|r| r.id.clone()).collect();
                    s.outbox.mark(&ids, Place::Acknowledged);
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no usage counted twice", |_, s: &State| {
                within(&rated(s), &s.row.tally)
            }),
            Property::always("nothing acknowledged the ledger lacks", |_, s: &State| {
                within(&s.row.flushed, &rated(s))
            }),
            Property::always("nothing lost once nothing is held", |_, s: &State| {
                let p = &s.push;
                let held =
                    !p.pending.is_empty() || p.taken_seq != s.seq || !s.outbox.waiting().is_empty();
                held || rated(s) == s.row.tally
            }),
            Property::sometimes(
                "all usage rated, final record acknowledged",
                |_, s: &State| s.row.tally.requests == 2 && rated(s) == s.row.tally && s.row.closed,
            ),
        ]
    }
}

#[test]
fn the_flush_protocol_never_counts_twice_and_loses_nothing() {
    let checker = FlushProtocol.checker().spawn_bfs().join();
    println!(
        "flush protocol: {} states explored, {} unique, max depth {}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
    checker.assert_properties();
    assert!(checker.unique_state_count() > 1_000, "the model explores");
}

/// The reserve, settle and expire protocol on the counter's own state machine
/// (`CounterState::admit`, `settle`, `due`, `expire`): requests are admitted under a
/// hard token quota, their settlements are lost, repeated or reordered, and the clock
/// runs past reservations' deadlines. Checked: the quota is never overshot, no request
/// is counted twice, and once nothing is running or in flight every admitted request
/// is counted.
mod reservations {
    use edgemeter::catalog::{Catalog, Plan};
    use edgemeter::counter_state::CounterState;
    use edgemeter::pricing::Pricing;
    use edgemeter::request::AdmitAsk;
    use edgemeter::reservation::RESERVATION_TTL_MS;
    use edgemeter::usage::Usage;
    use stateright::{Checker, Model, Property};

    const NOW: i64 = 1_764_547_200_000; // a period start
    const QUOTA: u64 = 12;

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    struct State {
        counter: CounterState,
        now: i64,
        admitted: u64,
        /// Admitted, the upstream still answering: (id, what it will have used).
        running: Vec<(u64, Usage)>,
        /// Settlements on their way to the counter.
        net: Vec<(u64, Usage)>,
        admits_left: u8,
        ticks_left: u8,
        copies_left: u8,
    }

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    enum Action {
        Admit,
        Finish(usize),
        Deliver(usize),
        Copy(usize),
        Lose(usize),
        Tick,
    }

    struct Protocol {
        catalog: Catalog,
        plan: Plan,
    }

    fn ask() -> AdmitAsk {
        AdmitAsk {
            meter: "chat.completions".into(),
            model: "gpt-4o-mini".into(),
            input_estimate: 1,
            input_reserve: 2,
            output_cap: Some(3),
            choices: 1,
            ..AdmitAsk::default()
        }
    }

    fn counted(s: &State) -> (u64, u64) {
        let tallies = s.counter.tallies.values();
        tallies.fold((0, 0), |(r, t), x| (r + x.requests, t + x.input + x.output))
    }

    impl Model for Protocol {
        type State = State;
        type Action = Action;

        fn init_states(&self) -> Vec<State> {
            vec![State {
                counter: CounterState::new(1, NOW),
                now: NOW,
                admitted: 0,
                running: Vec::new(),
                net: Vec::new(),
                admits_left: 4,
                ticks_left: 2,
                copies_left: 2,
            }]
        }

        fn actions(&self, s: &State, actions: &mut Vec<Action>) {
            if s.admits_left > 0 {
                actions.push(Action::Admit);
            }
            actions.extend((0..s.running.len()).map(Action::Finish));
            for i in 0..s.net.len() {
                actions.extend([Action::Deliver(i), Action::Lose(i)]);
                if s.copies_left > 0 {
                    actions.push(Action::Copy(i));
                }
            }
            if s.ticks_left > 0 {
                actions.push(Action::Tick);
            }
        }

        fn next_state(&self, last: &State, action: Action) -> Option<State> {
            let mut s = last.clone();
            match action {
                Action::Admit => {
                    s.admits_left -= 1;
                    let pricing = Pricing::List(&self.catalog);
                    if let Ok(r) = s.counter.admit(&pricing, &self.plan, &ask(), s.now) {
                        s.admitted += 1;
                        // used less than reserved, differently per request
                        let output = 1 + r.id % 3;
                        let used = Usage {
                            input: 2,
                            output,
                            ..Usage::default()
                        };
                        s.running.push((r.id, used));
                    }
                }
                Action::Finish(i) => {
                    let done = s.running.remove(i);
                    s.net.push(done);
                }
                Action::Deliver(i) => {
                    let (id, used) = s.net.remove(i);
                    s.counter.settle(id, &used, false, s.now);
                }
                Action::Copy(i) => {
                    s.copies_left -= 1;
                    let copy = s.net[i];
                    s.net.push(copy);
                }
                Action::Lose(i) => {
                    s.net.remove(i);
                }
                Action::Tick => {
                    s.ticks_left -= 1;
                    s.now += RESERVATION_TTL_MS + 1;
                    for id in s.counter.due(s.now) {
                        s.counter.expire(id, s.now);
                    }
                }
            }
            s.net.sort_by_key(|(id, u)| (*id, u.input, u.output));
            Some(s)
        }

        fn properties(&self) -> Vec<Property<Self>> {
            vec![
                Property::always("the token quota is never overshot", |_, s: &State| {
                    counted(s).1 <= QUOTA
                }),
                Property::always("no request counted twice", |_, s: &State| {
                    counted(s).0 <= s.admitted
                }),
                Property::always("nothing lost once nothing runs", |_, s: &State| {
                    let busy = !s.running.is_empty()
                        || !s.net.is_empty()
                        || !s.counter.reservations.is_empty();
                    busy || counted(s).0 == s.admitted
                }),
                Property::sometimes("a late settlement replaces an expiry", |_, s: &State| {
                    !s.counter.expired.is_empty() && s.net.is_empty() && s.running.is_empty()
                }),
            ]
        }
    }

    #[test]
    fn reservations_never_overshoot_never_count_twice_and_lose_nothing() {
        let plan = Plan {
            included_tokens: Some(QUOTA),
            ..Plan::default()
        };
        let protocol = Protocol {
            catalog: edgemeter::catalog::Catalog::parse(&crate::test_catalog()).unwrap(),
            plan,
        };
        let checker = protocol.checker().spawn_bfs().join();
        println!(
            "reservation protocol: {} states explored, {} unique, max depth {}",
            checker.state_count(),
            checker.unique_state_count(),
            checker.max_depth()
        );
        checker.assert_properties();
        assert!(checker.unique_state_count() > 1_000, "the model explores");
    }
}

/// The catalog the models price with: one model, list prices.
fn test_catalog() -> String {
    serde_json::json!({"version": "m1", "currency": "USD",
        "models": {"gpt-4o-mini": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}},
        "plans": {"open": {}}})
    .to_string()
}
