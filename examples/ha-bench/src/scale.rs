//! Many components in one process on one election group: time until all are granted,
//! memory per component, and the backend requests an idle process sends per renew
//! period (counted at the server: ZooKeeper `mntr` packets, etcd's gRPC message
//! counters, the Kubernetes emulator's request counter).
//!
//! Each backend runs in a fresh child process (this binary, `scale-child`), so that the
//! RSS delta is not blurred by memory freed by earlier measurements.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ha_core::{ClusterId, ComponentId, DEFAULT_ELECTION_GROUP};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::report::Measurement;
use crate::systems::{Endpoints, Kind, Servers};
use crate::BoxResult;

/// The child: registers `components` on one election service, reports, then idles
/// until its stdin says stop.
pub(crate) async fn child(endpoints: &Endpoints, kind: Kind, components: usize) -> BoxResult<()> {
    let cluster = ClusterId::random("bench-scale");
    let p = endpoints.connect(kind, &cluster).await?;
    let ids: Vec<ComponentId> = (0..components)
        .map(|i| ComponentId::new(format!("component-{i:05}")))
        .collect::<Result<_, _>>()?;
    // From joining the election (so winning it is included) to the last grant.
    let rss_before = rss_bytes()?;
    let start = Instant::now();
    let svc = p.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut elections = Vec::with_capacity(components);
    for id in ids {
        elections.push(svc.register(id)?);
    }
    let limit = endpoints.ttl() * 10 + Duration::from_secs(30);
    for e in &mut elections {
        tokio::time::timeout(limit, e.granted()).await??;
    }
    let granted = start.elapsed();
    let rss_after = rss_bytes()?;
    println!(
        "{}",
        json!({
            "granted_ms": granted.as_secs_f64() * 1e3,
            "rss_delta_bytes": rss_after.saturating_sub(rss_before),
        })
    );
    // Idle until the parent has counted (any line or EOF on stdin).
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    drop(elections);
    svc.close().await?;
    p.cleanup().await;
    Ok(())
}

/// What one child run yields.
struct ChildRun {
    granted_ms: f64,
    rss_delta: f64,
    /// Requests per renew period, one sample per period; empty for embedded.
    idle: Vec<f64>,
}

/// Runs the child for `kind` with `components` and measures it.
async fn run_child(servers: &Servers, kind: Kind, components: usize, idle_periods: u32) -> BoxResult<ChildRun> {
    let e = &servers.endpoints;
    let mut cmd = e.self_command(&[
        "scale-child",
        "--kind",
        kind.name(),
        "--components",
        &components.to_string(),
    ])?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let limit = e.ttl() * 10 + Duration::from_secs(120);
    let line = tokio::time::timeout(limit, lines.next_line())
        .await??
        .ok_or("scale child exited early")?;
    let v: Value = serde_json::from_str(&line)?;
    let granted_ms = v["granted_ms"].as_f64().ok_or("granted_ms")?;
    let rss_delta = v["rss_delta_bytes"].as_f64().ok_or("rss_delta_bytes")?;

    let mut idle = Vec::new();
    if kind != Kind::Embedded && idle_periods > 0 {
        let period = e.renew_period(kind);
        // Let start-up traffic settle (the grant's own writes, watch set-up).
        tokio::time::sleep(period * 2).await;
        for _ in 0..idle_periods {
            let before = request_count(servers, kind)?;
            tokio::time::sleep(period).await;
            let after = request_count(servers, kind)?;
            idle.push(after.saturating_sub(before) as f64);
        }
    }
    if let Some(stdin) = child.stdin.as_mut() {
        stdin.write_all(b"stop\n").await?;
        stdin.flush().await?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    Ok(ChildRun {
        granted_ms,
        rss_delta,
        idle,
    })
}

/// Measures `components` in one process, next to a one-component baseline for the
/// idle traffic (which should not grow with the number of components).
pub(crate) async fn measure(
    servers: &Servers,
    kind: Kind,
    components: usize,
    idle_periods: u32,
) -> BoxResult<Vec<Measurement>> {
    let backend = kind.name();
    let idle_periods = idle_periods.max(1);
    // Warm-up: the first process of a backend pays one-off costs (root nodes, caches).
    run_child(servers, kind, 1, 0).await?;
    let baseline = run_child(servers, kind, 1, idle_periods).await?;
    let many = run_child(servers, kind, components, idle_periods).await?;
    let mut out = vec![
        Measurement::from_samples(backend, "time_to_grant_all", "ms", &[many.granted_ms])
            .with("components", components)
            .with("one_component_ms", baseline.granted_ms),
        // The one-component run's delta holds the fixed cost of joining the election.
        Measurement::from_samples(
            backend,
            "memory_per_component",
            "bytes",
            &[(many.rss_delta - baseline.rss_delta) / components.saturating_sub(1).max(1) as f64],
        )
        .with("components", components)
        .with("rss_delta_bytes", many.rss_delta)
        .with("one_component_rss_delta_bytes", baseline.rss_delta),
    ];
    if kind != Kind::Embedded {
        let period = servers.endpoints.renew_period(kind);
        let one = Measurement::from_samples(backend, "idle_requests_one_component", "requests", &baseline.idle);
        out.push(
            Measurement::from_samples(backend, "idle_requests_per_renew_period", "requests", &many.idle)
                .with_ratio_to(&one, &format!("{components} components / 1 component"))
                .with("components", components)
                .with("one_component_median", one.median)
                .with("renew_period_ms", period.as_millis() as u64)
                .with("counted_by", counted_by(kind)),
        );
    }
    Ok(out)
}

fn counted_by(kind: Kind) -> &'static str {
    match kind {
        Kind::Zookeeper => "ZooKeeper mntr zk_packets_received",
        Kind::Etcd => "etcd /metrics grpc_server_msg_received_total",
        Kind::Kubernetes => "emulator HTTP request counter",
        Kind::Embedded => "",
    }
}

/// Requests (packets, messages) the server has received so far.
fn request_count(servers: &Servers, kind: Kind) -> BoxResult<u64> {
    match kind {
        Kind::Zookeeper => {
            let addr = servers
                .zookeeper
                .as_ref()
                .and_then(|z| z.client_addr(0))
                .ok_or("no ZooKeeper")?;
            let mntr = ha_testkit::four_letter_word(addr.port(), "mntr")?;
            Ok(sum_metric(&mntr, "zk_packets_received"))
        }
        Kind::Etcd => {
            let endpoint = servers.endpoints.etcd.as_deref().ok_or("no etcd")?;
            let metrics = http_get(endpoint.trim_start_matches("http://"), "/metrics")?;
            Ok(sum_metric(&metrics, "grpc_server_msg_received_total"))
        }
        Kind::Kubernetes => Ok(servers.kube.as_ref().ok_or("no emulator")?.request_count()),
        Kind::Embedded => Ok(0),
    }
}

/// Sums every sample of `name` in Prometheus text or `mntr` output.
fn sum_metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ', '\t']))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A minimal HTTP/1.0 GET on loopback (no HTTP client crate needed for one scrape).
fn http_get(host_port: &str, path: &str) -> BoxResult<String> {
    let mut stream = TcpStream::connect(host_port)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host_port}\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// This process's resident set size.
fn rss_bytes() -> BoxResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::sum_metric;

    #[test]
    fn sums_labelled_samples_only_of_the_metric() {
        let text = "# TYPE x counter\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\nx_totally 100\nzk_packets_received\t7\n";
        assert_eq!(sum_metric(text, "x_total"), 5);
        assert_eq!(sum_metric(text, "zk_packets_received"), 7);
    }
}
