//! The TCP front end: listeners (plain and TLS), the per-connection task, and connection limits.

mod conn;
pub mod tls;

use crate::command::Server;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a TLS client may take to finish its handshake before it is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client byte stream the connection loop can serve: plain TCP or TLS over TCP.
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The reading half.
    type Read: AsyncRead + Send + Unpin + 'static;
    /// The writing half.
    type Write: AsyncWrite + Send + Unpin + 'static;
    /// Splits into halves that can be used concurrently.
    fn into_halves(self) -> (Self::Read, Self::Write);
}

impl ClientStream for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl ClientStream for TlsStream<TcpStream> {
    type Read = tokio::io::ReadHalf<TlsStream<TcpStream>>;
    type Write = tokio::io::WriteHalf<TlsStream<TcpStream>>;
    fn into_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// Options fixed for the process lifetime that the connection loop needs.
#[derive(Clone, Copy, Debug)]
pub struct NetOptions {
    /// Run each batch of commands with `block_in_place`, so handlers that block on fsync
    /// (`appendfsync always`) don't stall other connections sharing the worker thread.
    pub blocking_commands: bool,
}

/// Accepts connections on `listener` until shutdown is requested, one task per connection.
pub async fn serve(listener: TcpListener, server: Arc<Server>, opts: NetOptions) {
    serve_with(listener, server, opts, None).await
}

/// Like [`serve`], with every connection a TLS session (`--tls-port`).
pub async fn serve_tls(
    listener: TcpListener,
    server: Arc<Server>,
    opts: NetOptions,
    acceptor: TlsAcceptor,
) {
    serve_with(listener, server, opts, Some(acceptor)).await
}

async fn serve_with(
    listener: TcpListener,
    server: Arc<Server>,
    opts: NetOptions,
    tls: Option<TlsAcceptor>,
) {
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
        if server.client_count() >= max && tls.is_none() {
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
        let Some(acceptor) = tls.clone() else {
            tokio::spawn(async move {
                conn::run(server, sock, peer.to_string(), local, opts).await;
            });
            continue;
        };
        tokio::spawn(async move {
            let mut stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake with {peer} failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake with {peer} timed out");
                        return;
                    }
                };
            // Checked after the handshake so the client can read the error.
            if server.client_count() >= server.config.maxclients() {
                server
                    .stats
                    .rejected_connections
                    .fetch_add(1, Ordering::Relaxed);
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            let conn = conn::run(server, stream, peer.to_string(), local, opts);
            // Redirects built for this client name TLS ports.
            crate::command::route::serve_tls_client(conn).await;
        });
    }
}

#[cfg(test)]
mod tests;
