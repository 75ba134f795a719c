//! `ZooKeeperServer`: a real ZooKeeper (the Debian `zookeeper` package, Java) run as a
//! child process, standalone or as an ensemble of several members on one machine.
//!
//! Every member listens on free loopback ports and keeps its data in a private temp
//! directory (on `/dev/shm` when available, with `forceSync=no`, so tests are fast).
//! Members can be killed (SIGKILL), paused (SIGSTOP), resumed (SIGCONT) and restarted
//! with their data. Everything is killed when the value is dropped, also on panic.
//!
//! Each JVM runs under a small `sh` watchdog whose stdin is a pipe from the test
//! process: when the test process dies in any way (even SIGKILL, or a server kept in a
//! `static` that is never dropped), the pipe closes and the watchdog kills the JVM, so
//! no server outlives its tests.
//!
//! Readiness is checked with the `srvr` four-letter command: a member is ready once it
//! reports a `Mode:` (`ruok` answers before the server serves).
//!
//! With [`ZooKeeperOptions::tls`] every member also serves a TLS client port
//! (`secureClientPort`, Netty connection factory) with PEM key and trust stores; the
//! plain port stays open for the four-letter readiness checks and for tests that
//! compare both. [`ZooKeeperServer::secure_connect_string`] names the TLS ports.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the Debian package puts the server jar.
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
const SLF4J_SIMPLE_JAR: &str = "/usr/share/java/slf4j-simple.jar";
const NETTY_TLS_JARS: [&str; 3] = [
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-resolver.jar",
    "/usr/share/java/netty-transport-native-unix-common.jar",
];

/// How long a member may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of a [`ZooKeeperServer`].
#[derive(Clone, Debug)]
pub struct ZooKeeperOptions {
    /// Number of members: 1 runs standalone, 3 or more form an ensemble.
    pub members: usize,
    /// `tickTime`: the server's heartbeat unit and the granularity of session expiry.
    pub tick_time: Duration,
    /// Smallest session timeout the server grants.
    pub min_session_timeout: Duration,
    /// Largest session timeout the server grants.
    pub max_session_timeout: Duration,
    /// Maximum JVM heap (`-Xmx`), in MiB.
    pub heap_mib: u32,
    /// A TLS client port on every member, if set.
    pub tls: Option<ZooKeeperTls>,
    /// Route every member-to-member connection (quorum and election ports) through a
    /// [`FaultProxy`](crate::FaultProxy) per ordered pair of members, so a member can
    /// be cut from the others while its clients still reach it
    /// ([`ZooKeeperServer::isolate`]). Ensembles only.
    pub peer_proxies: bool,
    /// `syncLimit` in ticks (how long a follower may lag or be cut from the leader
    /// before it drops its clients); `None` for a generous default of about 3 s.
    pub sync_limit_ticks: Option<u64>,
}

/// TLS material of the secure client port, as PEM files (made by the test, e.g. with
/// the `openssl` command).
#[derive(Clone, Debug)]
pub struct ZooKeeperTls {
    /// The server's private key (PKCS#8, unencrypted) followed by its certificate chain:
    /// ZooKeeper's PEM key store.
    pub key_store_pem: PathBuf,
    /// CA certificate(s) that client certificates must chain to: the PEM trust store.
    pub trust_store_pem: PathBuf,
    /// Whether clients must present a certificate (`ssl.clientAuth=need`) or may
    /// connect without one (`none`).
    pub require_client_cert: bool,
}

impl Default for ZooKeeperOptions {
    fn default() -> Self {
        Self {
            members: 1,
            tick_time: Duration::from_millis(100),
            min_session_timeout: Duration::from_millis(200),
            max_session_timeout: Duration::from_secs(60),
            heap_mib: 256,
            tls: None,
            peer_proxies: false,
            sync_limit_ticks: None,
        }
    }
}

struct Running {
    watchdog: Child,
    _stdin: ChildStdin,
    jvm_pid: u32,
}

struct Member {
    id: usize,
    client_port: u16,
    secure_port: Option<u16>,
    dir: PathBuf,
    process: Mutex<Option<Running>>,
}

/// A running ZooKeeper server or ensemble of child JVMs on free loopback ports with
/// temp data dirs; members can be killed, paused, resumed and restarted. Everything is
/// killed on drop, and by a watchdog when the test process dies.
pub struct ZooKeeperServer {
    options: ZooKeeperOptions,
    members: Vec<Member>,
    peers: Option<PeerProxies>,
    dir: tempfile::TempDir,
}

/// The member-to-member proxies of an ensemble started with
/// [`ZooKeeperOptions::peer_proxies`], on a runtime of their own (the server is not
/// tied to the runtime of the test that started it).
struct PeerProxies {
    runtime: Option<tokio::runtime::Runtime>,
    /// `(from, to, proxy)`, two per ordered pair: quorum port and election port.
    links: Vec<(usize, usize, crate::FaultProxy)>,
}

impl Drop for PeerProxies {
    fn drop(&mut self) {
        self.links.clear();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for ZooKeeperServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeperServer")
            .field("connect_string", &self.connect_string())
            .field("members", &self.members.len())
            .finish()
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn signal(pid: u32, sig: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -{sig} {pid} failed")))
    }
}

/// Waits (at most 2 s) until every thread of `pid` has stopped: `kill -STOP` returns
/// once the signal is sent, and a thread busy on another core stops a moment later.
fn wait_stopped(pid: u32) -> io::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let stopped = |tid: &std::path::Path| {
        std::fs::read_to_string(tid.join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit(')').next().map(|rest| rest.trim_start().starts_with('T')))
            .unwrap_or(true)
    };
    loop {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))?;
        if threads.filter_map(|t| t.ok()).all(|t| stopped(&t.path())) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(io::Error::other(format!("process {pid} did not stop within 2 s")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a four-letter command to `port` and returns the answer.
pub fn four_letter_word(port: u16, word: &str) -> io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(word.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

impl ZooKeeperServer {
    /// Starts a standalone server with default options.
    pub fn start() -> io::Result<Self> {
        Self::start_with(ZooKeeperOptions::default())
    }

    /// Starts an ensemble of `members` servers with default options.
    pub fn start_ensemble(members: usize) -> io::Result<Self> {
        Self::start_with(ZooKeeperOptions {
            members,
            ..Default::default()
        })
    }

    /// Starts a server or ensemble with `options` and waits until every member serves.
    pub fn start_with(options: ZooKeeperOptions) -> io::Result<Self> {
        if !Path::new(ZOOKEEPER_JAR).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{ZOOKEEPER_JAR} not found: install the Debian `zookeeper` package (scripts/install-test-deps.sh)"
                ),
            ));
        }
        if options.members == 0 || options.members == 2 {
            return Err(io::Error::other("a ZooKeeper ensemble needs 1 or at least 3 members"));
        }
        let base = if Path::new("/dev/shm").is_dir() {
            tempfile::Builder::new().prefix("ha-zk-").tempdir_in("/dev/shm")?
        } else {
            tempfile::Builder::new().prefix("ha-zk-").tempdir()?
        };
        let n = options.members;
        let mut ports = Vec::with_capacity(n);
        let mut secure_ports = Vec::with_capacity(n);
        // The ports stay bound until the peer proxies have their own, so no proxy
        // takes a member's port.
        let mut held = Vec::new();
        let mut hold = || -> io::Result<u16> {
            let l = TcpListener::bind("127.0.0.1:0")?;
            let port = l.local_addr()?.port();
            held.push(l);
            Ok(port)
        };
        for _ in 0..n {
            ports.push((hold()?, hold()?, hold()?));
            secure_ports.push(match options.tls {
                Some(_) => Some(free_port()?),
                None => None,
            });
        }
        let peers = if options.peer_proxies && n > 1 {
            Some(PeerProxies::start(&ports)?)
        } else {
            None
        };
        drop(held);
        let mut members = Vec::with_capacity(n);
        for (i, (client, _, _)) in ports.iter().enumerate() {
            let id = i + 1;
            let dir = base.path().join(format!("member-{id}"));
            std::fs::create_dir_all(dir.join("data"))?;
            let tick = options.tick_time.as_millis().max(1);
            let mut cfg = format!(
                "tickTime={tick}\n\
                 dataDir={data}\n\
                 clientPort={client}\n\
                 clientPortAddress=127.0.0.1\n\
                 minSessionTimeout={min}\n\
                 maxSessionTimeout={max}\n\
                 admin.enableServer=false\n\
                 4lw.commands.whitelist=*\n\
                 maxClientCnxns=0\n",
                data = dir.join("data").display(),
                min = options.min_session_timeout.as_millis(),
                max = options.max_session_timeout.as_millis(),
            );
            if let (Some(tls), Some(port)) = (&options.tls, secure_ports[i]) {
                cfg.push_str(&format!(
                    "secureClientPort={port}\n\
                     secureClientPortAddress=127.0.0.1\n\
                     serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                     ssl.keyStore.location={key}\n\
                     ssl.keyStore.type=PEM\n\
                     ssl.trustStore.location={trust}\n\
                     ssl.trustStore.type=PEM\n\
                     ssl.clientAuth={auth}\n",
                    key = tls.key_store_pem.display(),
                    trust = tls.trust_store_pem.display(),
                    auth = if tls.require_client_cert { "need" } else { "none" },
                ));
            }
            if n > 1 {
                // Follower sync and initial load limits, in ticks: generous, because
                // the machine running the tests is small and shared.
                let init = (10_000 / tick).max(10);
                let sync = options
                    .sync_limit_ticks
                    .map_or((3_000 / tick).max(5), |t| u128::from(t.max(1)));
                cfg.push_str(&format!("initLimit={init}\nsyncLimit={sync}\ncnxTimeout=1000\n"));
                for (j, (_, p, e)) in ports.iter().enumerate() {
                    // A member binds its own line; it reaches the others through the
                    // proxies of its pair, if any.
                    let (p, e) = match &peers {
                        Some(peers) if j != i => peers.ports(i, j),
                        _ => (*p, *e),
                    };
                    cfg.push_str(&format!("server.{}=127.0.0.1:{p}:{e}\n", j + 1));
                }
                std::fs::write(dir.join("data").join("myid"), format!("{id}\n"))?;
            }
            std::fs::write(dir.join("zoo.cfg"), cfg)?;
            members.push(Member {
                id,
                client_port: *client,
                secure_port: secure_ports[i],
                dir,
                process: Mutex::new(None),
            });
        }
        let server = Self {
            options,
            members,
            peers,
            dir: base,
        };
        for i in 0..n {
            server.spawn(i)?;
        }
        for i in 0..n {
            server.wait_ready(i, START_TIMEOUT)?;
        }
        Ok(server)
    }

    fn member(&self, i: usize) -> io::Result<&Member> {
        self.members
            .get(i)
            .ok_or_else(|| io::Error::other(format!("no ZooKeeper member {i}")))
    }

    fn spawn(&self, i: usize) -> io::Result<()> {
        let m = self.member(i)?;
        let mut guard = m.process.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return Ok(());
        }
        let mut classpath = ZOOKEEPER_JAR.to_string();
        if Path::new(SLF4J_SIMPLE_JAR).exists() {
            classpath.push_str(&format!(":{SLF4J_SIMPLE_JAR}"));
        }
        if self.options.tls.is_some() {
            // The Netty factory's TLS handler needs jars the package's manifest does
            // not list.
            for jar in NETTY_TLS_JARS.iter().filter(|j| Path::new(j).exists()) {
                classpath.push_str(&format!(":{jar}"));
            }
        }
        let pid_file = m.dir.join("jvm.pid");
        let _ = std::fs::remove_file(&pid_file);
        // The watchdog starts the JVM, records its pid, then blocks reading stdin; EOF
        // means the test process is gone: the JVM is killed with it and its data
        // removed (a server kept in a `static` is never dropped).
        let script = format!(
            "java -Xmx{heap}m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData \
             -Djava.net.preferIPv4Stack=true -Dzookeeper.forceSync=no \
             -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
             -cp '{classpath}' org.apache.zookeeper.server.quorum.QuorumPeerMain '{cfg}' \
             >>'{log}' 2>&1 </dev/null &\n\
             j=$!\n\
             echo $j > '{pid}'\n\
             while read -r _; do :; done\n\
             kill -9 $j 2>/dev/null\n\
             while kill -0 $j 2>/dev/null; do sleep 0.05; done\n\
             rm -rf '{dir}'\n\
             rmdir '{base}' 2>/dev/null\n",
            heap = self.options.heap_mib,
            dir = m.dir.display(),
            base = self.dir.path().display(),
            cfg = m.dir.join("zoo.cfg").display(),
            log = m.dir.join("server.log").display(),
            pid = pid_file.display(),
        );
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = watchdog
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("watchdog stdin missing"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let jvm_pid = loop {
            if let Ok(s) = std::fs::read_to_string(&pid_file) {
                if let Ok(pid) = s.trim().parse::<u32>() {
                    break pid;
                }
            }
            if Instant::now() > deadline {
                let _ = watchdog.kill();
                let _ = watchdog.wait();
                return Err(io::Error::other("ZooKeeper watchdog did not start the JVM"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        *guard = Some(Running {
            watchdog,
            _stdin: stdin,
            jvm_pid,
        });
        Ok(())
    }

    /// Waits until member `i` answers `srvr` with a mode (serving).
    pub fn wait_ready(&self, i: usize, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.mode(i).is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "ZooKeeper member {} not ready after {timeout:?}; log tail:\n{}",
                    i + 1,
                    self.log_tail(i)
                )));
            }
            if !self.is_running(i) {
                return Err(io::Error::other(format!(
                    "ZooKeeper member {} is not running; log tail:\n{}",
                    i + 1,
                    self.log_tail(i)
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last lines of member `i`'s server log.
    pub fn log_tail(&self, i: usize) -> String {
        let Ok(m) = self.member(i) else { return String::new() };
        let log = std::fs::read_to_string(m.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Member `i`'s `Mode:` (`standalone`, `leader`, `follower`), `None` if it does
    /// not serve (down, paused, or without quorum).
    pub fn mode(&self, i: usize) -> Option<String> {
        let port = self.member(i).ok()?.client_port;
        let out = four_letter_word(port, "srvr").ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix("Mode:"))
            .map(|m| m.trim().to_string())
    }

    /// Index of the member that is the ZooKeeper leader (or the standalone server).
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| matches!(self.mode(i).as_deref(), Some("leader" | "standalone")))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether this is an ensemble without members (never true).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The options the server was started with.
    pub fn options(&self) -> &ZooKeeperOptions {
        &self.options
    }

    /// Client connect string of every member (`127.0.0.1:p1,127.0.0.1:p2,…`).
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connect string of every member's TLS client port (`127.0.0.1:s1,…`), `None`
    /// without [`ZooKeeperOptions::tls`].
    pub fn secure_connect_string(&self) -> Option<String> {
        let ports: Option<Vec<u16>> = self.members.iter().map(|m| m.secure_port).collect();
        ports.map(|p| p.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(","))
    }

    /// Client address of member `i`.
    pub fn client_addr(&self, i: usize) -> Option<SocketAddr> {
        self.members
            .get(i)
            .map(|m| SocketAddr::from(([127, 0, 0, 1], m.client_port)))
    }

    /// Whether member `i` has a live process (possibly paused).
    pub fn is_running(&self, i: usize) -> bool {
        let Ok(m) = self.member(i) else { return false };
        let mut guard = m.process.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            None => false,
            Some(r) => {
                let alive = Path::new(&format!("/proc/{}", r.jvm_pid)).exists()
                    && !std::fs::read_to_string(format!("/proc/{}/stat", r.jvm_pid))
                        .unwrap_or_default()
                        .contains(") Z ");
                if !alive {
                    if let Some(mut r) = guard.take() {
                        let _ = r.watchdog.kill();
                        let _ = r.watchdog.wait();
                    }
                }
                alive
            }
        }
    }

    fn jvm_pid(&self, i: usize) -> io::Result<u32> {
        let m = self.member(i)?;
        let guard = m.process.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .map(|r| r.jvm_pid)
            .ok_or_else(|| io::Error::other(format!("ZooKeeper member {} is not running", m.id)))
    }

    /// Kills member `i` with SIGKILL (a crash). Its data stays for [`restart`](Self::restart).
    pub fn kill(&self, i: usize) -> io::Result<()> {
        let m = self.member(i)?;
        let running = m.process.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut r) = running {
            let _ = signal(r.jvm_pid, "KILL");
            let _ = r.watchdog.kill();
            let _ = r.watchdog.wait();
            // Wait until the pid is gone so the ports are free for a restart.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{}", r.jvm_pid)).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// Freezes member `i` (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self, i: usize) -> io::Result<()> {
        let pid = self.jvm_pid(i)?;
        signal(pid, "STOP")?;
        wait_stopped(pid)
    }

    /// Unfreezes member `i` (SIGCONT).
    pub fn resume(&self, i: usize) -> io::Result<()> {
        signal(self.jvm_pid(i)?, "CONT")
    }

    /// Cuts member `i` from every other member while its clients still reach it: its
    /// quorum and election connections stay open but nothing flows (packets dropped,
    /// as in a real partition, so the member notices only by its own timeouts:
    /// `syncLimit·tickTime` for a follower). Needs
    /// [`ZooKeeperOptions::peer_proxies`].
    pub fn isolate(&self, i: usize) -> io::Result<()> {
        let peers = self
            .peers
            .as_ref()
            .ok_or_else(|| io::Error::other("ZooKeeper ensemble started without peer proxies"))?;
        for (from, to, proxy) in &peers.links {
            if *from == i || *to == i {
                proxy.blackhole();
            }
        }
        Ok(())
    }

    /// Heals every member-to-member link cut by [`isolate`](Self::isolate).
    pub fn heal_peers(&self) {
        if let Some(peers) = &self.peers {
            peers.links.iter().for_each(|(_, _, p)| p.heal());
        }
    }

    /// Starts member `i` again (after [`kill`](Self::kill), or kills it first) on the
    /// same ports and data, and waits until it serves.
    pub fn restart(&self, i: usize) -> io::Result<()> {
        self.kill(i)?;
        self.spawn(i)?;
        self.wait_ready(i, START_TIMEOUT)
    }
}

impl PeerProxies {
    /// One proxy per ordered pair of members and port, in front of `ports`' peer
    /// (quorum) and election ports.
    fn start(ports: &[(u16, u16, u16)]) -> io::Result<Self> {
        let ports = ports.to_vec();
        // A thread of its own: the caller may be inside another runtime, where
        // `block_on` is not allowed.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("zk-peer-proxies")
                .enable_all()
                .build()?;
            let mut links = Vec::new();
            for from in 0..ports.len() {
                for (to, (_, p, e)) in ports.iter().enumerate() {
                    if from == to {
                        continue;
                    }
                    for port in [*p, *e] {
                        let target = SocketAddr::from(([127, 0, 0, 1], port));
                        let proxy = runtime.block_on(crate::FaultProxy::start(target))?;
                        links.push((from, to, proxy));
                    }
                }
            }
            Ok(Self {
                runtime: Some(runtime),
                links,
            })
        })
        .join()
        .map_err(|_| io::Error::other("peer proxy thread panicked"))?
    }

    /// The (quorum, election) proxy ports member `from` uses to reach member `to`.
    fn ports(&self, from: usize, to: usize) -> (u16, u16) {
        let mut it = self
            .links
            .iter()
            .filter(|(f, t, _)| *f == from && *t == to)
            .map(|(_, _, p)| p.addr().port());
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }
}

impl Drop for ZooKeeperServer {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill(i);
        }
    }
}
