//! The invariant checker: reads a [`History`](super::History) and reports violations.
//!
//! Invariants 1–3 hold for each job on its own:
//! 1. Once a newer term has read or written a job's records, no write from an older
//!    term is accepted for that job: an accepted write that *started* after an
//!    accepted write or a recovery of a newer epoch *completed* is a violation
//!    (real-time order, so overlapping operations are not false alarms). A write the
//!    `stall-write` fault held on the wire counts from the moment it was delivered
//!    ([`Event::LateDelivery`]), if the backend accepted it.
//! 2. Every acknowledged checkpoint is recoverable or legitimately subsumed: each
//!    recovery returns a checkpoint at least as new as every checkpoint acknowledged
//!    before the recovery started, with intact data; and it finds a job graph if one
//!    was acknowledged before it started.
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
    /// Distinct jobs operated on.
    pub jobs: usize,
    /// Invariant violations, described.
    pub violations: Vec<String>,
    /// Longest time without a leader after a fault healed.
    pub worst_leaderless_gap: Duration,
}

/// An accepted write or a recovery of a job: a term touched the job's records.
struct Touch {
    epoch: u64,
    start: Instant,
    end: Instant,
    /// The write, or `None` for a recovery (a read).
    write: Option<String>,
}

/// What happened to one job.
#[derive(Default)]
struct JobLog {
    touches: Vec<Touch>,
    counter_values: Vec<(u64, Instant, Instant)>,
    acked_checkpoints: Vec<(u64, Instant)>,
    acked_graphs: Vec<Instant>,
}

/// Checks `events`; `gap_bound` is the longest acceptable leaderless time after a heal.
pub fn check(events: &[Event], gap_bound: Duration) -> CheckReport {
    let mut report = CheckReport::default();
    let mut jobs: BTreeMap<u32, JobLog> = BTreeMap::new();
    let mut grants: BTreeMap<u64, BTreeSet<Incarnation>> = BTreeMap::new();
    let mut confirms: BTreeMap<u64, BTreeSet<Incarnation>> = BTreeMap::new();

    for e in events {
        match e {
            Event::Op {
                epoch,
                job,
                kind,
                start,
                end,
                outcome,
                ..
            } => {
                report.operations += 1;
                let log = jobs.entry(*job).or_default();
                match outcome {
                    Outcome::Ok => {
                        report.acknowledged += 1;
                        log.touches.push(Touch {
                            epoch: *epoch,
                            start: *start,
                            end: *end,
                            write: Some(format!("{kind:?}")),
                        });
                        match kind {
                            OpKind::Counter(Some(v)) => log.counter_values.push((*v, *start, *end)),
                            OpKind::Checkpoint(id) => log.acked_checkpoints.push((*id, *end)),
                            OpKind::JobGraph => log.acked_graphs.push(*end),
                            OpKind::Counter(None) => {}
                        }
                    }
                    Outcome::NotLeader => report.fenced += 1,
                    _ => {}
                }
            }
            Event::Recovered {
                epoch, job, start, end, ..
            } => {
                report.operations += 1;
                jobs.entry(*job).or_default().touches.push(Touch {
                    epoch: *epoch,
                    start: *start,
                    end: *end,
                    write: None,
                });
            }
            Event::LateDelivery {
                epoch,
                job,
                at,
                accepted: true,
                ..
            } => {
                report.operations += 1;
                jobs.entry(*job).or_default().touches.push(Touch {
                    epoch: *epoch,
                    start: *at,
                    end: *at,
                    write: Some("held on the wire and delivered late".into()),
                });
            }
            Event::Granted { who, epoch, .. } => {
                grants.entry(*epoch).or_default().insert(*who);
            }
            Event::Confirmed { who, epoch } => {
                confirms.entry(*epoch).or_default().insert(*who);
            }
            _ => {}
        }
    }
    report.jobs = jobs.len();
    for (job, log) in &mut jobs {
        check_job(*job, log, events, &mut report.violations);
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

/// Invariants 1–3 for job `job`.
fn check_job(job: u32, log: &mut JobLog, events: &[Event], violations: &mut Vec<String>) {
    // 1. No older write once a newer term has read or written the job.
    log.touches.sort_by_key(|t| t.end);
    let mut prefix_max: Vec<(Instant, u64)> = Vec::with_capacity(log.touches.len());
    let mut max_epoch = 0;
    for t in &log.touches {
        max_epoch = max_epoch.max(t.epoch);
        prefix_max.push((t.end, max_epoch));
    }
    for t in &log.touches {
        let Some(what) = &t.write else { continue };
        let completed_before = prefix_max.partition_point(|(end, _)| *end < t.start);
        if completed_before > 0 {
            let newest = prefix_max[completed_before - 1].1;
            if newest > t.epoch {
                violations.push(format!(
                    "job {job}: write {what} from epoch {} accepted after epoch {newest} had read or written the job",
                    t.epoch
                ));
            }
        }
    }

    // 2. Recoveries see every checkpoint and graph acknowledged before they started.
    for e in events {
        let Event::Recovered {
            who,
            epoch,
            job: j,
            latest,
            graph,
            data_intact,
            start,
            ..
        } = e
        else {
            continue;
        };
        if *j != job {
            continue;
        }
        let required = log
            .acked_checkpoints
            .iter()
            .filter(|(_, end)| end < start)
            .map(|(id, _)| *id)
            .max();
        if let Some(required) = required {
            if latest.is_none() {
                violations.push(format!(
                    "job {job}: {who:?} (epoch {epoch}) recovered nothing, but checkpoint {required} had been acknowledged"
                ));
            } else if latest.is_some_and(|l| l < required) {
                violations.push(format!(
                    "job {job}: {who:?} (epoch {epoch}) recovered checkpoint {latest:?}, but {required} had been acknowledged"
                ));
            }
        }
        if *graph == Some(false) && log.acked_graphs.iter().any(|end| end < start) {
            violations.push(format!(
                "job {job}: {who:?} (epoch {epoch}) recovered no job graph, but one had been acknowledged"
            ));
        }
        if !data_intact {
            violations.push(format!(
                "job {job}: {who:?} (epoch {epoch}) recovered a checkpoint or graph with wrong data"
            ));
        }
    }

    // 3. Counter values unique and increasing in real time.
    let mut seen = BTreeSet::new();
    for (v, _, _) in &log.counter_values {
        if !seen.insert(*v) {
            violations.push(format!("job {job}: counter value {v} handed out twice"));
        }
    }
    log.counter_values.sort_by_key(|(_, _, end)| *end);
    let mut max_value = 0;
    let mut prefix: Vec<(Instant, u64)> = Vec::new();
    for (v, _, end) in &log.counter_values {
        max_value = max_value.max(*v);
        prefix.push((*end, max_value));
    }
    for (v, start, _) in &log.counter_values {
        let before = prefix.partition_point(|(end, _)| end < start);
        if before > 0 && prefix[before - 1].1 >= *v {
            violations.push(format!(
                "job {job}: counter value {v} handed out after {} had already been handed out",
                prefix[before - 1].1
            ));
        }
    }
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
        Event::Action { at, .. } | Event::LateDelivery { at, .. } => Some(*at),
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
            job: 0,
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
                job: 0,
                latest: Some(9),
                graph: None,
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
    fn each_job_is_checked_on_its_own_against_reads_and_writes_of_newer_terms() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let write = |job: u32, epoch: u64, kind: OpKind, start: u64, end: u64| Event::Op {
            who: who(0),
            epoch,
            job,
            kind,
            start: ms(start),
            end: ms(end),
            outcome: Outcome::Ok,
        };
        let recovered = |job: u32, epoch: u64, graph: bool, start: u64, end: u64| Event::Recovered {
            who: who(1),
            epoch,
            job,
            latest: None,
            graph: Some(graph),
            data_intact: true,
            start: ms(start),
            end: ms(end),
        };
        let events = vec![
            write(0, 1, OpKind::JobGraph, 0, 5),
            write(1, 1, OpKind::JobGraph, 0, 5),
            // Epoch 2 reads job 0 only: epoch 1 may still write job 1, not job 0.
            recovered(0, 2, true, 10, 20),
            write(1, 1, OpKind::Counter(Some(1)), 30, 40),
            write(0, 1, OpKind::Counter(Some(1)), 30, 40),
            // A recovery of job 1 that misses its acknowledged graph.
            recovered(1, 2, false, 50, 60),
        ];
        let r = check(&events, Duration::from_secs(1));
        assert_eq!(r.jobs, 2);
        assert_eq!(r.violations.len(), 2, "{:?}", r.violations);
        assert!(
            r.violations[0].contains("job 0: write Counter(Some(1)) from epoch 1 accepted after epoch 2 had read"),
            "{:?}",
            r.violations
        );
        assert!(r.violations[1].contains("job 1:") && r.violations[1].contains("no job graph"));
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
    fn a_late_delivered_write_counts_from_its_delivery() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let late = |accepted: bool| Event::LateDelivery {
            who: who(0),
            epoch: 1,
            job: 0,
            at: ms(50),
            accepted,
        };
        let mut events = vec![
            // The stale writer gave up on its write (held on the wire) before the newer
            // term read the job; the held bytes reached the backend after that read.
            Event::Op {
                who: who(0),
                epoch: 1,
                job: 0,
                kind: OpKind::Counter(None),
                start: ms(0),
                end: ms(10),
                outcome: Outcome::Unknown,
            },
            Event::Recovered {
                who: who(1),
                epoch: 2,
                job: 0,
                latest: None,
                graph: None,
                data_intact: true,
                start: ms(20),
                end: ms(30),
            },
            late(false),
        ];
        assert!(check(&events, Duration::from_secs(1)).violations.is_empty());
        events.push(late(true));
        let r = check(&events, Duration::from_secs(1));
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(
            r.violations[0].contains("held on the wire and delivered late from epoch 1 accepted after epoch 2"),
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
                job: 0,
                latest: Some(2),
                graph: None,
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
