//! `PeerPartitions`: userspace network partitions between the members of a server
//! cluster on loopback, for servers whose members all dial one advertised peer address
//! per member (etcd: member ids derive from the advertised peer URLs, so every member
//! must see the same ones, and per-pair proxies are impossible).
//!
//! One proxy listens in front of each member's real peer listener; the member
//! advertises the proxy's address. The proxy learns which member dialed each accepted
//! connection from the socket itself: the connection's client end in `/proc/net/tcp`
//! gives its inode, and the member process that holds that inode among its
//! `/proc/<pid>/fd` is the dialer. (etcd's raft streams and pipeline requests carry an
//! `X-Server-From` header, but not every peer request does: a follower forwards its
//! clients' lease renewals to the leader's peer URL without it, so a header-reading
//! proxy would let those through a partition.)
//!
//! Cutting a pair of members closes every open connection between them, both ways
//! (long-lived raft streams included), and closes new ones at once until healed, as a
//! partition answered by resets would. Clients of the members are not affected.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Cut pairs of members, as `(smaller, larger)` index.
type CutSet = BTreeSet<(usize, usize)>;

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// The peer proxies of a cluster and its partition matrix. See the module docs.
pub(crate) struct PeerPartitions {
    runtime: Option<tokio::runtime::Runtime>,
    addrs: Vec<SocketAddr>,
    cut: watch::Sender<CutSet>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
}

impl std::fmt::Debug for PeerPartitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPartitions")
            .field("addrs", &self.addrs)
            .field("cut", &*self.cut.borrow())
            .finish()
    }
}

impl PeerPartitions {
    /// Starts one proxy per member, member `i`'s forwarding to `targets[i]`, on a
    /// runtime of its own (the server may outlive the runtime of the test that
    /// started it).
    pub(crate) fn start(targets: &[SocketAddr]) -> io::Result<Self> {
        let targets = targets.to_vec();
        let (cut, _) = watch::channel(CutSet::new());
        let pids = Arc::new(Mutex::new(vec![None; targets.len()]));
        let (cut_tx, pids_tx) = (cut.clone(), pids.clone());
        let (runtime, addrs) = std::thread::spawn(move || -> io::Result<_> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("peer-partitions")
                .enable_all()
                .build()?;
            let mut addrs = Vec::with_capacity(targets.len());
            for (to, target) in targets.iter().enumerate() {
                let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
                addrs.push(listener.local_addr()?);
                runtime.spawn(accept_loop(listener, to, *target, cut_tx.subscribe(), pids_tx.clone()));
            }
            Ok((runtime, addrs))
        })
        .join()
        .map_err(|_| io::Error::other("peer proxy thread panicked"))??;
        Ok(Self {
            runtime: Some(runtime),
            addrs,
            cut,
            pids,
        })
    }

    /// The address member `i` advertises to its peers.
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// Records the process id of member `i` (`None` while it is not running).
    pub(crate) fn set_pid(&self, i: usize, pid: Option<u32>) {
        self.pids.lock().unwrap_or_else(|e| e.into_inner())[i] = pid;
    }

    /// Cuts members `a` and `b` from each other.
    pub(crate) fn cut(&self, a: usize, b: usize) {
        self.cut.send_modify(|c| {
            c.insert(pair(a, b));
        });
    }

    /// Cuts member `i` from every other member.
    pub(crate) fn isolate(&self, i: usize) {
        let n = self.addrs.len();
        self.cut.send_modify(|c| {
            c.extend((0..n).filter(|&j| j != i).map(|j| pair(i, j)));
        });
    }

    /// Heals every cut.
    pub(crate) fn heal(&self) {
        self.cut.send_replace(CutSet::new());
    }
}

impl Drop for PeerPartitions {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    to: usize,
    target: SocketAddr,
    cut: watch::Receiver<CutSet>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
) {
    while let Ok((client, peer)) = listener.accept().await {
        let (mut cut, pids) = (cut.clone(), pids.clone());
        tokio::spawn(async move {
            let Ok(local) = client.local_addr() else {
                return;
            };
            let members: Vec<Option<u32>> = pids.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let from = tokio::task::spawn_blocking(move || dialer(peer, local, &members))
                .await
                .ok()
                .flatten();
            let Some(from) = from else {
                // Not a member (or gone already): not subject to the matrix.
                tracing::debug!(%peer, to, "peer connection from an unknown process");
                return forward(client, target, None, cut).await;
            };
            let key = pair(from, to);
            if cut.borrow_and_update().contains(&key) {
                return; // dropping the connection closes it
            }
            forward(client, target, Some(key), cut).await;
        });
    }
}

/// Forwards `client` to `target` until either side closes or `key` is cut.
async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    key: Option<(usize, usize)>,
    mut cut: watch::Receiver<CutSet>,
) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let cut_off = async {
        match key {
            Some(k) => {
                let _ = cut.wait_for(|c| c.contains(&k)).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut_off => {}
    }
}

/// The member (index into `pids`) whose process holds the client end of the
/// connection `peer` → `local`.
fn dialer(peer: SocketAddr, local: SocketAddr, pids: &[Option<u32>]) -> Option<usize> {
    // The client end is in the table as soon as it is connected; retry once in case
    // the table was read at an unlucky moment.
    let inode = socket_inode(peer, local).or_else(|| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        socket_inode(peer, local)
    })?;
    let link = format!("socket:[{inode}]");
    pids.iter().position(|pid| {
        pid.is_some_and(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|dir| {
                    dir.flatten()
                        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()))
                })
                .unwrap_or(false)
        })
    })
}

/// The inode of the TCP socket whose local end is `local` and remote end `remote`.
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (l, r) = (proc_addr(local)?, proc_addr(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r)
            .then(|| f[9].parse().ok())
            .flatten()
    })
}

/// An IPv4 socket address as `/proc/net/tcp` prints it: the address as a
/// native-endian hex word, then the port in hex.
fn proc_addr(a: SocketAddr) -> Option<String> {
    match a {
        SocketAddr::V4(a) => Some(format!("{:08X}:{:04X}", u32::from_ne_bytes(a.ip().octets()), a.port())),
        SocketAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn finds_the_process_that_holds_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let me = std::process::id();
        let local = listener.local_addr().unwrap();
        assert_eq!(dialer(peer, local, &[None, Some(me)]), Some(1));
        assert_eq!(dialer(peer, local, &[Some(1)]), None, "pid 1 does not hold it");
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones_until_healed() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        // This process plays member 0 dialing member 1.
        let peers = PeerPartitions::start(&[target, target]).unwrap();
        peers.set_pid(0, Some(std::process::id()));
        let roundtrip = |mut s: TcpStream| async move {
            s.write_all(b"x").await.ok()?;
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut b))
                .await
                .ok()?
                .ok()?;
            (n == 1).then_some(s)
        };
        let open = roundtrip(TcpStream::connect(peers.addr(1)).await.unwrap())
            .await
            .expect("forwarded");
        peers.isolate(1);
        assert!(roundtrip(open).await.is_none(), "the open connection is closed");
        let fresh = TcpStream::connect(peers.addr(1)).await.unwrap();
        assert!(roundtrip(fresh).await.is_none(), "a new connection is refused");
        peers.heal();
        let healed = TcpStream::connect(peers.addr(1)).await.unwrap();
        assert!(roundtrip(healed).await.is_some(), "forwarded again once healed");
    }
}
