//! `FaultProxy`: a loopback TCP proxy that can cut a client off from its server.
//!
//! Put it between a backend client and a real server (`client → proxy → server`) to
//! simulate network faults without touching either process:
//! - [`FaultProxy::partition`] closes every open connection and refuses new ones (the
//!   client sees its connection drop and cannot reconnect; the server sees the client
//!   go away, so a session or lease runs out on the server's clock);
//! - [`FaultProxy::heal`] lets connections through again.
//!
//! The proxy runs on the Tokio runtime it was started on and stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP proxy with fault injection: `partition` closes every connection and refuses
/// new ones until `heal`. Runs on the Tokio runtime it was started on; stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    partitioned: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, _) = watch::channel(false);
        let partitioned = Arc::new(tx);
        let state = partitioned.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *state.borrow() {
                    drop(client);
                    continue;
                }
                let rx = state.subscribe();
                tokio::spawn(forward(client, target, rx));
            }
        });
        Ok(Self {
            addr,
            target,
            partitioned,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes every connection and refuses new ones until [`heal`](Self::heal).
    pub fn partition(&self) {
        self.partitioned.send_replace(true);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.partitioned.send_replace(false);
    }

    /// Whether the proxy is partitioned.
    pub fn is_partitioned(&self) -> bool {
        *self.partitioned.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.partition();
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, mut partitioned: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = partitioned.wait_for(|p| *p) => {}
    }
    let _ = client.shutdown().await;
    let _ = server.shutdown().await;
}
