//! The model's steps on its state: what an isolate's calls, a counter's answers and a
//! lease's expiry do, each through the core's own code.

use super::*;

impl LeaseModel {
    pub(super) fn new(budget: [u8; 4]) -> LeaseModel {
        let json = serde_json::json!({"version": "m1", "currency": "USD",
            "models": {"gpt-4o-mini": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}},
            "plans": {"open": {}}});
        let catalog = Catalog::parse(&json.to_string()).unwrap();
        let mut plan = Plan::default();
        (plan.included_tokens, plan.token_cap) = (Some(CAP), Cap::Hard);
        LeaseModel {
            catalog,
            plan,
            budget,
        }
    }

    pub(super) fn bounds(&self, tokens: u64) -> Slice {
        bounds_of(&self.plan, &self.catalog, &ask_of(tokens))
    }

    /// Whether the counter may close or drop `lease` now (the timing assumption).
    pub(super) fn may_expire(&self, s: &State, lease: u64) -> bool {
        let Some(&i) = s.ghost.holders.get(&lease) else {
            return !s.net.iter().any(|m| match m {
                Msg::Answer(to, tag, Answer::Lease(id, ..)) => {
                    let waiting = s.isolates[*to].asking.as_ref();
                    *id == lease && waiting.is_some_and(|a| a.0 == *tag)
                }
                _ => false,
            });
        };
        let iso = &s.isolates[i];
        let has = |rs: &Vec<Report>| rs.iter().any(|r| r.lease == lease);
        let sent = s.net.iter().any(|m| match m {
            Msg::Ask(_, _, _, rs) | Msg::Reports(_, rs) => has(rs),
            _ => false,
        });
        let running = iso.leased.iter().any(|(a, _)| a.0.lease == lease);
        let asking = iso.asking.as_ref().is_some_and(|a| has(&a.3));
        iso.crashed || !(sent || running || asking || iso.book.unsent)
    }

    /// Isolate `i` took `reports` from its book, to send.
    pub(super) fn took(&self, s: &mut State, i: usize, op: Op) -> Vec<Report> {
        let reports = s.isolates[i].book.call(op).1;
        for r in &reports {
            s.ghost.taken.insert(r.lease, r.seq);
        }
        reports
    }

    /// Hands a failed call's reports back to isolate `i`'s book.
    pub(super) fn failed(&self, s: &mut State, i: usize, mut reports: Vec<Report>) {
        if SKIP_SUPERSEDED_FAILURES {
            reports.retain(|r| s.ghost.taken.get(&r.lease) <= Some(&r.seq));
        }
        if !s.isolates[i].crashed && !reports.is_empty() {
            s.isolates[i].book.call(Op::Failed(reports, s.now));
        }
    }

    pub(super) fn upstream(&self, s: &mut State, i: usize, req: Req, leased: Option<Admission>) {
        let (g, iso, tokens) = (&mut s.ghost, &mut s.isolates[i], req.0);
        g.upstream = (g.upstream.0 + 1, g.upstream.1 + tokens);
        if let Some(a) = leased {
            (g.seen.0, iso.leased_tokens) = (true, iso.leased_tokens + tokens);
            iso.leased.push((Adm(a), req));
        }
    }

    /// The counter answers an ask: reports first, then a lease or the request alone.
    pub(super) fn answer(&self, s: &mut State, tokens: u64, carried: &[Report]) -> Answer {
        let (pricing, now) = (Pricing::List(&self.catalog), s.now);
        for r in carried {
            s.counter.apply_report(r, now);
        }
        let (c, plan, ask) = (&mut s.counter, &self.plan, ask_of(tokens));
        match c.grant_lease(&pricing, plan, &ask, now) {
            Ok(Some(l)) => Answer::Lease(l.id, l.grant, l.until_ms - now),
            _ => match c.admit(&pricing, plan, &ask, now) {
                Ok(r) => Answer::Reserved(r.id),
                Err(_) => Answer::Refused,
            },
        }
    }
}
