//! `FaultProxy`: a TCP proxy on loopback between clients and a server, for network
//! faults in tests.
//!
//! Point the client at [`FaultProxy::addr`] instead of the server. Then:
//! - [`cut`](FaultProxy::cut) closes every open connection (new ones are accepted);
//! - [`partition`](FaultProxy::partition) closes every connection and refuses new ones
//!   until [`heal`](FaultProxy::heal);
//! - [`blackhole`](FaultProxy::blackhole) keeps connections open but forwards nothing
//!   (bytes wait, as on a stalled network) until healed;
//! - [`delay`](FaultProxy::delay) adds latency to every forwarded chunk.
//!
//! The proxy stops when dropped.

use std::net::SocketAddr;
use std::time::Duration;

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

/// A fault-injecting TCP proxy. See the module docs.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    condition: watch::Sender<Condition>,
    /// Bumped by `cut`: connections opened under an older generation close.
    generation: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (condition, _) = watch::channel(Condition::Healthy);
        let (generation, _) = watch::channel(0u64);
        let cond_rx = condition.subscribe();
        let gen_rx = generation.subscribe();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *cond_rx.borrow() == Condition::Partitioned {
                    drop(client);
                    continue;
                }
                let (cond, gen) = (cond_rx.clone(), gen_rx.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        connection(client, server, cond, gen).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            condition,
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
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let start_gen = *gen.borrow_and_update();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, cond.clone());
    let down = pump(sr, cw, cond);
    let cut = async {
        while gen.changed().await.is_ok() {
            if *gen.borrow() != start_gen {
                return;
            }
        }
        // The proxy is gone.
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut => {}
    }
}

/// Copies `from` → `to` chunk by chunk, honouring the condition. Returns when either
/// side closes or the proxy partitions.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cond: watch::Receiver<Condition>,
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
        // Re-check after the read: a chunk read just before a blackhole waits too.
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
