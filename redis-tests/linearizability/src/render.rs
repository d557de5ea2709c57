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
