//! Linearizability checker for histories of Redis string commands (SET, SET ... GET, GET,
//! INCR, DEL) recorded from concurrent clients.
//!
//! Each key is checked on its own (linearizability is local) against a sequential model of a
//! Redis string, with the Wing–Gong/Lowe search Porcupine uses: call and return events in
//! time order, linearize one call at a time, memoise (linearized set, state), backtrack. A
//! step budget per key keeps it from running forever (`Verdict::Unknown`).
//!
//! Recording rules:
//! - a reply (including INCR's "not an integer" error, which the value decides) → `ok(ret)`;
//! - an error reply meaning "not applied" (`-MOVED`, `-CLUSTERDOWN`, ...) → `fail()`: the
//!   operation leaves the history;
//! - no reply (timeout, connection lost) → `indeterminate()`: it may take effect at any time
//!   after its invoke, or never (its completion is +infinity and its result unconstrained).
//!
//! Use unique values in SETs: they make reads cheap to place and reports easy to read.
//!
//! ```
//! use pinnacle_linearizability::{check, Op, Recorder, Ret, Verdict};
//!
//! let rec = Recorder::new();
//! let r = rec.clone(); // one clone per client thread
//! std::thread::spawn(move || {
//!     let p = r.invoke(1, "k", Op::Set("a".into()));
//!     // ... send SET k a, read the reply ...
//!     p.ok(Ret::Ok);
//!     let p = r.invoke(1, "k", Op::Get);
//!     p.ok(Ret::Value(Some("a".into())));
//!     r.invoke(1, "k", Op::Incr).fail(); // -CLUSTERDOWN: not applied
//!     r.invoke(1, "k", Op::Incr).indeterminate(); // timed out
//! })
//! .join()
//! .unwrap();
//! let history = rec.history();
//! let verdict = check(&history);
//! assert_eq!(verdict, Verdict::Ok);
//! // On failure: print `verdict` (a readable window around the culprit), or
//! // `pinnacle_linearizability::dump(dir, "name", &history, &verdict)` for files.
//! ```

mod check;
mod history;
pub mod list_append;
mod model;
mod recorder;
mod render;
mod search;

pub use check::{check, Checker, Verdict, Violation, DEFAULT_STEP_BUDGET};
pub use history::{History, Op, Operation, Outcome, Ret};
pub use recorder::{Counts, Pending, Recorder};
pub use render::{bars_of, dump, render_html, render_svg, render_text, timeline, Bar, BarKind};

#[cfg(test)]
mod generated;
#[cfg(test)]
mod known_histories;
