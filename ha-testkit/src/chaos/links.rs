//! Contender links through [`FaultProxy`]s: one proxy per backend server for each
//! contender, frozen (blackholed), partitioned or stalled at a write as a group, and a
//! registry of the links of live contenders so backend faults can pick one to
//! partition.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::{Freeze, SplitMix64};
use crate::{FaultProxy, HoldTrigger};

/// How a backend's fenced write looks on the wire, for the `stall-write` fault.
#[derive(Clone, Copy, Debug)]
pub struct WriteMatcher {
    /// Whether a chunk a client sends starts a fenced write of a job's records (the
    /// request that carries the write itself, after any read it is based on).
    pub is_write: HoldTrigger,
    /// Whether the server's reply (its first bytes) accepted that write; `None` if
    /// the reply does not tell.
    pub accepted: fn(&[u8]) -> Option<bool>,
}

/// One contender's link to every server of the backend.
#[derive(Debug)]
pub struct Link {
    proxies: Vec<FaultProxy>,
    writes: Option<WriteMatcher>,
}

impl Link {
    /// The proxy addresses to give the contender's client, one per server, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.proxies.iter().map(FaultProxy::addr).collect()
    }

    /// Forwards nothing, keeps connections open (a frozen process or stalled network).
    pub fn blackhole(&self) {
        self.proxies.iter().for_each(FaultProxy::blackhole);
    }

    /// Closes every connection and refuses new ones (a network partition).
    pub fn partition(&self) {
        self.proxies.iter().for_each(FaultProxy::partition);
    }

    /// Back to normal; a stalled write is delivered first.
    pub fn heal(&self) {
        self.proxies.iter().for_each(FaultProxy::heal);
    }

    /// Arms a write stall: the contender's next fenced write request (see
    /// [`Links::stall_writes_matching`]) is held, and the whole link stalls with it
    /// (no drop, no reset) until [`heal`](Self::heal). `false` if the backend's writes
    /// cannot be recognised.
    pub fn stall_next_write(&self) -> bool {
        let Some(m) = self.writes else { return false };
        self.proxies.iter().for_each(|p| p.hold_next(m.is_write));
        true
    }

    /// Whether [`stall_next_write`](Self::stall_next_write) is supported.
    pub fn can_stall_writes(&self) -> bool {
        self.writes.is_some()
    }

    /// Disarms a write stall that has not caught a write.
    pub fn disarm_stall(&self) {
        self.proxies.iter().for_each(FaultProxy::disarm_hold);
    }

    /// When the armed write stall caught a write (`None` until then).
    pub fn stalled_at(&self) -> Option<Instant> {
        self.proxies.iter().filter_map(FaultProxy::held_at).min()
    }

    /// The first line of the server's answer to the stalled write, once delivered.
    pub fn stalled_reply(&self) -> Option<String> {
        self.proxies.iter().filter_map(FaultProxy::held_reply).next().map(|r| {
            let line = r.split(|b| *b == b'\n').next().unwrap_or_default();
            String::from_utf8_lossy(line).trim_end().to_string()
        })
    }

    /// Whether the server accepted the stalled write once delivered (`None` while no
    /// reply came, or if the reply does not tell).
    pub fn stalled_write_accepted(&self) -> Option<bool> {
        let m = self.writes?;
        self.proxies
            .iter()
            .filter_map(FaultProxy::held_reply)
            .find_map(|r| (m.accepted)(&r))
    }
}

struct LinkFreeze(Arc<Link>);

impl Freeze for LinkFreeze {
    fn freeze(&self) {
        self.0.blackhole();
    }

    fn thaw(&self) {
        self.0.heal();
    }

    fn link(&self) -> Option<Arc<Link>> {
        Some(self.0.clone())
    }
}

/// The links of the contenders of a run. A link lives as long as its contender's
/// [`Freeze`] handle (dropped when the contender ends).
#[derive(Debug, Default)]
pub struct Links {
    live: Mutex<Vec<Weak<Link>>>,
    writes: Mutex<Option<WriteMatcher>>,
}

impl Links {
    /// Lets links opened from now on stall at a fenced write (the `stall-write`
    /// fault), recognised on the wire by `writes`.
    pub fn stall_writes_matching(&self, writes: WriteMatcher) {
        *self.writes.lock().unwrap_or_else(|e| e.into_inner()) = Some(writes);
    }

    /// Opens a link to `servers` (a proxy in front of each) and its freeze handle.
    pub async fn open(&self, servers: &[SocketAddr]) -> std::io::Result<(Arc<Link>, Box<dyn Freeze>)> {
        let mut proxies = Vec::with_capacity(servers.len());
        for s in servers {
            proxies.push(FaultProxy::start(*s).await?);
        }
        let writes = *self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let link = Arc::new(Link { proxies, writes });
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|l| l.strong_count() > 0);
        live.push(Arc::downgrade(&link));
        Ok((link.clone(), Box::new(LinkFreeze(link))))
    }

    /// A link of a live contender, chosen with `rng` (`None` if there is none).
    pub fn pick(&self, rng: &mut SplitMix64) -> Option<Arc<Link>> {
        let live: Vec<Arc<Link>> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let n = live.len() as u64;
        if n == 0 {
            return None;
        }
        live.into_iter().nth(rng.below(n) as usize)
    }
}
