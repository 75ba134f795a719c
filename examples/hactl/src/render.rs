//! Human-readable tables for `hactl`.

use std::fmt::Write;

use ha_core::inspect::{CheckpointView, ClusterStatus, ComponentLeader, EntryView, GroupParticipants, PayloadState};
use ha_core::{JobResultEntry, LeaderInformation};

fn since(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ago = now.saturating_sub(ms) / 1000;
    match ago {
        0..=59 => format!("{ago}s ago"),
        60..=3599 => format!("{}m{}s ago", ago / 60, ago % 60),
        _ => format!("{}h{}m ago", ago / 3600, (ago % 3600) / 60),
    }
}

fn leader_row(out: &mut String, component: &str, leader: Option<&LeaderInformation>) {
    let _ = match leader {
        Some(l) => writeln!(
            out,
            "  {component:<40} {:<28} epoch {:<8} since {:<12} session {}",
            l.address,
            l.epoch,
            since(l.confirmed_at_ms),
            l.session_id
        ),
        None => writeln!(out, "  {component:<40} (no confirmed leader)"),
    };
}

/// The leader table.
pub(crate) fn leaders(leaders: &[ComponentLeader]) -> String {
    let mut out = String::from("LEADERS\n");
    if leaders.is_empty() {
        out.push_str("  (none)\n");
    }
    for l in leaders {
        leader_row(&mut out, &l.component, l.leader.as_ref());
    }
    out
}

/// The contenders of each group: the leader, then the standbys.
pub(crate) fn participants(groups: &[GroupParticipants]) -> String {
    let mut out = String::new();
    for g in groups {
        let _ = writeln!(out, "\nPARTICIPANTS of group {}", g.group);
        if g.participants.is_empty() {
            out.push_str("  (none)\n");
        }
        for p in &g.participants {
            let role = if p.leader { "leader" } else { "standby" };
            let _ = writeln!(out, "  {:<40} {role}", p.id);
        }
    }
    out
}

/// One line per change of a group's leader.
pub(crate) fn group_change(group: &str, leader: Option<&str>) -> String {
    format!("  group {group:<34} leader {}", leader.unwrap_or("(none)"))
}

/// One line per leader change.
pub(crate) fn leader_change(component: &str, leader: Option<&LeaderInformation>) -> String {
    let mut out = String::new();
    leader_row(&mut out, component, leader);
    out.trim_end().to_string()
}

/// The whole status.
pub(crate) fn status(s: &ClusterStatus, mode: &str) -> String {
    let mut out = format!("cluster {} ({mode})\n\n", s.cluster_id);
    out.push_str(&leaders(&s.leaders));
    out.push_str(&participants(&s.participants));
    out.push_str("\nJOBS\n");
    if s.jobs.is_empty() {
        out.push_str("  (none)\n");
    }
    for j in &s.jobs {
        let cps = match (j.checkpoint_ids.first(), j.checkpoint_ids.last()) {
            (Some(a), Some(b)) if a != b => format!("{a}..{b} ({} retained)", j.checkpoint_ids.len()),
            (Some(a), _) => format!("{a}"),
            _ => "-".into(),
        };
        let result = j
            .result
            .map_or("running".to_string(), |r| format!("{r:?}").to_lowercase());
        let _ = writeln!(
            out,
            "  {:<34} graph {:<4} checkpoints {:<22} next id {:<8} result {result}{}",
            j.job_id,
            if j.has_job_graph { "yes" } else { "no" },
            cps,
            j.next_checkpoint_id,
            if j.quarantined.is_empty() {
                String::new()
            } else {
                format!("  QUARANTINED {}", j.quarantined.join(","))
            }
        );
    }
    out.push_str("\nDIRTY JOB RESULTS (cleanup unfinished)\n");
    if s.dirty_results.is_empty() {
        out.push_str("  (none)\n");
    }
    for r in &s.dirty_results {
        let _ = writeln!(
            out,
            "  {:<34} {}",
            r.job_id.as_str(),
            format!("{:?}", r.status).to_lowercase()
        );
    }
    out
}

/// Every stored job result.
pub(crate) fn results(entries: &[JobResultEntry]) -> String {
    let mut out = String::from("JOB                                STATE  STATUS     CLEANED\n");
    if entries.is_empty() {
        out.push_str("(none)\n");
    }
    for r in entries {
        let _ = writeln!(
            out,
            "{:<34} {:<6} {:<10} {}",
            r.job_id.as_str(),
            format!("{:?}", r.state).to_lowercase(),
            format!("{:?}", r.status).to_lowercase(),
            r.cleaned_at_ms.map_or("-".to_string(), since)
        );
    }
    out
}

fn payload(p: &PayloadState) -> String {
    match p {
        PayloadState::Readable => "readable".into(),
        PayloadState::Corrupt(e) => format!("CORRUPT: {e}"),
        PayloadState::Missing(e) => format!("MISSING: {e}"),
    }
}

/// The checkpoint table.
pub(crate) fn checkpoints(views: &[CheckpointView]) -> String {
    let mut out = String::from("ID                   KEY                                        SIZE      PAYLOAD\n");
    for v in views {
        let (path, size) = v
            .pointer
            .as_ref()
            .map_or(("-".into(), "-".into()), |p| (p.path.clone(), p.size.to_string()));
        let _ = writeln!(
            out,
            "{:<20} {:<42} {:<9} {}\n{:<20} path {path}",
            v.id,
            v.key,
            size,
            payload(&v.payload),
            ""
        );
    }
    out
}

/// One decoded entry.
pub(crate) fn entry(v: &EntryView) -> String {
    let mut out = format!("key      {}\nvalue    {}\n", v.key, v.raw);
    if let Some(p) = &v.pointer {
        let _ = writeln!(out, "payload  {} ({} bytes, sha256 {})", p.path, p.size, p.sha256);
    }
    if let Some(state) = &v.payload {
        let _ = writeln!(out, "state    {}", payload(state));
    }
    out
}
