//! Contender links through [`FaultProxy`]s: one proxy per backend server for each
//! contender, frozen (blackholed) or partitioned as a group, and a registry of the
//! links of live contenders so backend faults can pick one to partition.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use super::{Freeze, SplitMix64};
use crate::FaultProxy;

/// One contender's link to every server of the backend.
#[derive(Debug)]
pub struct Link {
    proxies: Vec<FaultProxy>,
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

    /// Back to normal.
    pub fn heal(&self) {
        self.proxies.iter().for_each(FaultProxy::heal);
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
}

/// The links of the contenders of a run. A link lives as long as its contender's
/// [`Freeze`] handle (dropped when the contender ends).
#[derive(Debug, Default)]
pub struct Links {
    live: Mutex<Vec<Weak<Link>>>,
}

impl Links {
    /// Opens a link to `servers` (a proxy in front of each) and its freeze handle.
    pub async fn open(&self, servers: &[SocketAddr]) -> std::io::Result<(Arc<Link>, Box<dyn Freeze>)> {
        let mut proxies = Vec::with_capacity(servers.len());
        for s in servers {
            proxies.push(FaultProxy::start(*s).await?);
        }
        let link = Arc::new(Link { proxies });
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
