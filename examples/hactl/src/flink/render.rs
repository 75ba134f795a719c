//! The table `hactl --flink status` prints.

use std::fmt::Write;

use super::FlinkStatus;

/// The whole status as text.
pub(crate) fn status(s: &FlinkStatus) -> String {
    let mut out = format!("Flink cluster {} ({}: {})\n\n", s.cluster_id, s.store, s.location);
    let _ = match &s.holder {
        Some(h) => writeln!(
            out,
            "LEADER LOCK  {}  holder {}  {} {}{}",
            if s.leader_running { "running" } else { "NOT RUNNING" },
            h.identity,
            // A lease is renewed; a ZooKeeper latch node only has its creation time.
            if h.lease_duration.is_some() { "renewed" } else { "since" },
            h.renew_time.as_deref().unwrap_or("-"),
            h.lease_duration
                .as_deref()
                .map_or(String::new(), |d| format!("  lease {d}"))
        ),
        None => writeln!(out, "LEADER LOCK  NOT RUNNING  (no holder)"),
    };
    out.push_str("\nLEADERS\n");
    if s.leaders.is_empty() {
        out.push_str("  (none)\n");
    }
    for l in &s.leaders {
        let _ = match &l.info {
            Some(i) => writeln!(out, "  {:<40} {:<55} session {}", l.component, i.address, i.session_id),
            None => writeln!(out, "  {:<40} (no leader information)", l.component),
        };
    }
    out.push_str("\nJOBS\n");
    if s.jobs.is_empty() {
        out.push_str("  (none)\n");
    }
    for j in &s.jobs {
        let _ = writeln!(
            out,
            "  {}  execution plan {}  checkpoint counter {}{}",
            j.job_id,
            j.execution_plan.as_ref().map_or("none".to_string(), |p| p.path.clone()),
            j.counter.map_or("-".to_string(), |c| c.to_string()),
            j.result.as_ref().map_or(String::new(), |r| format!(
                "  job result {}{}",
                r.state,
                r.status.as_deref().map_or(String::new(), |s| format!(" ({s})"))
            ))
        );
        for c in &j.checkpoints {
            let _ = writeln!(
                out,
                "    checkpoint {:<6} {}{}",
                c.id,
                c.handle
                    .as_ref()
                    .map_or("(undecodable)".to_string(), |h| h.path.clone()),
                c.external_pointer
                    .as_deref()
                    .map_or(String::new(), |p| format!("  -> {p}"))
            );
        }
    }
    out.push_str("\nORPHANS\n");
    if s.orphans.is_empty() {
        out.push_str("  (none)\n");
    }
    for o in &s.orphans {
        let _ = writeln!(
            out,
            "  {}  {}{}",
            o.key,
            o.reason,
            o.kept.as_deref().map_or(String::new(), |k| format!("  [kept: {k}]"))
        );
    }
    if !s.errors.is_empty() {
        out.push_str("\nUNDECODABLE\n");
        for e in &s.errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    out
}
