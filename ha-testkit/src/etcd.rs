//! `EtcdServer`: real etcd members as child processes, for backend tests.
//!
//! Starts the Debian `etcd` binary (3.4; override the path with `HA_TEST_ETCD_BIN`)
//! as one member or as a cluster of members on one machine, each on free loopback
//! ports with its own temporary data directory (on `/dev/shm` when available) and
//! fast raft timings. Members can be killed (SIGKILL), stopped gracefully (SIGTERM),
//! paused (SIGSTOP), resumed (SIGCONT) and restarted on their data directory.
//!
//! A cluster started with [`EtcdServer::start_partitionable`] routes all peer traffic
//! through userspace proxies (each member advertises its proxy as its peer URL), so a
//! member can be cut from the others while its clients still reach it
//! ([`EtcdServer::isolate`]).
//!
//! Readiness is polled on each member's plain-HTTP metrics listener (`/health`), which
//! also works for members serving clients over TLS ([`EtcdServer::start_tls`]).
//!
//! Every member is killed when the `EtcdServer` is dropped, also on panic. A server
//! kept in a `static` is never dropped, so each member also gets a tiny watchdog
//! process that kills it and removes its data directory as soon as the test process
//! exits (it waits on a pipe that only the test process holds open).
//!
//! etcd reads every `ETCD_*` environment variable as a flag; they are removed from
//! the members' environment.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer_partitions::PeerPartitions;

/// How long a member may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One or more real etcd members forming one cluster.
#[derive(Debug)]
pub struct EtcdServer {
    members: Vec<Member>,
    initial_cluster: String,
    peers: Option<PeerPartitions>,
    _dir: tempfile::TempDir,
}

/// Server-side TLS files (PEM) for [`EtcdServer::start_tls`]: clients must present a
/// certificate signed by `ca`.
#[derive(Clone, Debug)]
pub struct EtcdServerTls {
    /// CA that signed the server and the client certificates.
    pub ca: PathBuf,
    /// Server certificate (with `IP:127.0.0.1` as subject alternative name).
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// The peer port the member advertises: its own, or its proxy's.
    advertised_peer_port: u16,
    metrics_port: u16,
    tls: Option<EtcdServerTls>,
    data_dir: PathBuf,
    process: Option<Running>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    watchdog: Child,
    _pipe: Option<ChildStdin>,
}

impl Running {
    fn kill(mut self) {
        // The watchdog goes first so it can never signal a recycled pid.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn etcd_binary() -> String {
    std::env::var("HA_TEST_ETCD_BIN").unwrap_or_else(|_| "etcd".to_string())
}

fn signal(pid: u32, sig: &str) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -{sig} {pid} failed: {status}")))
    }
}

impl Member {
    fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn advertised_peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.advertised_peer_port)
    }

    fn spawn(&mut self, initial_cluster: &str) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))?;
        let mut cmd = Command::new(etcd_binary());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(self.client_url())
            .arg("--advertise-client-urls")
            .arg(self.client_url())
            .arg("--listen-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(self.advertised_peer_url())
            .arg("--initial-cluster")
            .arg(initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(format!(
                "ha-test-{}",
                self.data_dir.parent().unwrap_or(&self.data_dir).display()
            ))
            // Fast raft, but with room for a loaded 2-core CI machine: at 10/100 ms
            // members missed heartbeats under load and changed leaders mid-test.
            .arg("--heartbeat-interval")
            .arg("25")
            .arg("--election-timeout")
            .arg("250")
            .arg("--listen-metrics-urls")
            .arg(format!("http://127.0.0.1:{}", self.metrics_port))
            .arg("--log-level")
            .arg("error");
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd.spawn()?;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "read _ignored; kill -9 {} 2>/dev/null; sleep 0.2; rm -rf '{}'",
                child.id(),
                self.data_dir.parent().unwrap_or(&self.data_dir).display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pipe = watchdog.stdin.take();
        self.process = Some(Running {
            child,
            watchdog,
            _pipe: pipe,
        });
        Ok(())
    }

    fn pid(&self) -> std::io::Result<u32> {
        self.process
            .as_ref()
            .map(|r| r.child.id())
            .ok_or_else(|| std::io::Error::other(format!("member {} is not running", self.name)))
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.metrics_port).into(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    fn exited(&mut self) -> bool {
        match self.process.as_mut() {
            Some(r) => !matches!(r.child.try_wait(), Ok(None)),
            None => true,
        }
    }
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until it is healthy.
    pub fn start() -> std::io::Result<Self> {
        Self::start_cluster(1)
    }

    /// Starts an etcd cluster of `n` members on one machine and waits until every
    /// member is healthy (which implies the cluster has a raft leader).
    pub fn start_cluster(n: usize) -> std::io::Result<Self> {
        Self::start_with(n, None, false)
    }

    /// Starts an etcd cluster of `n` members whose peer traffic goes through
    /// userspace proxies, so members can be cut from each other while their clients
    /// still reach them: [`isolate`](Self::isolate), [`cut_peers`](Self::cut_peers),
    /// [`heal_peers`](Self::heal_peers).
    pub fn start_partitionable(n: usize) -> std::io::Result<Self> {
        Self::start_with(n, None, true)
    }

    /// Starts a single member serving clients over TLS only (`https://` endpoints),
    /// requiring client certificates signed by `tls.ca`.
    pub fn start_tls(tls: EtcdServerTls) -> std::io::Result<Self> {
        Self::start_with(1, Some(tls), false)
    }

    fn start_with(n: usize, tls: Option<EtcdServerTls>, partitionable: bool) -> std::io::Result<Self> {
        let mut last_err = None;
        // Ports are picked free but may be taken by someone else before etcd binds
        // them; try a few times.
        for _ in 0..3 {
            match Self::try_start(n, tls.clone(), partitionable) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("etcd did not start")))
    }

    fn try_start(n: usize, tls: Option<EtcdServerTls>, partitionable: bool) -> std::io::Result<Self> {
        let dir = if Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new().prefix("ha-etcd-").tempdir_in("/dev/shm")?
        } else {
            tempfile::Builder::new().prefix("ha-etcd-").tempdir()?
        };
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let peer_port = free_port()?;
            members.push(Member {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port,
                advertised_peer_port: peer_port,
                metrics_port: free_port()?,
                tls: tls.clone(),
                data_dir: dir.path().join(format!("m{i}")),
                process: None,
            });
        }
        let peers = if partitionable {
            let targets: Vec<std::net::SocketAddr> =
                members.iter().map(|m| ([127, 0, 0, 1], m.peer_port).into()).collect();
            let peers = PeerPartitions::start(&targets)?;
            for (i, m) in members.iter_mut().enumerate() {
                m.advertised_peer_port = peers.addr(i).port();
            }
            Some(peers)
        } else {
            None
        };
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.advertised_peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut server = Self {
            members,
            initial_cluster,
            peers,
            _dir: dir,
        };
        for i in 0..n {
            server.spawn(i)?;
        }
        for i in 0..n {
            server.wait_healthy(i)?;
        }
        Ok(server)
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let ic = self.initial_cluster.clone();
        self.members[i].spawn(&ic)?;
        if let Some(peers) = &self.peers {
            peers.set_pid(i, self.members[i].pid().ok());
        }
        Ok(())
    }

    fn peers(&self) -> std::io::Result<&PeerPartitions> {
        self.peers
            .as_ref()
            .ok_or_else(|| std::io::Error::other("etcd cluster not started with `start_partitionable`"))
    }

    /// Cuts member `i` from every other member while its clients still reach it:
    /// every connection between them closes (raft streams too) and new ones are
    /// closed at once, until [`heal_peers`](Self::heal_peers). Needs
    /// [`start_partitionable`](Self::start_partitionable).
    pub fn isolate(&self, i: usize) -> std::io::Result<()> {
        self.peers()?.isolate(i);
        Ok(())
    }

    /// Cuts members `a` and `b` from each other (both ways), as
    /// [`isolate`](Self::isolate) does for every pair of one member.
    pub fn cut_peers(&self, a: usize, b: usize) -> std::io::Result<()> {
        self.peers()?.cut(a, b);
        Ok(())
    }

    /// Heals every cut between members.
    pub fn heal_peers(&self) {
        if let Some(peers) = &self.peers {
            peers.heal();
        }
    }

    fn wait_healthy(&mut self, i: usize) -> std::io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let m = &mut self.members[i];
            if m.healthy() {
                return Ok(());
            }
            if m.exited() {
                let log = std::fs::read_to_string(m.data_dir.with_extension("log")).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "etcd member {} exited during start-up: {}",
                    m.name,
                    log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "etcd member {} not healthy within {START_TIMEOUT:?}",
                    m.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never true for a started server).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Client URLs of every member (`http://127.0.0.1:PORT`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// Whether member `i` answers its health check now.
    pub fn is_healthy(&self, i: usize) -> bool {
        self.members[i].healthy()
    }

    /// SIGKILLs member `i` (a crash). Its data directory stays for [`restart`].
    ///
    /// [`restart`]: Self::restart
    pub fn kill(&mut self, i: usize) {
        if let Some(r) = self.members[i].process.take() {
            r.kill();
        }
    }

    /// SIGTERMs member `i` and waits for it to exit (a graceful stop; a raft leader
    /// hands leadership over first).
    pub fn stop(&mut self, i: usize) -> std::io::Result<()> {
        let pid = self.members[i].pid()?;
        signal(pid, "TERM")?;
        if let Some(mut r) = self.members[i].process.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(r.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            r.kill();
        }
        Ok(())
    }

    /// Freezes member `i` (SIGSTOP): it holds its ports but answers nothing.
    pub fn pause(&self, i: usize) -> std::io::Result<()> {
        signal(self.members[i].pid()?, "STOP")
    }

    /// Unfreezes member `i` after [`pause`](Self::pause).
    pub fn resume(&self, i: usize) -> std::io::Result<()> {
        signal(self.members[i].pid()?, "CONT")
    }

    /// Starts member `i` again on its data directory (killing it first if it runs)
    /// and waits until it is healthy. Its ports stay the same.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_healthy(i)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(r) = m.process.take() {
                let _ = signal(r.child.id(), "CONT");
                r.kill();
            }
        }
    }
}
