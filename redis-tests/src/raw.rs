//! A raw TCP connection: send exact bytes, read exact reply bytes, detect EOF.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::frame::{self, Value};
use crate::Error;

/// Default time to wait for a reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a read found when waiting for bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Bytes arrived.
    Data(Vec<u8>),
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived within the timeout; the connection is still open.
    Nothing,
}

/// A blocking raw-socket client with its own read buffer.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    /// Connect to `127.0.0.1:port`.
    pub fn connect(port: u16) -> Result<RawConn, Error> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Connect to any address (e.g. a cluster node on `127.0.0.11`) within `timeout`.
    pub fn connect_addr(addr: std::net::SocketAddr, timeout: Duration) -> Result<RawConn, Error> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Send raw bytes, tolerating a peer that already closed (returns whether all was written).
    pub fn send_lossy(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Send one command as a multibulk request.
    pub fn send_command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), Error> {
        self.send(&frame::encode_command(args))
    }

    /// Send a command and return the raw bytes of its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Vec<u8>, Error> {
        self.send_command(args)?;
        self.read_reply()
    }

    /// Send a command and return its parsed reply.
    pub fn call_value<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, Error> {
        let raw = self.call(args)?;
        frame::parse_one(&raw)
    }

    /// Read more bytes into the buffer; false on EOF. Errors on timeout.
    fn fill(&mut self, deadline: Instant) -> Result<bool, Error> {
        if self.eof {
            return Ok(false);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout(format!(
                "no complete reply; buffered: {}",
                frame::show(&self.buf)
            )));
        }
        self.stream.set_read_timeout(Some(deadline - now))?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(Error::Timeout(format!(
                    "no complete reply; buffered: {}",
                    frame::show(&self.buf)
                )))
            }
            Err(e) if is_reset(&e) => {
                self.eof = true;
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Read the raw bytes of exactly one reply (default timeout).
    pub fn read_reply(&mut self) -> Result<Vec<u8>, Error> {
        self.read_reply_timeout(REPLY_TIMEOUT)
    }

    /// Read the raw bytes of exactly one reply within `timeout`.
    pub fn read_reply_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(n) = frame::frame_len(&self.buf)? {
                let rest = self.buf.split_off(n);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            if !self.fill(deadline)? {
                return Err(Error::Closed(format!(
                    "connection closed; buffered: {}",
                    frame::show(&self.buf)
                )));
            }
        }
    }

    /// Wait up to `timeout` for anything: bytes already buffered are returned first.
    pub fn peek(&mut self, timeout: Duration) -> Result<Peek, Error> {
        if !self.buf.is_empty() {
            return Ok(Peek::Data(std::mem::take(&mut self.buf)));
        }
        match self.fill(Instant::now() + timeout) {
            Ok(true) => Ok(Peek::Data(std::mem::take(&mut self.buf))),
            Ok(false) => Ok(Peek::Closed),
            Err(Error::Timeout(_)) => Ok(Peek::Nothing),
            Err(e) => Err(e),
        }
    }

    /// Read everything until EOF or until `timeout` passes. Returns the bytes and
    /// whether EOF was seen.
    pub fn read_until_close(&mut self, timeout: Duration) -> Result<(Vec<u8>, bool), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(true) => continue,
                Ok(false) => return Ok((std::mem::take(&mut self.buf), true)),
                Err(Error::Timeout(_)) => return Ok((std::mem::take(&mut self.buf), false)),
                Err(e) => return Err(e),
            }
        }
    }

    /// The underlying stream (for shutdown or socket options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}
