//! What the lease model checks: no overshoot but by crashed leases, nothing counted
//! twice, nothing lost outside the documented window; and the paths that must be
//! reachable for those checks to mean anything.

use super::*;

pub(super) fn all() -> Vec<Property<LeaseModel>> {
    use Property as P;
    vec![
        P::always(
            "the cap is passed only by crashed leases",
            |_, s: &State| s.ghost.upstream.1 <= CAP + s.ghost.exposed,
        ),
        P::always(
            "no crash: the counter holds all upstream",
            |m, s: &State| {
                let ((req, tok), (r, t)) = (s.ghost.upstream, totals(m, s));
                s.ghost.crashed || (req <= r && tok <= t)
            },
        ),
        P::always(
            "no crash: the counter commits within the cap",
            |m, s: &State| s.ghost.crashed || totals(m, s).1 <= CAP,
        ),
        P::always("no usage counted twice", |_, s: &State| {
            let ((req, tok), (r, t)) = (tallied(s), s.ghost.finished);
            req <= r && tok <= t
        }),
        P::always(
            "no crash: nothing lost once all is quiet",
            |_, s: &State| s.ghost.crashed || !quiet(s) || tallied(s) == s.ghost.finished,
        ),
        P::always(
            "nothing held: the counter counts its tallies",
            |m, s: &State| {
                let c = &s.counter;
                let held = !c.leases.is_empty() || !c.reservations.is_empty();
                let exact = s.ghost.crashed || tallied(s) == s.ghost.finished;
                held || (totals(m, s).0 == tallied(s).0 && exact)
            },
        ),
        P::sometimes(
            "leased, then reserved and refused at the cap",
            |_, s: &State| s.ghost.seen == (true, true, true),
        ),
        P::sometimes("all leases returned and counted", |_, s: &State| {
            let c = &s.counter;
            let none = c.leases.is_empty() && c.reservations.is_empty();
            none && s.ghost.seen.0 && tallied(s) == s.ghost.finished && tallied(s).0 >= 3
        }),
        P::sometimes(
            "a crashed holder's lease closes at its grace",
            |_, s: &State| s.counter.lease_losses.unreturned > 0 && s.ghost.crashed,
        ),
        P::sometimes(
            "a crash loses usage in the documented window",
            |_, s: &State| s.ghost.upstream.1 > CAP,
        ),
    ]
}
