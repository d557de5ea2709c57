//! The TCP front end: listeners, the per-connection task, and connection limits.

mod conn;

use crate::command::Server;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Options fixed for the process lifetime that the connection loop needs.
#[derive(Clone, Copy, Debug)]
pub struct NetOptions {
    /// Run each batch of commands with `block_in_place`, so handlers that block on fsync
    /// (`appendfsync always`) don't stall other connections sharing the worker thread.
    pub blocking_commands: bool,
}

/// Accepts connections on `listener` until shutdown is requested, one task per connection.
pub async fn serve(listener: TcpListener, server: Arc<Server>, opts: NetOptions) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = server.wait_shutdown() => return,
        };
        let (mut sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        server
            .stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let max = server.config.maxclients();
        if server.client_count() >= max {
            server
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            // Best effort, off the accept path: a client that doesn't read can't stall us.
            tokio::spawn(async move {
                let _ = sock
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
                let _ = sock.shutdown().await;
            });
            continue;
        }
        let _ = sock.set_nodelay(true);
        let local = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let server = server.clone();
        tokio::spawn(async move {
            conn::run(server, sock, peer.to_string(), local, opts).await;
        });
    }
}

#[cfg(test)]
mod tests;
