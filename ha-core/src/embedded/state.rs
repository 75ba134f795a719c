//! The shared state of one embedded cluster: sessions, elections, records and locks,
//! all behind one mutex so that every fenced write is checked atomically.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::driver::{RecordSender, TermSink, Validity};
use crate::error::{Error, Result};
use crate::ids::{ComponentId, Epoch, Fence};

pub(super) type SessionId = u64;
pub(super) type CandidateId = u64;

pub(super) struct Session {
    pub(super) instance: String,
    pub(super) expires_at: Instant,
    /// Validity of the terms granted on this session: its expiry, extended on renewal.
    pub(super) validity: Validity,
}

pub(super) struct Candidate {
    pub(super) id: CandidateId,
    pub(super) session: SessionId,
    pub(super) sink: TermSink,
}

#[derive(Default)]
pub(super) struct Election {
    /// In join order; the first one leads once granted.
    pub(super) candidates: Vec<Candidate>,
    /// `(candidate, epoch)` of the current term.
    pub(super) leader: Option<(CandidateId, Epoch)>,
}

pub(super) struct Entry {
    pub(super) value: Bytes,
    pub(super) version: u64,
    /// Lock owner (instance id) → session holding the lock.
    pub(super) locks: BTreeMap<String, SessionId>,
}

pub(super) struct RecordWatcher {
    pub(super) component: ComponentId,
    pub(super) tx: RecordSender,
}

#[derive(Default)]
pub(super) struct ClusterState {
    next_id: u64,
    pub(super) sessions: HashMap<SessionId, Session>,
    pub(super) elections: BTreeMap<String, Election>,
    /// Raw published leader records, as the election driver wrote them.
    pub(super) leader_info: BTreeMap<ComponentId, Bytes>,
    pub(super) watchers: Vec<RecordWatcher>,
    pub(super) stores: BTreeMap<String, BTreeMap<String, Entry>>,
    pub(super) counters: BTreeMap<String, (u64, u64)>,
}

pub(super) fn fence_token(group: &str, candidate: CandidateId) -> String {
    format!("embedded/{group}/{candidate}")
}

impl ClusterState {
    /// A fresh id, also used as revision: strictly increasing across the cluster.
    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn open_session(&mut self, instance: &str, lease: Duration) -> SessionId {
        let id = self.next_id();
        self.sessions.insert(
            id,
            Session {
                instance: instance.to_string(),
                expires_at: Instant::now() + lease,
                validity: Validity::until(Instant::now() + lease),
            },
        );
        id
    }

    pub(super) fn session_alive(&self, session: SessionId) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| s.expires_at > Instant::now())
    }

    /// Ends expired sessions (revoking their terms and dropping their locks), then
    /// grants every leaderless election. Returns the earliest remaining expiry.
    pub(super) fn sweep(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for session in expired {
            self.end_session(session);
        }
        self.grant_leaderless();
        self.sessions.values().map(|s| s.expires_at).min()
    }

    /// Removes `session` with everything bound to it. Its leaders are told they are
    /// revoked before anyone else is granted (the grant happens in the next step).
    pub(super) fn end_session(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            tracing::debug!(instance = %s.instance, session, "embedded session ended");
        }
        self.drop_candidates(session, |sink| {
            sink.revoke();
        });
        for entries in self.stores.values_mut() {
            for entry in entries.values_mut() {
                entry.locks.retain(|_, s| *s != session);
            }
        }
    }

    /// Removes every candidacy of `session` from every election (a leading one stops
    /// leading), telling each sink with `tell` first.
    fn drop_candidates(&mut self, session: SessionId, tell: impl Fn(&TermSink)) {
        for election in self.elections.values_mut() {
            if let Some((leader, _)) = election.leader {
                if election
                    .candidates
                    .iter()
                    .any(|c| c.id == leader && c.session == session)
                {
                    election.leader = None;
                }
            }
            election.candidates.retain(|c| {
                if c.session == session {
                    tell(&c.sink);
                    false
                } else {
                    true
                }
            });
        }
    }

    pub(super) fn grant_leaderless(&mut self) {
        let groups: Vec<String> = self
            .elections
            .iter()
            .filter(|(_, e)| e.leader.is_none() && !e.candidates.is_empty())
            .map(|(g, _)| g.clone())
            .collect();
        for group in groups {
            let epoch = Epoch(self.next_id());
            let Some(election) = self.elections.get_mut(&group) else {
                continue;
            };
            let Some(first) = election.candidates.first() else {
                continue;
            };
            election.leader = Some((first.id, epoch));
            let fence = Fence::new(epoch, fence_token(&group, first.id));
            tracing::debug!(%group, epoch = epoch.0, "embedded election granted");
            let validity = self
                .sessions
                .get(&first.session)
                .map_or_else(|| Validity::until(Instant::now()), |s| s.validity.clone());
            first.sink.grant(fence, validity);
        }
    }

    /// Removes `candidate` from `group`, revoking it first if it leads.
    pub(super) fn remove_candidate(&mut self, group: &str, candidate: CandidateId) {
        if let Some(election) = self.elections.get_mut(group) {
            if election.leader.is_some_and(|(l, _)| l == candidate) {
                election.leader = None;
            }
            election.candidates.retain(|c| c.id != candidate);
        }
        self.grant_leaderless();
    }

    /// The candidacies of `group` in line, the leader first.
    pub(super) fn participants(&self, group: &str) -> Vec<crate::driver::Participant> {
        let Some(election) = self.elections.get(group) else {
            return Vec::new();
        };
        let leader = election.leader.map(|(l, _)| l);
        let mut out: Vec<crate::driver::Participant> = election
            .candidates
            .iter()
            .filter(|c| self.session_alive(c.session))
            .filter_map(|c| {
                let s = self.sessions.get(&c.session)?;
                Some(crate::driver::Participant {
                    id: s.instance.clone(),
                    leader: Some(c.id) == leader,
                })
            })
            .collect();
        out.sort_by_key(|p| !p.leader);
        out
    }

    /// Ends the term of `from` (the caller checked its fence) in favour of the live
    /// candidacy of instance `target`: the target moves to the front of the line and
    /// `from` to the back, `from` is revoked, then the target is granted a new term.
    pub(super) fn hand_off(&mut self, group: &str, from: CandidateId, target: &str) -> Result<()> {
        let target_id = self.elections.get(group).and_then(|e| {
            e.candidates
                .iter()
                .find(|c| c.id != from && self.sessions.get(&c.session).is_some_and(|s| s.instance == target))
                .map(|c| c.id)
        });
        let (Some(target_id), Some(election)) = (target_id, self.elections.get_mut(group)) else {
            return Err(Error::NotFound {
                key: format!("participant `{target}` of group {group}"),
            });
        };
        let mut line = std::mem::take(&mut election.candidates);
        let pos = |line: &Vec<Candidate>, id| line.iter().position(|c| c.id == id);
        let mut front = pos(&line, target_id).map(|i| line.remove(i));
        let back = pos(&line, from).map(|i| line.remove(i));
        election.leader = None;
        if let Some(old) = &back {
            old.sink.revoke();
        }
        election.candidates = front.take().into_iter().chain(line).chain(back).collect();
        self.grant_leaderless();
        Ok(())
    }

    /// Fails with `NotLeader` unless `fence` is the current term of its group and its
    /// session is alive.
    pub(super) fn check_fence(&self, fence: &Fence, key: &str) -> Result<()> {
        let valid = (|| {
            let rest = fence.token.strip_prefix("embedded/")?;
            let (group, cand) = rest.rsplit_once('/')?;
            let cand: CandidateId = cand.parse().ok()?;
            let election = self.elections.get(group)?;
            let (leader, epoch) = election.leader?;
            let session = election.candidates.iter().find(|c| c.id == leader)?.session;
            Some(leader == cand && epoch == fence.epoch && self.session_alive(session))
        })()
        .unwrap_or(false);
        if valid {
            Ok(())
        } else {
            Err(fence.rejected(key))
        }
    }

    pub(super) fn set_leader_record(&mut self, component: &ComponentId, record: Option<Bytes>) {
        match &record {
            Some(r) => self.leader_info.insert(component.clone(), r.clone()),
            None => self.leader_info.remove(component),
        };
        self.watchers
            .retain(|w| &w.component != component || w.tx.send(record.clone()));
    }

    /// Every record of the cluster, as `kind/name` strings (for cleanup checks).
    pub(super) fn list_records(&self) -> Vec<String> {
        let mut out: Vec<String> = self.leader_info.keys().map(|c| format!("leader/{c}")).collect();
        for (ns, entries) in &self.stores {
            out.extend(entries.keys().map(|k| format!("{ns}/{k}")));
        }
        out.extend(self.counters.keys().map(|j| format!("jobs/{j}/counter")));
        for (group, e) in &self.elections {
            out.extend(e.candidates.iter().map(|c| format!("leader/{group}/latch/{}", c.id)));
        }
        out
    }

    /// Resigns every candidacy of `session` (cleanup resigns before it deletes), then
    /// grants the next candidates of other sessions.
    pub(super) fn resign_session(&mut self, session: SessionId) {
        self.drop_candidates(session, TermSink::resign);
        self.grant_leaderless();
    }

    pub(super) fn clear_data(&mut self) {
        let components: Vec<ComponentId> = self.leader_info.keys().cloned().collect();
        for c in components {
            self.set_leader_record(&c, None);
        }
        self.stores.clear();
        self.counters.clear();
    }
}

/// Fails with `Closed` if `session` is no longer alive.
pub(super) fn require_session(state: &ClusterState, session: SessionId, what: &str) -> Result<()> {
    if state.session_alive(session) {
        Ok(())
    } else {
        Err(Error::closed(format!("embedded session of {what} has ended")))
    }
}
