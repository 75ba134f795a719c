//! The invariant checker: reads a [`History`](super::History) and reports violations.
//!
//! Invariants:
//! 1. No write is accepted from an epoch older than one already accepted: an accepted
//!    write that *started* after an accepted write of a newer epoch *completed* is a
//!    violation (real-time order, so overlapping writes are not false alarms).
//! 2. Every acknowledged checkpoint is recoverable or legitimately subsumed: each
//!    recovery returns a checkpoint at least as new as every checkpoint acknowledged
//!    before the recovery started, with intact data.
//! 3. Counter values never repeat, and a value handed out after another completed is
//!    larger.
//! 4. At most one contender is granted (and confirmed) per epoch.
//! 5. A leader exists again within the bound after each fault heals.
//! 6. No action as leader overlaps a newer term: an [`Event::Action`] of epoch `e` at
//!    time `t` is a violation if a term newer than `e` was granted at or before `t`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::history::{Event, Incarnation, OpKind, Outcome};

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Operations checked (writes and recoveries).
    pub operations: usize,
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Writes fenced off with NotLeader.
    pub fenced: usize,
    /// Leader actions checked against newer grants.
    pub actions: usize,
    /// Invariant violations, described.
    pub violations: Vec<String>,
    /// Longest time without a leader after a fault healed.
    pub worst_leaderless_gap: Duration,
}

struct Accepted {
    epoch: u64,
    start: Instant,
    end: Instant,
    what: String,
}

/// Checks `events`; `gap_bound` is the longest acceptable leaderless time after a heal.
pub fn check(events: &[Event], gap_bound: Duration) -> CheckReport {
    let mut report = CheckReport::default();
    let mut accepted = Vec::new();
    let mut counter_values: Vec<(u64, Instant, Instant)> = Vec::new();
    let mut acked_checkpoints: Vec<(u64, Instant)> = Vec::new();
    let mut grants: BTreeMap<u64, BTreeSet<Incarnation>> = BTreeMap::new();
    let mut confirms: BTreeMap<u64, BTreeSet<Incarnation>> = BTreeMap::new();

    for e in events {
        match e {
            Event::Op {
                epoch,
                kind,
                start,
                end,
                outcome,
                ..
            } => {
                report.operations += 1;
                match outcome {
                    Outcome::Ok => {
                        report.acknowledged += 1;
                        accepted.push(Accepted {
                            epoch: *epoch,
                            start: *start,
                            end: *end,
                            what: format!("{kind:?}"),
                        });
                        match kind {
                            OpKind::Counter(Some(v)) => counter_values.push((*v, *start, *end)),
                            OpKind::Checkpoint(id) => acked_checkpoints.push((*id, *end)),
                            OpKind::Counter(None) => {}
                        }
                    }
                    Outcome::NotLeader => report.fenced += 1,
                    _ => {}
                }
            }
            Event::Granted { who, epoch, .. } => {
                grants.entry(*epoch).or_default().insert(*who);
            }
            Event::Confirmed { who, epoch } => {
                confirms.entry(*epoch).or_default().insert(*who);
            }
            Event::Recovered { .. } => report.operations += 1,
            _ => {}
        }
    }

    // 1. Epoch order among accepted writes.
    accepted.sort_by_key(|a| a.end);
    let mut prefix_max: Vec<(Instant, u64)> = Vec::with_capacity(accepted.len());
    let mut max_epoch = 0;
    for a in &accepted {
        max_epoch = max_epoch.max(a.epoch);
        prefix_max.push((a.end, max_epoch));
    }
    for a in &accepted {
        let completed_before = prefix_max.partition_point(|(end, _)| *end < a.start);
        if completed_before > 0 {
            let newest = prefix_max[completed_before - 1].1;
            if newest > a.epoch {
                report.violations.push(format!(
                    "write {} from epoch {} accepted after a write from newer epoch {newest} had completed",
                    a.what, a.epoch
                ));
            }
        }
    }

    // 2. Recoveries see every checkpoint acknowledged before they started.
    for e in events {
        if let Event::Recovered {
            who,
            epoch,
            latest,
            data_intact,
            start,
            ..
        } = e
        {
            let required = acked_checkpoints
                .iter()
                .filter(|(_, end)| end < start)
                .map(|(id, _)| *id)
                .max();
            if let Some(required) = required {
                if latest.is_none() {
                    report.violations.push(format!(
                        "{who:?} (epoch {epoch}) recovered nothing, but checkpoint {required} had been acknowledged"
                    ));
                } else if latest.is_some_and(|l| l < required) {
                    report.violations.push(format!(
                        "{who:?} (epoch {epoch}) recovered checkpoint {latest:?}, but {required} had been acknowledged"
                    ));
                }
            }
            if !data_intact {
                report.violations.push(format!(
                    "{who:?} (epoch {epoch}) recovered a checkpoint with wrong data"
                ));
            }
        }
    }

    // 3. Counter values unique and increasing in real time.
    let mut seen = BTreeSet::new();
    for (v, _, _) in &counter_values {
        if !seen.insert(*v) {
            report.violations.push(format!("counter value {v} handed out twice"));
        }
    }
    counter_values.sort_by_key(|(_, _, end)| *end);
    let mut max_value = 0;
    let mut prefix: Vec<(Instant, u64)> = Vec::new();
    for (v, _, end) in &counter_values {
        max_value = max_value.max(*v);
        prefix.push((*end, max_value));
    }
    for (v, start, _) in &counter_values {
        let before = prefix.partition_point(|(end, _)| end < start);
        if before > 0 && prefix[before - 1].1 >= *v {
            report.violations.push(format!(
                "counter value {v} handed out after {} had already been handed out",
                prefix[before - 1].1
            ));
        }
    }

    // 4. One contender per epoch.
    for (epoch, who) in grants.iter().chain(confirms.iter()) {
        if who.len() > 1 {
            report.violations.push(format!(
                "epoch {epoch} granted to or confirmed by several contenders: {who:?}"
            ));
        }
    }

    // 6. No action overlaps a newer term.
    let mut grant_times: Vec<(Instant, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Granted { epoch, at, .. } => Some((*at, *epoch)),
            _ => None,
        })
        .collect();
    grant_times.sort();
    let mut newest_granted: Vec<(Instant, u64)> = Vec::with_capacity(grant_times.len());
    let mut max_granted = 0;
    for (at, epoch) in grant_times {
        max_granted = max_granted.max(epoch);
        newest_granted.push((at, max_granted));
    }
    for e in events {
        if let Event::Action { who, epoch, at } = e {
            report.actions += 1;
            let granted_before = newest_granted.partition_point(|(g, _)| g <= at);
            if granted_before > 0 {
                let (_, newest) = newest_granted[granted_before - 1];
                if newest > *epoch {
                    let granted_at = newest_granted
                        .iter()
                        .find(|(_, m)| *m == newest)
                        .map_or(*at, |(g, _)| *g);
                    report.violations.push(format!(
                        "{who:?} acted as leader of epoch {epoch} {} ms after epoch {newest} was granted",
                        at.saturating_duration_since(granted_at).as_millis()
                    ));
                }
            }
        }
    }

    // 5. Leaderless gaps after heals. A gap is counted only until the next fault
    // starts: no backend can be asked to elect a leader while it is down again.
    report.worst_leaderless_gap = Duration::ZERO;
    for e in events {
        if let Event::Fault { what, healed, .. } = e {
            let next_fault = events
                .iter()
                .filter_map(|f| match f {
                    Event::Fault { start, .. } if *start > *healed => Some(*start),
                    _ => None,
                })
                .min();
            let mut gap = leaderless_after(events, *healed);
            if let Some(next) = next_fault {
                gap = gap.min(next.saturating_duration_since(*healed));
            }
            report.worst_leaderless_gap = report.worst_leaderless_gap.max(gap);
            if gap > gap_bound {
                report.violations.push(format!(
                    "no leader for {} ms after `{what}` healed (bound {} ms)",
                    gap.as_millis(),
                    gap_bound.as_millis()
                ));
            }
        }
    }
    report
}

/// How long after `t` the cluster stayed without a leader (0 if one held office at `t`).
fn leaderless_after(events: &[Event], t: Instant) -> Duration {
    // The leader at `t`: the newest grant before `t` whose holder had not lost it.
    let mut leader: Option<(u64, Incarnation)> = None;
    let mut next_grant: Option<Instant> = None;
    for e in events {
        match e {
            Event::Granted { who, epoch, at } => {
                if *at > t {
                    next_grant = Some(next_grant.map_or(*at, |n: Instant| n.min(*at)));
                } else if leader.is_none_or(|(ep, _)| *epoch > ep) {
                    leader = Some((*epoch, *who));
                }
            }
            Event::Revoked { who, at } | Event::Crashed { who, at }
                if *at <= t && leader.is_some_and(|(_, w)| w == *who) =>
            {
                leader = None;
            }
            _ => {}
        }
    }
    if leader.is_some() {
        return Duration::ZERO;
    }
    match next_grant {
        Some(g) => g.saturating_duration_since(t),
        // Never led again within the run: report the time to the end of the history.
        None => events
            .iter()
            .filter_map(event_time)
            .max()
            .map_or(Duration::ZERO, |end| end.saturating_duration_since(t)),
    }
}

fn event_time(e: &Event) -> Option<Instant> {
    match e {
        Event::Granted { at, .. } | Event::Revoked { at, .. } | Event::Crashed { at, .. } => Some(*at),
        Event::Op { end, .. } | Event::Recovered { end, .. } => Some(*end),
        Event::Fault { healed, .. } => Some(*healed),
        Event::Action { at, .. } => Some(*at),
        Event::Confirmed { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(slot: usize) -> Incarnation {
        Incarnation { slot, restart: 0 }
    }

    fn op(epoch: u64, kind: OpKind, start: Instant, end: Instant) -> Event {
        Event::Op {
            who: who(0),
            epoch,
            kind,
            start,
            end,
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn detects_each_kind_of_violation() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let events = vec![
            Event::Granted {
                who: who(0),
                epoch: 5,
                at: ms(0),
            },
            Event::Granted {
                who: who(1),
                epoch: 5,
                at: ms(1),
            },
            op(7, OpKind::Checkpoint(10), ms(10), ms(20)),
            op(5, OpKind::Checkpoint(11), ms(30), ms(40)), // stale epoch after newer completed
            op(7, OpKind::Counter(Some(3)), ms(10), ms(20)),
            op(7, OpKind::Counter(Some(3)), ms(30), ms(40)), // repeat
            Event::Recovered {
                who: who(1),
                epoch: 9,
                latest: Some(9),
                data_intact: false,
                start: ms(50),
                end: ms(60),
            },
            Event::Fault {
                what: "kill".into(),
                start: ms(60),
                healed: ms(70),
            },
            Event::Crashed {
                who: who(0),
                at: ms(65),
            },
            Event::Granted {
                who: who(2),
                epoch: 10,
                at: ms(90),
            },
        ];
        let r = check(&events, Duration::from_millis(5));
        let all = r.violations.join("\n");
        assert!(all.contains("from epoch 5 accepted after"), "{all}");
        assert!(all.contains("handed out twice"), "{all}");
        assert!(all.contains("recovered checkpoint Some(9), but 11"), "{all}");
        assert!(all.contains("wrong data"), "{all}");
        assert!(all.contains("epoch 5 granted to or confirmed by several"), "{all}");
        assert!(all.contains("no leader for"), "{all}");
    }

    #[test]
    fn an_action_after_a_newer_grant_is_a_violation() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let action = |epoch: u64, at: u64| Event::Action {
            who: who(0),
            epoch,
            at: ms(at),
        };
        let events = vec![
            Event::Granted {
                who: who(0),
                epoch: 1,
                at: ms(0),
            },
            action(1, 5),
            Event::Granted {
                who: who(1),
                epoch: 2,
                at: ms(10),
            },
            action(2, 11),
            action(1, 12), // the old leader acts after the new grant
        ];
        let r = check(&events, Duration::from_secs(1));
        assert_eq!(r.actions, 3);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(
            r.violations[0].contains("acted as leader of epoch 1 2 ms after epoch 2"),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn overlapping_writes_are_not_violations() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let events = vec![
            Event::Granted {
                who: who(0),
                epoch: 1,
                at: ms(0),
            },
            op(1, OpKind::Counter(Some(1)), ms(0), ms(30)),
            op(2, OpKind::Counter(Some(2)), ms(10), ms(20)),
            op(2, OpKind::Checkpoint(2), ms(25), ms(35)),
            Event::Recovered {
                who: who(0),
                epoch: 3,
                latest: Some(2),
                data_intact: true,
                start: ms(40),
                end: ms(50),
            },
        ];
        let r = check(&events, Duration::from_secs(1));
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.operations, 4);
    }

    #[test]
    fn a_gap_is_counted_only_until_the_next_fault() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let fault = |start: u64, healed: u64| Event::Fault {
            what: format!("fault at {start}"),
            start: ms(start),
            healed: ms(healed),
        };
        let revoked = Event::Revoked {
            who: who(0),
            at: ms(10),
        };
        let granted = |at: u64| Event::Granted {
            who: who(1),
            epoch: 2,
            at: ms(at),
        };
        let lead = Event::Granted {
            who: who(0),
            epoch: 1,
            at: ms(0),
        };
        // The server is down again 300 ms after the first heal: only that fault's own
        // recovery counts, and it is within the bound.
        let back_to_back = vec![
            lead.clone(),
            revoked.clone(),
            fault(5, 100),
            fault(400, 2_000),
            granted(2_500),
        ];
        let r = check(&back_to_back, Duration::from_secs(1));
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        // Without a later fault, the same slow recovery is a violation.
        let alone = vec![lead, revoked, fault(5, 100), granted(2_500)];
        let r = check(&alone, Duration::from_secs(1));
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
    }
}
