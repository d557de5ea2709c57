//! A writer for Prometheus's text exposition format (version 0.0.4): `# HELP`/`# TYPE` once
//! per family, then `name{label="value"} number` lines.

use std::fmt::{Display, Write as _};

/// Prometheus's media type for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a family's samples mean to Prometheus.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Only goes up (reset by a restart or `CONFIG RESETSTAT`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_bucket{le=...}`, `_sum` and `_count` series.
    Histogram,
}

/// The exposition being built.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts family `name` with its help text.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A float as Prometheus reads it (`+Inf`, `-Inf`, `NaN` spelled its way).
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaped_labels() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "Things.");
        e.sample("x_total", &[("cmd", "a\"b\\c\nd"), ("k", "v")], 3);
        e.single("y", Kind::Gauge, "Y.", float(f64::INFINITY));
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{cmd=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\n\
             # HELP y Y.\n# TYPE y gauge\ny +Inf\n"
        );
        assert_eq!(float(0.000001), "0.000001");
        assert_eq!(float(f64::NAN), "NaN");
    }
}
