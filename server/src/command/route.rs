//! Key → hash slot, and the cluster routing decision for one command.

use super::spec::{BeginSearch, FindKeys, KeySpec};
use super::table::Entry;
use bytes::Bytes;

// One implementation of the slot rule for the whole server: the keyspace prefixes records with
// the same slot the router computes.
pub use crate::storage::slot::{crc16, key_slot, SLOTS};

tokio::task_local! {
    /// Set for the task serving a connection that arrived on the TLS port.
    static TLS_CLIENT: ();
}

/// Maps a node's plain client address (`host:port`) to its TLS one, if it has one.
pub type TlsResolver = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

static TLS_RESOLVER: std::sync::OnceLock<TlsResolver> = std::sync::OnceLock::new();

/// Runs `conn` (a TLS connection's task) so that redirects built in it name TLS ports.
pub async fn serve_tls_client<F: std::future::Future>(conn: F) -> F::Output {
    TLS_CLIENT.scope((), conn).await
}

/// True inside a TLS connection's task (see [`serve_tls_client`]).
pub fn on_tls_client() -> bool {
    TLS_CLIENT.try_with(|_| ()).is_ok()
}

/// Installs how redirects for TLS clients find the TLS port (Raft mode with
/// `tls-cluster yes`: Redis names TLS ports to TLS clients only then).
pub fn set_tls_resolver(f: TlsResolver) {
    let _ = TLS_RESOLVER.set(f);
}

/// `kind slot host:port` (`MOVED`/`ASK`, without the leading `-`), naming the node's TLS port
/// when the calling connection is TLS and the node announced one.
pub fn redirect_text(kind: &str, slot: u16, addr: &str) -> String {
    let tls = on_tls_client()
        .then(|| TLS_RESOLVER.get().and_then(|f| f(addr)))
        .flatten();
    format!("{kind} {slot} {}", tls.as_deref().unwrap_or(addr))
}

/// Where a command goes, decided before it runs (Redis's `getNodeByQuery` outcomes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code)] // MOVED/ASK/TRYAGAIN/CLUSTERDOWN come with the multi-node slot map.
pub enum Route {
    /// Serve here; `slot` is the slot of the keys, if any.
    Served {
        /// Slot of the command's keys (`None` for keyless commands).
        slot: Option<u16>,
    },
    /// Another node owns the slot.
    Moved {
        /// The slot.
        slot: u16,
        /// `host:port` of the owner.
        addr: String,
    },
    /// The slot is migrating and the keys are missing here.
    Ask {
        /// The slot.
        slot: u16,
        /// `host:port` of the importing node.
        addr: String,
    },
    /// A multi-key request hit a slot that is being migrated.
    TryAgain,
    /// The keys span several slots.
    CrossSlot,
    /// The cluster can't serve the slot.
    ClusterDown(ClusterDown),
}

/// The three `CLUSTERDOWN` texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Constructed once the slot map can lose a shard leader.
pub enum ClusterDown {
    /// `The cluster is down`.
    Down,
    /// `Hash slot not served`.
    Unserved,
    /// `The cluster is down and only accepts read commands`.
    ReadOnly,
}

impl Route {
    /// The error a client gets for this outcome, or `None` when the command is served.
    pub fn error(&self) -> Option<String> {
        Some(match self {
            Route::Served { .. } => return None,
            Route::Moved { slot, addr } => redirect_text("MOVED", *slot, addr),
            Route::Ask { slot, addr } => redirect_text("ASK", *slot, addr),
            Route::TryAgain => "TRYAGAIN Multiple keys request during rehashing of slot".into(),
            Route::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot".into(),
            Route::ClusterDown(ClusterDown::Down) => "CLUSTERDOWN The cluster is down".into(),
            Route::ClusterDown(ClusterDown::Unserved) => "CLUSTERDOWN Hash slot not served".into(),
            Route::ClusterDown(ClusterDown::ReadOnly) => {
                "CLUSTERDOWN The cluster is down and only accepts read commands".into()
            }
        })
    }
}

/// Decides where `args` (a looked-up, arity-checked command) is served.
///
/// The single node owns all 16384 slots, so the only refusal today is CROSSSLOT; the cluster
/// issue extends this with the slot map (MOVED/ASK/TRYAGAIN/CLUSTERDOWN).
pub fn route(cmd: &Entry, args: &[Bytes]) -> Route {
    if cmd.spec.key_specs.is_empty() {
        return Route::Served { slot: None };
    }
    // Fast path for the common single-key shape (GET, SET, INCR, ...): no allocation.
    if let [KeySpec {
        begin_search: BeginSearch::Index(i),
        find_keys: FindKeys::Range { lastkey: 0, .. },
        ..
    }] = cmd.spec.key_specs
    {
        if let Some(key) = usize::try_from(*i).ok().and_then(|i| args.get(i)) {
            return Route::Served {
                slot: Some(key_slot(key)),
            };
        }
    }
    let Some(positions) = cmd.spec.key_positions(args) else {
        // Arguments that don't fit the key specs: the handler reports the syntax error.
        return Route::Served { slot: None };
    };
    let mut slot = None;
    for p in positions {
        let s = key_slot(&args[p]);
        match slot {
            None => slot = Some(s),
            Some(prev) if prev != s => return Route::CrossSlot,
            Some(_) => {}
        }
    }
    Route::Served { slot }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_key_specs() {
        let t = crate::command::table::table();
        let args = |v: &[&str]| -> Vec<Bytes> {
            v.iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect()
        };
        let get = t.get(b"get").expect("GET is registered");
        assert_eq!(
            route(get, &args(&["GET", "foo"])),
            Route::Served { slot: Some(12182) }
        );
        let ping = t.get(b"ping").expect("PING is registered");
        assert_eq!(route(ping, &args(&["PING"])), Route::Served { slot: None });
        let mset = t.get(b"mset").expect("MSET is registered");
        assert_eq!(
            route(mset, &args(&["MSET", "{x}a", "1", "{x}b", "2"])),
            Route::Served {
                slot: Some(key_slot(b"x"))
            }
        );
        let r = route(mset, &args(&["MSET", "a", "1", "b", "2"]));
        assert_eq!(r, Route::CrossSlot);
        assert_eq!(
            r.error().as_deref(),
            Some("CROSSSLOT Keys in request don't hash to the same slot")
        );
    }

    #[tokio::test]
    async fn redirects_name_tls_ports_only_to_tls_clients() {
        set_tls_resolver(Box::new(|a| {
            (a == "127.0.0.1:7001").then(|| "127.0.0.1:7101".to_string())
        }));
        assert_eq!(
            redirect_text("MOVED", 5, "127.0.0.1:7001"),
            "MOVED 5 127.0.0.1:7001"
        );
        let tls = serve_tls_client(async {
            (
                on_tls_client(),
                redirect_text("ASK", 6, "127.0.0.1:7001"),
                redirect_text("MOVED", 7, "127.0.0.1:7002"),
            )
        })
        .await;
        assert_eq!(
            tls,
            (
                true,
                "ASK 6 127.0.0.1:7101".to_string(),
                "MOVED 7 127.0.0.1:7002".to_string()
            )
        );
        assert!(!on_tls_client());
    }
}
