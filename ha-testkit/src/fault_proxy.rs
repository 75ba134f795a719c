//! `FaultProxy`: a TCP proxy on loopback between clients and a server, for network
//! faults in tests.
//!
//! Point the client at [`FaultProxy::addr`] instead of the server. Then:
//! - [`cut`](FaultProxy::cut) closes every open connection (new ones are accepted);
//! - [`partition`](FaultProxy::partition) closes every connection and refuses new ones
//!   until [`heal`](FaultProxy::heal);
//! - [`blackhole`](FaultProxy::blackhole) keeps connections open but forwards nothing
//!   (bytes wait, as on a stalled network) until healed;
//! - [`delay`](FaultProxy::delay) adds latency to every forwarded chunk;
//! - [`hold_next`](FaultProxy::hold_next) arms a hold: the first chunk a client sends
//!   that the trigger matches blackholes the proxy with that chunk held, until healed;
//!   the held connection stays open to the server after the client gives up, until the
//!   server replies, and the start of that reply is kept ([`held_reply`](FaultProxy::held_reply)).
//!
//! [`client_sends`](FaultProxy::client_sends) tells when clients sent bytes, e.g. to
//! see how often a client keeps its session alive.
//!
//! The proxy stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The network condition the proxy applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Condition {
    /// Forward everything at once.
    Healthy,
    /// Forward after this delay per chunk.
    Delayed(Duration),
    /// Forward nothing; keep connections open.
    Blackholed,
    /// Close all connections and refuse new ones.
    Partitioned,
}

/// Whether a chunk a client sends is the one to hold (see [`FaultProxy::hold_next`]).
pub type HoldTrigger = fn(&[u8]) -> bool;

/// How long a held connection stays open to the server after its client closed, for
/// the server's reply to the held bytes.
const HELD_LINGER: Duration = Duration::from_secs(5);

/// Most bytes of the server's reply to a held chunk that are kept.
const HELD_REPLY_BYTES: usize = 256;

/// The state of an armed or caught hold.
#[derive(Debug, Default)]
struct Hold {
    trigger: Mutex<Option<HoldTrigger>>,
    held_at: Mutex<Option<Instant>>,
    reply: Mutex<Option<Vec<u8>>>,
}

/// Most client sends remembered (the oldest are dropped).
const SENDS_KEPT: usize = 4096;

/// When clients sent bytes, oldest first (see [`FaultProxy::client_sends`]).
type Sends = Arc<Mutex<std::collections::VecDeque<Instant>>>;

/// A fault-injecting TCP proxy. See the module docs.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    condition: Arc<watch::Sender<Condition>>,
    hold: Arc<Hold>,
    sends: Sends,
    /// Bumped by `cut`: connections opened under an older generation close.
    generation: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let condition = Arc::new(watch::channel(Condition::Healthy).0);
        let (generation, _) = watch::channel(0u64);
        let cond_rx = condition.subscribe();
        let gen_rx = generation.subscribe();
        let hold = Arc::new(Hold::default());
        let sends = Sends::default();
        let shared = Shared {
            condition: condition.clone(),
            hold: hold.clone(),
            sends: sends.clone(),
        };
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *cond_rx.borrow() == Condition::Partitioned {
                    drop(client);
                    continue;
                }
                let (cond, gen, shared) = (cond_rx.clone(), gen_rx.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        connection(client, server, cond, gen, shared).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            condition,
            hold,
            sends,
            generation,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection; new connections are accepted.
    pub fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Closes every connection and refuses new ones until [`heal`](Self::heal).
    pub fn partition(&self) {
        self.condition.send_replace(Condition::Partitioned);
        self.cut();
    }

    /// Stops forwarding without closing anything until [`heal`](Self::heal).
    pub fn blackhole(&self) {
        self.condition.send_replace(Condition::Blackholed);
    }

    /// Adds `latency` to every forwarded chunk.
    pub fn delay(&self, latency: Duration) {
        self.condition.send_replace(Condition::Delayed(latency));
    }

    /// Back to normal forwarding.
    pub fn heal(&self) {
        self.condition.send_replace(Condition::Healthy);
    }

    /// The current condition.
    pub fn condition(&self) -> Condition {
        *self.condition.borrow()
    }

    /// Arms a hold: the next chunk a client sends that `trigger` matches is held, and
    /// the proxy blackholes (every connection stalls, none is closed) until
    /// [`heal`](Self::heal), which delivers the held bytes first, in order. Clears the
    /// previous hold's time and reply.
    pub fn hold_next(&self, trigger: HoldTrigger) {
        *lock(&self.hold.held_at) = None;
        *lock(&self.hold.reply) = None;
        *lock(&self.hold.trigger) = Some(trigger);
    }

    /// Disarms a hold that has not caught a chunk yet.
    pub fn disarm_hold(&self) {
        *lock(&self.hold.trigger) = None;
    }

    /// When the armed hold caught its chunk (`None` until then).
    pub fn held_at(&self) -> Option<Instant> {
        *lock(&self.hold.held_at)
    }

    /// The start of the server's reply to the held chunk, once the hold was healed and
    /// the server answered (whether or not the client still listened).
    pub fn held_reply(&self) -> Option<Vec<u8>> {
        lock(&self.hold.reply).clone()
    }

    /// When clients sent bytes through the proxy (one instant per chunk read, oldest
    /// first; the latest few thousand).
    pub fn client_sends(&self) -> Vec<Instant> {
        lock(&self.sends).iter().copied().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every connection of a proxy shares: the condition (a hold sets it) and the hold.
#[derive(Clone, Debug)]
struct Shared {
    condition: Arc<watch::Sender<Condition>>,
    hold: Arc<Hold>,
    sends: Sends,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
        self.condition.send_replace(Condition::Partitioned);
    }
}

async fn connection(
    client: TcpStream,
    server: TcpStream,
    cond: watch::Receiver<Condition>,
    mut gen: watch::Receiver<u64>,
    shared: Shared,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let start_gen = *gen.borrow_and_update();
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Set once this connection's chunk is the held one.
    let held = AtomicBool::new(false);
    // The halves are borrowed, so that a pump ending does not half-close its peer (a
    // dropped write half sends FIN): the server must not see its client leave before
    // it answered held bytes.
    let up = pump(&mut cr, &mut sw, cond.clone(), Side::Client(&shared, &held));
    let down = pump(&mut sr, &mut cw, cond, Side::Server(&shared, &held));
    let down = async {
        down.await;
    };
    let mut down = std::pin::pin!(down);
    // A held connection outlives its client (which gave up on the held request) until
    // the server answered the delivered bytes: the reply is lost, the request is not.
    let forward = async {
        tokio::select! {
            _ = up => {
                if held.load(Ordering::SeqCst) {
                    let _ = tokio::time::timeout(HELD_LINGER, &mut down).await;
                }
            }
            _ = &mut down => {}
        }
    };
    let cut = async {
        while gen.changed().await.is_ok() {
            if *gen.borrow() != start_gen {
                return;
            }
        }
        // The proxy is gone.
    };
    tokio::select! {
        _ = forward => {}
        _ = cut => {}
    }
}

/// Which side a pump reads, with what it needs to catch or answer a held chunk.
#[derive(Clone, Copy)]
enum Side<'a> {
    /// Reads the client: may catch the chunk an armed hold waits for.
    Client(&'a Shared, &'a AtomicBool),
    /// Reads the server: keeps the start of its reply on a held connection.
    Server(&'a Shared, &'a AtomicBool),
}

impl Side<'_> {
    /// Called with each chunk read, before it is forwarded.
    fn saw(&self, chunk: &[u8]) {
        match *self {
            Side::Client(shared, held) => {
                {
                    let mut sends = lock(&shared.sends);
                    if sends.len() == SENDS_KEPT {
                        sends.pop_front();
                    }
                    sends.push_back(Instant::now());
                }
                let mut trigger = lock(&shared.hold.trigger);
                if trigger.is_some_and(|t| t(chunk)) {
                    *trigger = None;
                    // The held chunk waits (below) like every other byte until healed.
                    shared.condition.send_replace(Condition::Blackholed);
                    *lock(&shared.hold.held_at) = Some(Instant::now());
                    held.store(true, Ordering::SeqCst);
                }
            }
            Side::Server(shared, held) => {
                if held.load(Ordering::SeqCst) {
                    let mut reply = lock(&shared.hold.reply);
                    if reply.is_none() {
                        *reply = Some(chunk[..chunk.len().min(HELD_REPLY_BYTES)].to_vec());
                    }
                }
            }
        }
    }
}

/// Copies `from` → `to` chunk by chunk, honouring the condition. Returns when either
/// side closes or the proxy partitions.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut cond: watch::Receiver<Condition>,
    side: Side<'_>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // While blackholed, do not even read: bytes wait in the kernel as on a stall.
        let current = match cond.wait_for(|c| *c != Condition::Blackholed).await {
            Ok(c) => *c,
            Err(_) => return,
        };
        if current == Condition::Partitioned {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        side.saw(&buf[..n]);
        // Re-check after the read: a chunk read just before a blackhole (or the chunk
        // that started a hold) waits too.
        let current = match cond.wait_for(|c| *c != Condition::Blackholed).await {
            Ok(c) => *c,
            Err(_) => return,
        };
        match current {
            Condition::Partitioned => return,
            Condition::Delayed(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8], within: Duration) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut buf = vec![0u8; msg.len()];
        match tokio::time::timeout(within, s.read_exact(&mut buf)).await {
            Ok(r) => r.map(|_| buf),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer")),
        }
    }

    #[tokio::test]
    async fn forwards_cuts_blackholes_and_heals() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            roundtrip(&mut s, b"ping", Duration::from_secs(5)).await.unwrap(),
            b"ping"
        );

        proxy.blackhole();
        let err = roundtrip(&mut s, b"lost?", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        proxy.heal();
        // The stalled bytes arrive once healed, like a recovered network.
        let mut buf = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"lost?");

        proxy.cut();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "a cut connection is closed");
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            roundtrip(&mut s, b"again", Duration::from_secs(5)).await.unwrap(),
            b"again"
        );

        proxy.partition();
        let mut s2 = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            roundtrip(&mut s2, b"x", Duration::from_millis(300)).await.is_err(),
            "partitioned"
        );
        proxy.heal();
        let mut s3 = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            roundtrip(&mut s3, b"healed", Duration::from_secs(5)).await.unwrap(),
            b"healed"
        );
    }

    #[tokio::test]
    async fn a_hold_delivers_the_held_chunk_after_its_client_gave_up() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.hold_next(|chunk| chunk.starts_with(b"PUT "));
        assert_eq!(
            roundtrip(&mut s, b"GET a", Duration::from_secs(5)).await.unwrap(),
            b"GET a",
            "a chunk the trigger does not match passes"
        );
        assert_eq!(proxy.held_at(), None);
        let err = roundtrip(&mut s, b"PUT b", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "the matched chunk is held");
        assert!(proxy.held_at().is_some());
        assert_eq!(
            proxy.condition(),
            Condition::Blackholed,
            "a hold stalls the whole proxy"
        );
        // The client gives up and closes; the held chunk still reaches the server.
        drop(s);
        proxy.heal();
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.held_reply().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(proxy.held_reply().as_deref(), Some(&b"PUT b"[..]));
    }

    #[tokio::test]
    async fn delay_adds_latency() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.delay(Duration::from_millis(100));
        let started = std::time::Instant::now();
        roundtrip(&mut s, b"slow", Duration::from_secs(5)).await.unwrap();
        // Two hops each delayed by 100 ms: this is a lower bound, not a speed assertion.
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(proxy.condition(), Condition::Delayed(Duration::from_millis(100)));
    }
}
