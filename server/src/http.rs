//! The node's one HTTP server, for its read-only pages: `/metrics` on `--metrics-port` and the
//! PINN dashboard on `--dashboard-port`. Hand-rolled HTTP/1.1 on tokio (GET and HEAD, one
//! response per connection, a bounded request head): a few pages for a scraper and a browser
//! do not justify a web framework's dependencies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head read; longer ones get `431`.
const MAX_HEAD: usize = 8192;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A response body with its status line and media type.
pub struct Response {
    /// Status code and reason, e.g. `200 OK`.
    pub status: &'static str,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    /// `200 OK` with `body` of type `content_type`.
    pub fn ok(content_type: &'static str, body: String) -> Response {
        Response {
            status: "200 OK",
            content_type,
            body,
        }
    }

    fn text(status: &'static str, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

/// Maps a request path (query string removed) to a response; `None` is `404`.
pub type Router = Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

/// Binds `addr` and serves `router` there until the process ends; `what` names the pages in
/// the log.
pub async fn serve(addr: SocketAddr, what: &'static str, router: Router) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("{what} on http://{}/", listener.local_addr()?);
    serve_on(listener, router).await
}

/// Serves `router` on an already bound listener.
pub async fn serve_on(listener: TcpListener, router: Router) -> std::io::Result<()> {
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(handle(sock, router.clone()));
    }
}

/// Reads one request head and writes one response.
async fn handle(mut sock: TcpStream, router: Router) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() <= MAX_HEAD {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    if !matches!(read, Ok(true)) {
        return;
    }
    let head = buf.len() <= MAX_HEAD;
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let resp = match method {
        _ if !head => Response::text("431 Request Header Fields Too Large", "request too large\n"),
        "GET" | "HEAD" => {
            router(path).unwrap_or_else(|| Response::text("404 Not Found", "not found\n"))
        }
        _ => Response::text("405 Method Not Allowed", "only GET and HEAD\n"),
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        resp.status,
        resp.content_type,
        resp.body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(resp.body.as_bytes());
    }
    let _ = sock.write_all(&out).await;
    let _ = sock.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.expect("read");
        resp
    }

    #[tokio::test]
    async fn routes_methods_and_limits() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router: Router =
            Arc::new(|p: &str| (p == "/x").then(|| Response::ok("text/plain", "hello".into())));
        tokio::spawn(serve_on(listener, router));
        let ok = get(addr, "GET /x?a=1 HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 5\r\n") && ok.ends_with("\r\n\r\nhello"));
        let head = get(addr, "HEAD /x HTTP/1.0\r\n\r\n").await;
        assert!(head.contains("Content-Length: 5\r\n") && head.ends_with("\r\n\r\n"));
        assert!(get(addr, "GET /y HTTP/1.1\r\n\r\n").await.contains(" 404 "));
        assert!(get(addr, "POST /x HTTP/1.1\r\n\r\n")
            .await
            .contains(" 405 "));
        // No end of head within the limit (and all of it read, so closing sends no RST).
        let big = format!("GET /x HTTP/1.1\r\nX: {}", "a".repeat(9_000));
        assert!(get(addr, &big).await.contains(" 431 "));
    }
}
