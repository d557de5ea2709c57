//! The PINN heat dashboard (`--dashboard-port`, issue 6), black box: a node under load serves
//! one self-contained HTML page (inline SVG heatmap, no external assets) that headless Chromium
//! renders; the screenshot is saved as `target/dashboard/<test>.png` for a look.
//!
//! Chromium (Debian's `chromium`) is installed by scripts/test.sh; without it the browser step
//! fails under `REDIS_TESTS_STRICT=1` and is skipped (with a message) otherwise.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use redis_tests::cluster::Cluster;
use redis_tests::process::{free_port, workspace_root};
use redis_tests::Builder;

use redis_tests::http::get as http_get;

/// The Chromium binary, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
        })
}

fn strict() -> bool {
    std::env::var("REDIS_TESTS_STRICT").is_ok_and(|v| v == "1")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("dashboard")
}

/// Observed-heat cells of the page with a non-zero rate.
fn hot_cells(html: &str) -> usize {
    html.split("<title>observed t=")
        .skip(1)
        .filter(|cell| {
            cell.split(": ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .count()
}

/// Checks the page is complete, well nested where it matters, and loads nothing from outside.
fn check_self_contained(html: &str) {
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "{}",
        &html[..html.len().min(200)]
    );
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 1, "one inline SVG");
    assert_eq!(html.matches("</svg>").count(), 1);
    assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for tag in ["<html", "<head", "<body", "<table"] {
        let close = format!("</{}>", &tag[1..]);
        assert_eq!(
            html.matches(tag).count(),
            html.matches(&close).count(),
            "{tag} not closed"
        );
    }
    // External assets: scripts, stylesheets, images, fonts, frames, CSS imports or urls.
    for bad in [
        "<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "href=",
    ] {
        assert!(!html.contains(bad), "the page references an asset: {bad}");
    }
}

#[test]
fn dashboard_page_under_load_renders_in_chromium() {
    let dport = free_port().expect("port");
    let server = Builder::pinnacle()
        .args(["--dashboard-port".to_string(), dport.to_string()])
        .start()
        .expect("start pinnacle");
    let addr = SocketAddr::from(([127, 0, 0, 1], dport));
    // Load with a hot spot: most writes on a few keys, the rest spread over the ring, for a
    // few seconds so the once-a-second fold fills several columns.
    let mut c = server.conn().expect("conn");
    let value = "x".repeat(64);
    let until = Instant::now() + Duration::from_secs(5);
    let mut sent = 0u64;
    while Instant::now() < until {
        let mut out = Vec::new();
        for i in 0..200u64 {
            let key = if i % 4 == 0 {
                format!("spread:{}", (sent + i) * 7919 % 100_000)
            } else {
                format!("hot:{}", i % 8)
            };
            out.extend(redis_tests::encode_command(&["SET", &key, &value]));
        }
        c.send(&out).expect("send");
        for _ in 0..200 {
            c.read_reply().expect("reply");
        }
        sent += 200;
    }
    // The fold runs once a second: wait (generously) for a column with heat.
    let deadline = Instant::now() + Duration::from_secs(30);
    let html = loop {
        let (status, headers, body) = http_get(addr, "/");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains("Content-Type: text/html"), "{headers}");
        if hot_cells(&body) > 0 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no observed heat on the page after {sent} SETs"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    check_self_contained(&html);
    assert!(html.contains("<h3>Shards</h3>") && html.contains("<h3>Planner decisions</h3>"));
    let (status, headers, svg) = http_get(addr, "/heatmap.svg");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("Content-Type: image/svg+xml"));
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    assert!(http_get(addr, "/nope").0.contains(" 404 "));

    std::fs::write(target_dir_created().join("dashboard.html"), &html).expect("save page");
    render_in_chromium(addr, "dashboard");
}

fn target_dir_created() -> PathBuf {
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("create target/dashboard");
    dir
}

/// Loads `http://addr/` in headless Chromium: the DOM must hold the SVG, and a 1400×1000
/// screenshot is saved as `target/dashboard/<name>.png`.
fn render_in_chromium(addr: SocketAddr, name: &str) {
    let out_dir = target_dir_created();
    let Some(chrome) = chromium() else {
        assert!(
            !strict(),
            "chromium is not installed (apt-get install -y chromium); REDIS_TESTS_STRICT=1 needs it"
        );
        eprintln!("SKIPPED the browser step: chromium is not installed");
        return;
    };
    let url = format!("http://{addr}/");
    let profile = tempfile::tempdir().expect("profile dir");
    let base = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    // The DOM after Chromium parsed and laid out the page: the SVG is there, not an error page.
    let mut dom = Command::new(&chrome);
    base(&mut dom);
    let dom = dom
        .args(["--dump-dom", &url])
        .output()
        .expect("run chromium --dump-dom");
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success() && dom_text.contains("<svg") && dom_text.contains("Pinnacle heat"),
        "chromium --dump-dom: {}\n{}",
        dom.status,
        String::from_utf8_lossy(&dom.stderr)
    );
    let png = out_dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let mut shot = Command::new(&chrome);
    base(&mut shot);
    let shot = shot
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1400,1000", &url])
        .output()
        .expect("run chromium --screenshot");
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}\n{}",
            png.display(),
            shot.status,
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: width and height as asked.
    let dim =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    assert_eq!((dim(16), dim(20)), (1400, 1000));
    // A blank or error page compresses to a few KiB; the heatmap's many coloured cells do not.
    assert!(
        bytes.len() > 20_000,
        "screenshot only {} bytes",
        bytes.len()
    );
    eprintln!("screenshot: {} ({} bytes)", png.display(), bytes.len());
}

/// A 3-node Raft cluster with 3 shards: every node serves the page, which shows the three
/// shards and who leads them.
#[test]
fn dashboard_on_a_three_shard_cluster() {
    let ips: Vec<Ipv4Addr> = (11..=13).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let dport = port_free_on(&ips);
    let cluster = Cluster::builder(3)
        .shards(3)
        .args(["--dashboard-port".to_string(), dport.to_string()])
        .start()
        .expect("start cluster");
    cluster.leader().expect("leader");
    // Some keyed traffic, spread over the slots (MOVED is followed by the client).
    let mut client = cluster.client();
    for i in 0..300 {
        let _ = client.call(&["SET", &format!("k{i}"), "v"]);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in cluster.ids() {
        let addr = SocketAddr::new(cluster.ip(i), dport);
        let html = loop {
            let (status, _, body) = http_get(addr, "/");
            assert_eq!(status, "HTTP/1.1 200 OK");
            // One row per shard, each with its slots and a known leader.
            let rows = body.matches("<tr><td style=\"background:").count();
            let led = !body.contains("<td>-</td><td>-</td></tr>");
            if rows == 3 && led {
                break body;
            }
            assert!(
                Instant::now() < deadline,
                "node {i}: {rows} shard rows (leaders known: {led})"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        check_self_contained(&html);
        if i == 1 {
            std::fs::write(target_dir_created().join("cluster.html"), &html).expect("save");
            render_in_chromium(addr, "cluster");
        }
    }
}

/// A port free on every one of `ips`.
fn port_free_on(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind((ips[0], 0)).expect("bind");
        let port = l.local_addr().expect("addr").port();
        let others: Vec<_> = ips[1..]
            .iter()
            .filter_map(|ip| TcpListener::bind((*ip, port)).ok())
            .collect();
        if port != 6379 && others.len() == ips.len() - 1 {
            return port;
        }
    }
    panic!("no port free on {ips:?}");
}
