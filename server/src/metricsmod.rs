//! Operability: the Prometheus endpoint (`--metrics-port`, `/metrics`) and the per-command
//! latency histograms behind it and `INFO latencystats`.
//!
//! Nothing here sits on the request path except [`latency::Latencies::record`] (one relaxed
//! atomic add per command). Everything else is read when scraped, from counters the server
//! keeps anyway: INFO's per-command stats, the LSM's `Stats`, each Raft group's status and
//! the PINN service's last round and scores. The text is rendered here rather than through
//! the `metrics` registry: the counters already exist as atomics indexed by the command
//! table, a registry would add a label lookup per call, and its exporter would bring a
//! second HTTP server next to the dashboard's.

pub mod latency;
mod sections;
pub mod text;

use crate::command::Server;
use crate::http::{Response, Router};
use std::net::SocketAddr;
use std::sync::Arc;

/// The whole exposition for `server`.
pub fn render(server: &Server) -> String {
    let mut e = text::Exposition::default();
    sections::process(&mut e, server);
    sections::commands(&mut e, server);
    sections::storage(&mut e, server);
    sections::raft(&mut e, server);
    sections::pinn(&mut e);
    e.finish()
}

/// The routes of the metrics port: `/metrics`, and `/` pointing there.
pub fn router(server: Arc<Server>) -> Router {
    Arc::new(move |path: &str| {
        match path {
        "/metrics" => Some(Response::ok(text::CONTENT_TYPE, render(&server))),
        "/" => Some(Response::ok(
            "text/html; charset=utf-8",
            "<!DOCTYPE html><html><head><title>Pinnacle metrics</title></head><body><a href=\"/metrics\">/metrics</a></body></html>\n".into(),
        )),
        _ => None,
    }
    })
}

/// Serves `/metrics` on `addr` until the process ends.
pub async fn serve_metrics(addr: SocketAddr, server: Arc<Server>) -> std::io::Result<()> {
    crate::http::serve(addr, "Prometheus metrics", router(server)).await
}

#[cfg(test)]
mod tests {
    use crate::command::testutil::TestNode;

    /// The value of the one sample line starting with `prefix` (name and labels).
    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn counts_histograms_errors_and_storage() {
        let mut n = TestNode::new();
        for i in 0..5 {
            n.run(&["SET", &format!("k{i}"), "v"]);
        }
        n.run(&["GET", "k1"]);
        n.run(&["GET"]);
        n.run(&["NOSUCH"]);
        let m = super::render(&n.server);
        assert_eq!(
            value(&m, "pinnacle_commands_total{cmd=\"set\"}"),
            Some(5.0),
            "{m}"
        );
        assert_eq!(value(&m, "pinnacle_commands_total{cmd=\"get\"}"), Some(1.0));
        assert_eq!(
            value(&m, "pinnacle_command_rejected_total{cmd=\"get\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&m, "pinnacle_command_duration_seconds_count{cmd=\"set\"}"),
            Some(5.0)
        );
        assert_eq!(
            value(
                &m,
                "pinnacle_command_duration_seconds_bucket{cmd=\"set\",le=\"+Inf\"}"
            ),
            Some(5.0)
        );
        // Buckets are cumulative.
        let buckets: Vec<f64> = m
            .lines()
            .filter(|l| l.starts_with("pinnacle_command_duration_seconds_bucket{cmd=\"set\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        assert!(buckets.len() > 10 && buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(value(&m, "pinnacle_errors_total{kind=\"ERR\"}"), Some(2.0));
        // The in-memory engine has no levels; the black-box test checks the real LSM's.
        assert!(value(&m, "pinnacle_lsm_memtable_bytes{shard=\"0\"}").is_some());
        assert!(m.contains("# TYPE pinnacle_lsm_level_files gauge\n"));
        assert!(value(&m, "pinnacle_lsm_compaction_debt_bytes{shard=\"0\"}").is_some());
        assert!(value(&m, "pinnacle_connected_clients").is_some());
        assert!(m.contains("# TYPE pinnacle_pinn_rounds_total counter\n"));
        // Every sample belongs to a declared family.
        let mut declared = std::collections::HashSet::new();
        for l in m.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or_default().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap_or_default();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| declared.contains(*b))
                    .unwrap_or(name);
                assert!(declared.contains(base), "undeclared {l}");
            }
        }
        n.run(&["CONFIG", "RESETSTAT"]);
        let m = super::render(&n.server);
        assert_eq!(value(&m, "pinnacle_commands_total{cmd=\"set\"}"), None);
    }
}
