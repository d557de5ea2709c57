//! Text and SVG renderings of histories and violations, for test failure dumps.

use crate::check::{Verdict, Violation};
use crate::history::{History, Operation, Quoted};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// Width of the text timeline, in characters.
const BAR_WIDTH: usize = 56;

/// How many ids of the longest order a report shows (its tail).
const ORDER_SHOWN: usize = 24;

/// The whole history as text: one line per operation, by key then invoke time, times in ms
/// from the first invoke.
pub fn render_text(history: &History) -> String {
    let t0 = history.ops.iter().map(|o| o.invoke).min().unwrap_or(0);
    let mut ops: Vec<&Operation> = history.ops.iter().collect();
    ops.sort_by(|a, b| (&a.key, a.invoke, a.id).cmp(&(&b.key, b.invoke, b.id)));
    let mut out = String::new();
    for o in ops {
        let _ = writeln!(out, "{} {o}", span(o, t0));
    }
    out
}

/// `[invoke .. completion]` in ms relative to `t0`, to the ns.
fn span(o: &Operation, t0: u64) -> String {
    let ms = |t: u64| t.saturating_sub(t0) as f64 / 1e6;
    match o.ret() {
        Some(_) => format!("[{:>14.6} .. {:>14.6}]", ms(o.invoke), ms(o.completion())),
        None => format!("[{:>14.6} .. {:>14}]", ms(o.invoke), "?"),
    }
}

/// A text timeline of `ops`: one row per operation with a bar from invoke to reply (`?` to
/// the right edge when there was none). With `mark`, that row is flagged with `>` and the
/// view starts at the earliest op overlapping it (earlier ones show as `<`).
pub fn timeline(ops: &[Operation], mark: Option<u64>) -> String {
    let t0 = ops.iter().map(|o| o.invoke).min().unwrap_or(0);
    let marked = ops.iter().find(|o| Some(o.id) == mark);
    let view0 = marked.map_or(t0, |m| {
        ops.iter()
            .filter(|o| o.completion() >= m.invoke && o.invoke <= m.completion())
            .map(|o| o.invoke)
            .min()
            .unwrap_or(t0)
    });
    let t1 = ops
        .iter()
        .flat_map(|o| [o.invoke, o.ret().map_or(o.invoke, |_| o.completion())])
        .max()
        .unwrap_or(view0)
        .max(view0 + 1);
    let col = |t: u64| {
        (u128::from(t.saturating_sub(view0)) * (BAR_WIDTH as u128 - 1) / u128::from(t1 - view0))
            as usize
    };
    let mut out = String::new();
    for o in ops {
        let from = col(o.invoke);
        let to = o.ret().map_or(BAR_WIDTH - 1, |_| col(o.completion()));
        let mut bar = vec![' '; BAR_WIDTH];
        for c in bar.iter_mut().take(to + 1).skip(from) {
            *c = '=';
        }
        if o.ret().is_some() && o.completion() < view0 {
            bar[0] = '<';
        } else {
            bar[from] = '[';
            bar[to] = if o.ret().is_some() { ']' } else { '?' };
        }
        let flag = if Some(o.id) == mark { '>' } else { ' ' };
        let bar: String = bar.into_iter().collect();
        let _ = writeln!(out, "{flag}|{bar}| {} {o}", span(o, t0));
    }
    out
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not linearizable: key {}", Quoted(&self.key))?;
        writeln!(f, "{}", self.reason)?;
        writeln!(f, "culprit: {}", self.culprit)?;
        writeln!(f, "window (times in ms from the first op shown):")?;
        f.write_str(&timeline(&self.window, Some(self.culprit.id)))?;
        let skip = self.partial.len().saturating_sub(ORDER_SHOWN);
        let ids: Vec<String> = self.partial[skip..]
            .iter()
            .map(|i| format!("#{i}"))
            .collect();
        let earlier = if skip > 0 {
            format!("({skip} earlier) ")
        } else {
            String::new()
        };
        writeln!(f, "longest order found: {earlier}{}", ids.join(" "))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Ok => f.write_str("linearizable"),
            Verdict::Violation(v) => write!(f, "{v}"),
            Verdict::Unknown { keys } => {
                let keys: Vec<String> = keys.iter().map(|k| Quoted(k).to_string()).collect();
                write!(
                    f,
                    "unknown: step budget exhausted for keys {}",
                    keys.join(", ")
                )
            }
        }
    }
}

/// An SVG timeline of `ops`: one lane per client, a box per operation from invoke to reply
/// (indeterminate ones fade out to the right edge), `mark` drawn in red.
pub fn render_svg(ops: &[Operation], mark: Option<u64>) -> String {
    const LANE: f64 = 34.0;
    const LEFT: f64 = 60.0;
    const WIDTH: f64 = 1200.0;
    let mut clients: Vec<u64> = ops.iter().map(|o| o.client).collect();
    clients.sort_unstable();
    clients.dedup();
    let t0 = ops.iter().map(|o| o.invoke).min().unwrap_or(0);
    let t1 = ops
        .iter()
        .flat_map(|o| [o.invoke, o.ret().map_or(o.invoke, |_| o.completion())])
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let x =
        |t: u64| LEFT + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * (WIDTH - LEFT - 20.0);
    let height = LANE * clients.len() as f64 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="10">"#
    );
    let _ = writeln!(
        s,
        r##"<defs><linearGradient id="fade"><stop offset="0" stop-color="#f0c674"/><stop offset="1" stop-color="#f0c674" stop-opacity="0"/></linearGradient></defs>"##
    );
    for (lane, c) in clients.iter().enumerate() {
        let y = 10.0 + LANE * lane as f64;
        let _ = writeln!(s, r#"<text x="4" y="{}">client {c}</text>"#, y + 18.0);
    }
    for o in ops {
        let lane = clients.binary_search(&o.client).unwrap_or(0);
        let y = 10.0 + LANE * lane as f64;
        let x0 = x(o.invoke);
        let x1 = match o.ret() {
            Some(_) => x(o.completion()),
            None => WIDTH - 20.0,
        };
        let fill = match (Some(o.id) == mark, o.ret().is_some()) {
            (true, _) => "#e06c75",
            (false, true) => "#8fbcbb",
            (false, false) => "url(#fade)",
        };
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{}" fill="{fill}" stroke="#333"><title>{}</title></rect>"##,
            (x1 - x0).max(1.0),
            LANE - 6.0,
            xml(&o.to_string())
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x0 + 2.0,
            y + 17.0,
            xml(&o.to_string())
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes `<dir>/<name>.history.txt` (the verdict, then the whole history) and, for a
/// violation, `<dir>/<name>.violation.svg` (its window). Returns the paths written.
pub fn dump(
    dir: &Path,
    name: &str,
    history: &History,
    verdict: &Verdict,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let txt = dir.join(format!("{name}.history.txt"));
    std::fs::write(
        &txt,
        format!("{verdict}\n\nhistory:\n{}", render_text(history)),
    )?;
    let mut paths = vec![txt];
    if let Verdict::Violation(v) = verdict {
        let svg = dir.join(format!("{name}.violation.svg"));
        std::fs::write(&svg, render_svg(&v.window, Some(v.culprit.id)))?;
        paths.push(svg);
    }
    Ok(paths)
}

/// How one bar of an HTML timeline ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// A reply.
    Ok,
    /// Definitely not applied.
    Fail,
    /// No reply (maybe applied): drawn to the right edge, faded.
    Info,
}

/// One operation or transaction on an HTML timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Lane label (e.g. `client 3`).
    pub lane: String,
    /// Invoke time, ns.
    pub start: u64,
    /// Completion time, ns (`None`: indeterminate).
    pub end: Option<u64>,
    /// Tooltip and label text.
    pub label: String,
    /// Outcome.
    pub kind: BarKind,
}

/// Bars of a register/counter history (one lane per client).
pub fn bars_of(history: &History) -> Vec<Bar> {
    history
        .ops
        .iter()
        .map(|o| Bar {
            lane: format!("client {}", o.client),
            start: o.invoke,
            end: o.ret().map(|_| o.completion()),
            label: o.to_string(),
            kind: if o.ret().is_some() {
                BarKind::Ok
            } else {
                BarKind::Info
            },
        })
        .collect()
}

/// A self-contained HTML page with an SVG timeline: a lane per client, a box per operation
/// (green ok, red fail, faded yellow indeterminate; hover for the text), and every `events`
/// entry (`(ns, text)`, e.g. the nemesis log) as a labelled vertical line.
pub fn render_html(title: &str, bars: &[Bar], events: &[(u64, String)]) -> String {
    const LANE: f64 = 22.0;
    const LEFT: f64 = 80.0;
    const TOP: f64 = 30.0;
    let mut lanes: Vec<&str> = bars.iter().map(|b| b.lane.as_str()).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let t1 = bars
        .iter()
        .flat_map(|b| [b.start, b.end.unwrap_or(b.start)])
        .chain(events.iter().map(|e| e.0))
        .max()
        .unwrap_or(1)
        .max(1);
    // 200 px per second, at least 1200 px wide.
    let width = (t1 as f64 / 1e9 * 200.0).max(1200.0) + LEFT + 20.0;
    let x = |t: u64| LEFT + t as f64 / t1 as f64 * (width - LEFT - 20.0);
    let height = TOP + LANE * lanes.len() as f64 + 20.0 + 14.0 * events.len().min(400) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head><body>\n<h3>{}</h3>",
        xml(title),
        xml(title)
    );
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="monospace" font-size="10">"#
    );
    let _ = writeln!(
        s,
        r##"<defs><linearGradient id="fade"><stop offset="0" stop-color="#f0c674"/><stop offset="1" stop-color="#f0c674" stop-opacity="0"/></linearGradient></defs>"##
    );
    let mut sec = 0u64;
    while sec * 1_000_000_000 <= t1 {
        let xs = x(sec * 1_000_000_000);
        let _ = writeln!(
            s,
            r##"<line x1="{xs:.1}" y1="{}" x2="{xs:.1}" y2="{height:.0}" stroke="#eee"/><text x="{xs:.1}" y="{}">{sec}s</text>"##,
            TOP - 10.0,
            TOP - 12.0
        );
        sec += 1;
    }
    for (i, l) in lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64 + 14.0;
        let _ = writeln!(s, r#"<text x="2" y="{y:.1}">{}</text>"#, xml(l));
    }
    for b in bars {
        let lane = lanes.binary_search(&b.lane.as_str()).unwrap_or(0);
        let y = TOP + LANE * lane as f64;
        let x0 = x(b.start);
        let x1 = b.end.map_or(width - 20.0, x);
        let fill = match b.kind {
            BarKind::Ok => "#8fbcbb",
            BarKind::Fail => "#e06c75",
            BarKind::Info => "url(#fade)",
        };
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{}" fill="{fill}" stroke="#555" stroke-width="0.3"><title>{}</title></rect>"##,
            (x1 - x0).max(0.8),
            LANE - 6.0,
            xml(&b.label)
        );
    }
    let base = TOP + LANE * lanes.len() as f64 + 20.0;
    for (i, (t, what)) in events.iter().take(400).enumerate() {
        let xe = x(*t);
        let _ = writeln!(
            s,
            r##"<line x1="{xe:.1}" y1="{TOP}" x2="{xe:.1}" y2="{:.1}" stroke="#c678dd" stroke-width="1"><title>{}</title></line><text x="{:.1}" y="{:.1}" fill="#8a3fa0">{:.3}s {}</text>"##,
            base + 14.0 * i as f64,
            xml(what),
            xe + 2.0,
            base + 14.0 * i as f64 + 10.0,
            *t as f64 / 1e9,
            xml(what)
        );
    }
    s.push_str("</svg>\n</body></html>\n");
    s
}
