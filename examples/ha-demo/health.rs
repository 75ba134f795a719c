//! The demo's HTTP endpoint: `/metrics` (Prometheus text) and `/healthz` (200 when
//! every contender of this process is healthy, 503 otherwise; one line per contender),
//! so that a Kubernetes liveness probe restarts a wedged leader (FLINK-27590).
//!
//! A minimal HTTP/1.1 responder: one request per connection, bounded in size and time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ha_core::{LeaderElectionService, LeaderHealthCheck};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn checks() -> &'static Mutex<BTreeMap<String, LeaderHealthCheck>> {
    static CHECKS: OnceLock<Mutex<BTreeMap<String, LeaderHealthCheck>>> = OnceLock::new();
    CHECKS.get_or_init(Default::default)
}

fn tolerance() -> &'static OnceLock<Duration> {
    static TOLERANCE: OnceLock<Duration> = OnceLock::new();
    &TOLERANCE
}

/// Sets the tolerance of every check (`high-availability.health.tolerance`); once.
pub(crate) fn set_tolerance(value: Duration) {
    let _ = tolerance().set(value);
}

/// Adds contender `name`'s health to `/healthz`.
pub(crate) fn register(name: &str, service: &LeaderElectionService) {
    let slack = tolerance()
        .get()
        .copied()
        .unwrap_or(ha_core::config::DEFAULT_HEALTH_TOLERANCE);
    checks()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), service.health_check(slack));
}

/// Removes contender `name` (it left on purpose, e.g. the demo crashed it).
pub(crate) fn remove(name: &str) {
    checks().lock().unwrap_or_else(|e| e.into_inner()).remove(name);
}

/// The `/healthz` answer: status code and body.
pub(crate) async fn healthz() -> (u16, String) {
    let current: Vec<(String, LeaderHealthCheck)> = checks()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if current.is_empty() {
        return (503, "not contending yet\n".into());
    }
    let mut healthy = true;
    let mut body = String::new();
    for (name, check) in current {
        let health = check.check().await;
        healthy &= health.is_healthy();
        body.push_str(&format!("{name}: {health}\n"));
    }
    (if healthy { 200 } else { 503 }, body)
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends.
pub(crate) async fn serve(addr: SocketAddr, metrics: PrometheusHandle) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        // The recorder's periodic maintenance (the http-listener exporter does this itself).
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &metrics)).await;
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, metrics: &PrometheusHandle) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let (code, content_type, body) = match path {
        "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
        "/healthz" | "/livez" => {
            let (code, body) = healthz().await;
            (code, "text/plain", body)
        }
        _ => (404, "text/plain", "try /metrics or /healthz\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
