//! The heat dashboard (`--dashboard-port`): one self-contained HTML page (no external assets)
//! with an SVG heatmap of observed and forecast heat per bucket over the last 60 s, the shard
//! owning each bucket, and the planner's decisions and migrations. Refreshes every 2 s.

use super::service::unix_now;
use crate::command::Server;
use crate::http::{Response, Router};
use pinnacle_pinn::{bucket_of, SLOTS};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Pixel size of one heatmap cell.
const CELL_W: usize = 8;
const CELL_H: usize = 6;
/// Seconds of history shown.
const SPAN: u64 = 60;

/// Serves the dashboard on `addr` until the process ends.
pub async fn serve_dashboard(addr: SocketAddr, server: Arc<Server>) -> std::io::Result<()> {
    crate::http::serve(addr, "PINN dashboard", router(server)).await
}

/// Serves the dashboard on an already bound listener.
pub async fn serve_on(listener: TcpListener, server: Arc<Server>) -> std::io::Result<()> {
    crate::http::serve_on(listener, router(server)).await
}

/// The dashboard's routes: the page at `/` and the bare SVG at `/heatmap.svg`.
pub fn router(server: Arc<Server>) -> Router {
    Arc::new(move |path: &str| match path {
        "/" | "/index.html" => Some(Response::ok("text/html; charset=utf-8", page(&server))),
        "/heatmap.svg" => Some(Response::ok("image/svg+xml", svg(&server))),
        _ => None,
    })
}

/// A fill colour for heat `v` in `[0, 1]`: white through yellow to dark red.
fn heat_colour(v: f64) -> String {
    let v = v.clamp(0.0, 1.0);
    let hue = 60.0 * (1.0 - v);
    let light = 97.0 - 62.0 * v;
    format!("hsl({hue:.0},100%,{light:.0}%)")
}

/// A colour per shard index.
fn shard_colour(i: usize) -> String {
    format!("hsl({},55%,55%)", (i * 137) % 360)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG: shard ownership strip, then observed heat (last 60 s) and forecast heat (each
/// second's forecast as made `horizon` seconds earlier, continuing into the future).
pub fn svg(server: &Server) -> String {
    let svc = super::service();
    let settings = svc.settings();
    let shards = super::shards(server);
    let (observed, forecasts) = svc.history();
    let buckets = observed
        .last()
        .map(|(_, r)| r.len())
        .or_else(|| forecasts.last().map(|(_, _, r)| r.len()))
        .unwrap_or(settings.buckets)
        .max(1);
    let now = observed
        .last()
        .map_or_else(|| unix_now().saturating_sub(1), |r| r.0);
    let start = now.saturating_sub(SPAN - 1);
    let max = observed
        .iter()
        .flat_map(|(_, r)| r.iter())
        .chain(forecasts.iter().flat_map(|(_, _, r)| r.iter()))
        .fold(0.0f32, |m, &v| m.max(v))
        .max(1e-9) as f64;
    let obs_cols = SPAN as usize;
    let pred_cols = SPAN as usize + settings.horizon as usize;
    let strip = 14;
    let gap = 30;
    let x_obs = strip + 10;
    let x_pred = x_obs + obs_cols * CELL_W + gap;
    let width = x_pred + pred_cols * CELL_W + 10;
    let height = 40 + buckets * CELL_H + 40;
    let top = 30;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">"#
    );
    let _ = write!(
        out,
        r#"<text x="{x_obs}" y="18">observed ops/s per bucket, last {SPAN} s</text><text x="{x_pred}" y="18">forecast (+{}s ahead when made)</text>"#,
        settings.horizon
    );
    // Panel backgrounds (grey = no data yet, pale yellow = no heat) and the time axis.
    let (obs_w, pred_w, panel_h) = (obs_cols * CELL_W, pred_cols * CELL_W, buckets * CELL_H);
    let _ = write!(
        out,
        r##"<rect x="{x_obs}" y="{top}" width="{obs_w}" height="{panel_h}" fill="#eee"/><rect x="{x_pred}" y="{top}" width="{pred_w}" height="{panel_h}" fill="#eee"/><text x="{x_obs}" y="{}">-{SPAN} s</text><text x="{}" y="{}" text-anchor="end">now</text><text x="{x_pred}" y="{}">-{SPAN} s</text><text x="{}" y="{}" text-anchor="end">+{} s</text>"##,
        top + panel_h + 16,
        x_obs + obs_w,
        top + panel_h + 16,
        top + panel_h + 16,
        x_pred + pred_w,
        top + panel_h + 16,
        settings.horizon
    );
    // Ownership strip: the shard owning each bucket's first slot.
    let per_bucket = SLOTS.div_ceil(buckets);
    for b in 0..buckets {
        let first = (b * SLOTS / buckets).min(SLOTS - 1) as u16;
        let owner = shards
            .iter()
            .find(|s| s.slots.iter().any(|&(a, z)| a <= first && first <= z));
        let fill = owner.map_or("#ccc".to_string(), |s| shard_colour(s.index));
        let title = owner.map_or("unowned".to_string(), |s| format!("shard {}", s.index));
        let _ = write!(
            out,
            r#"<rect x="2" y="{}" width="{strip}" height="{CELL_H}" fill="{fill}"><title>bucket {b} (~{per_bucket} slots from {first}): {title}</title></rect>"#,
            top + b * CELL_H
        );
    }
    let cell = |out: &mut String, x: usize, b: usize, v: f32, t: u64, what: &str| {
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="{CELL_W}" height="{CELL_H}" fill="{}"><title>{what} t={t} bucket {b}: {v:.1} ops/s</title></rect>"#,
            top + b * CELL_H,
            heat_colour(v as f64 / max)
        );
    };
    for (t, row) in observed.iter().filter(|(t, _)| *t >= start) {
        let x = x_obs + (t - start) as usize * CELL_W;
        for (b, &v) in row.iter().enumerate().take(buckets) {
            cell(&mut out, x, b, v, *t, "observed");
        }
    }
    for (t, model, row) in forecasts.iter().filter(|(t, _, _)| *t >= start) {
        let col = (t - start) as usize;
        if col >= pred_cols {
            continue;
        }
        let x = x_pred + col * CELL_W;
        for (b, &v) in row.iter().enumerate().take(buckets) {
            cell(&mut out, x, b, v, *t, model);
        }
    }
    // "now" marker on the forecast panel, and the planner's decisions on the observed one.
    let now_x = x_pred + (now - start + 1) as usize * CELL_W;
    let bottom = top + buckets * CELL_H;
    let _ = write!(
        out,
        r##"<line x1="{now_x}" y1="{}" x2="{now_x}" y2="{}" stroke="#000" stroke-dasharray="3,2"/><text x="{now_x}" y="{}">now</text>"##,
        top - 4,
        bottom + 4,
        bottom + 16
    );
    for d in svc.decisions().iter().filter(|d| d.t >= start) {
        let x = x_obs + (d.t - start) as usize * CELL_W + CELL_W / 2;
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#06c" stroke-width="2"><title>decision {}: shard {} → {} ({})</title></line>"##,
            top - 4,
            bottom + 4,
            d.id,
            d.plan.from,
            d.plan.to,
            d.planner
        );
    }
    let _ = write!(
        out,
        r#"<text x="{x_obs}" y="{}">full colour = {max:.1} ops/s; blue lines = planner decisions</text></svg>"#,
        bottom + 30
    );
    out
}

/// The HTML page: the SVG inline, the shards, and the recent decisions and migrations.
pub fn page(server: &Server) -> String {
    let svc = super::service();
    let settings = svc.settings();
    let shards = super::shards(server);
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\"><title>Pinnacle PINN heat</title><style>body{font-family:monospace;margin:16px}table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 6px}</style></head><body>",
    );
    let _ = write!(
        html,
        "<h2>Pinnacle heat: node {}</h2><p>planner {}, threshold {}× mean, horizon {} s, training {}</p>",
        escape(&server.node_id),
        settings.planner.name(),
        settings.threshold,
        settings.horizon,
        if settings.enabled && settings.train { "on" } else { "off" }
    );
    html.push_str(&svg(server));
    html.push_str("<h3>Shards</h3><table><tr><th>shard</th><th>slots</th><th>leader</th><th>address</th></tr>");
    for s in &shards {
        let slots: Vec<String> = s.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let _ = write!(
            html,
            "<tr><td style=\"background:{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            shard_colour(s.index),
            s.index,
            escape(&slots.join(" ")),
            escape(s.leader_node.as_deref().unwrap_or("-")),
            escape(s.leader_addr.as_deref().unwrap_or("-"))
        );
    }
    html.push_str("</table><h3>Planner decisions</h3><table><tr><th>#</th><th>time</th><th>planner</th><th>model</th><th>from → to</th><th>slots</th><th>predicted</th><th>observed then</th><th>observed at target</th><th>migration</th></tr>");
    for d in svc.decisions().iter().rev().take(20) {
        let slots: Vec<String> = d
            .plan
            .slots
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            d.id,
            d.t,
            d.planner,
            escape(&d.model),
            d.plan.from,
            d.plan.to,
            escape(&slots.join(" ")),
            d.plan.heat_from,
            d.observed_now,
            d.observed_later.map_or("-".to_string(), |v| format!("{v:.1}")),
            d.migration
                .map(|m| m.to_string())
                .or_else(|| d.error.as_deref().map(escape))
                .unwrap_or_else(|| "-".into())
        );
    }
    html.push_str("</table>");
    if let Some(m) = super::mover() {
        html.push_str("<h3>Migrations</h3><table><tr><th>id</th><th>state</th><th>slots</th><th>from → to</th><th>keys</th><th>ms</th><th>planner</th></tr>");
        for r in m.migrations().iter().rev().take(20) {
            let slots: Vec<String> = r.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.id,
                escape(&r.state),
                escape(&slots.join(" ")),
                r.from,
                r.to,
                r.keys,
                r.duration_ms.map_or("-".to_string(), |d| d.to_string()),
                escape(&r.planner)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>\n");
    html
}

/// Whether bucket `b` of `buckets` holds `slot` (for tests and tooltips).
pub fn bucket_holds(b: usize, buckets: usize, slot: u16) -> bool {
    bucket_of(slot, buckets) == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testutil::TestNode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_page_is_self_contained() {
        let n = TestNode::new();
        let html = page(&n.server);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(html.contains("0123456789abcdef0123456789abcdef01234567"));
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
        assert!(bucket_holds(0, 64, 255) && !bucket_holds(0, 64, 256));
    }

    /// Writes a page with a travelling hot spot to `$PINN_DASHBOARD_SAMPLE` (default
    /// /tmp/pinn-dashboard.html) for a look in a browser. Ignored: it fills the process-wide
    /// service.
    #[test]
    #[ignore]
    fn write_a_sample_page() {
        let n = TestNode::new();
        let svc = crate::pinn::service();
        for k in 0..70u64 {
            for i in 0..400u32 {
                let slot = ((k * 200 + (i as u64 % 40) * 20) % SLOTS as u64) as u16;
                svc.record(slot, i % 3 == 0, 32);
            }
            svc.tick(3_000_000_000 + k);
        }
        let path = std::env::var("PINN_DASHBOARD_SAMPLE")
            .unwrap_or_else(|_| "/tmp/pinn-dashboard.html".into());
        std::fs::write(&path, page(&n.server)).expect("write sample");
    }

    #[tokio::test]
    async fn serves_the_page_and_the_svg_over_http() {
        let n = TestNode::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve_on(listener, n.server.clone()));
        for (path, want) in [
            ("/", "200 OK"),
            ("/heatmap.svg", "image/svg+xml"),
            ("/nope", "404"),
        ] {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut resp = String::new();
            s.read_to_string(&mut resp).await.expect("read");
            assert!(resp.contains(want), "{path}: {resp}");
        }
    }
}
