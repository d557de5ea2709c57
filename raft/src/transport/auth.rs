//! Who may use the cluster bus: the shared-secret handshake and the mutual-TLS settings.
//!
//! A new connection is authenticated before its first frame is read, so a process without the
//! secret (or without a certificate signed by the cluster's CA) never reaches the frame decoder,
//! let alone a Raft group.
//!
//! The secret handshake is a fixed-size HMAC-SHA256 challenge/response in both directions:
//!
//! ```text
//! dialer   -> acceptor  MAGIC | AUTH_VERSION | nonce_d[32]
//! acceptor -> dialer    MAGIC | AUTH_VERSION | nonce_a[32] | HMAC(k, "acceptor" | nonce_d | nonce_a)
//! dialer   -> acceptor  HMAC(k, "dialer" | nonce_a | nonce_d)
//! ```
//!
//! Each side proves the secret over a nonce the other side just chose, under a label naming its
//! role (so an acceptor's answer can never be replayed as a dialer's). MACs are checked with
//! `ring::hmac::verify` (constant time). It authenticates the peer at connect time; it does not
//! encrypt or protect later frames from an on-path attacker (use mutual TLS for that).

use std::io;
use std::sync::Arc;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

/// First bytes of every handshake; not a valid frame header of any version (its length prefix
/// is far above the frame limit), so a mixed-up plaintext peer fails loudly on both sides.
pub const MAGIC: [u8; 4] = *b"PNBA";
/// Version of the handshake (independent of the frame version).
pub const AUTH_VERSION: u8 = 1;
/// Nonce and MAC length.
const N: usize = 32;
const HELLO_LEN: usize = 4 + 1 + N;
const CHALLENGE_LEN: usize = 4 + 1 + N + N;

/// How connections on the bus are authenticated.
#[derive(Clone, Default)]
pub enum BusSecurity {
    /// Anyone who can reach the port may connect (tests, trusted networks).
    #[default]
    Open,
    /// Both ends prove knowledge of a shared secret before any frame.
    Secret(Secret),
    /// Mutual TLS: both ends present certificates signed by the cluster's CA.
    Tls(BusTls),
}

impl std::fmt::Debug for BusSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BusSecurity::Open => "Open",
            BusSecurity::Secret(_) => "Secret",
            BusSecurity::Tls(_) => "Tls",
        })
    }
}

/// The rustls configurations of a mutual-TLS bus.
#[derive(Clone)]
pub struct BusTls {
    /// Accepting side; must require client certificates.
    pub server: Arc<rustls::ServerConfig>,
    /// Dialing side; must present this node's certificate.
    pub client: Arc<rustls::ClientConfig>,
}

/// A shared cluster secret (an HMAC-SHA256 key).
#[derive(Clone)]
pub struct Secret {
    key: hmac::Key,
}

/// Why a secret handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The peer does not speak the handshake (or another version of it).
    #[error("not a cluster-bus handshake")]
    Protocol,
    /// The peer's MAC is wrong: it does not know the secret.
    #[error("the peer does not know the cluster secret")]
    BadMac,
    /// The secret is unusable.
    #[error("the cluster secret is empty")]
    EmptySecret,
    /// No system randomness.
    #[error("no random nonce available")]
    Random,
    /// The connection failed or ended mid-handshake.
    #[error("handshake i/o: {0}")]
    Io(#[from] io::Error),
}

impl From<AuthError> for io::Error {
    fn from(e: AuthError) -> io::Error {
        match e {
            AuthError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
        }
    }
}

impl Secret {
    /// A secret from its bytes (e.g. a secret file's contents); empty is refused.
    pub fn new(bytes: &[u8]) -> Result<Secret, AuthError> {
        if bytes.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        Ok(Secret {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(label);
        ctx.update(first);
        ctx.update(second);
        ctx.sign()
    }

    fn verify(&self, label: &[u8], first: &[u8], second: &[u8], tag: &[u8]) -> bool {
        let mut msg = Vec::with_capacity(label.len() + first.len() + second.len());
        msg.extend_from_slice(label);
        msg.extend_from_slice(first);
        msg.extend_from_slice(second);
        hmac::verify(&self.key, &msg, tag).is_ok()
    }
}

const DIALER: &[u8] = b"pinnacle-bus dialer";
const ACCEPTOR: &[u8] = b"pinnacle-bus acceptor";

fn nonce() -> Result<[u8; N], AuthError> {
    let mut n = [0u8; N];
    SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| AuthError::Random)?;
    Ok(n)
}

fn check_header(buf: &[u8]) -> Result<(), AuthError> {
    if buf[..4] != MAGIC || buf[4] != AUTH_VERSION {
        return Err(AuthError::Protocol);
    }
    Ok(())
}

/// The dialing side of the handshake; `Ok` once the acceptor proved the secret and our proof
/// is sent (a refused proof shows up as the acceptor closing the connection).
pub async fn dial_handshake<S>(stream: &mut S, secret: &Secret) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mine = nonce()?;
    let mut hello = [0u8; HELLO_LEN];
    hello[..4].copy_from_slice(&MAGIC);
    hello[4] = AUTH_VERSION;
    hello[5..].copy_from_slice(&mine);
    stream.write_all(&hello).await?;
    let mut ch = [0u8; CHALLENGE_LEN];
    stream.read_exact(&mut ch).await?;
    check_header(&ch)?;
    let theirs = &ch[5..5 + N];
    if !secret.verify(ACCEPTOR, &mine, theirs, &ch[5 + N..]) {
        return Err(AuthError::BadMac);
    }
    let proof = secret.mac(DIALER, theirs, &mine);
    stream.write_all(proof.as_ref()).await?;
    Ok(())
}

/// The accepting side of the handshake; `Ok` only if the dialer proved the secret. Reads
/// exactly the handshake's fixed-size messages and nothing else.
pub async fn accept_handshake<S>(stream: &mut S, secret: &Secret) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; HELLO_LEN];
    stream.read_exact(&mut hello).await?;
    check_header(&hello)?;
    let theirs = &hello[5..];
    let mine = nonce()?;
    let mut ch = [0u8; CHALLENGE_LEN];
    ch[..4].copy_from_slice(&MAGIC);
    ch[4] = AUTH_VERSION;
    ch[5..5 + N].copy_from_slice(&mine);
    ch[5 + N..].copy_from_slice(secret.mac(ACCEPTOR, theirs, &mine).as_ref());
    stream.write_all(&ch).await?;
    let mut proof = [0u8; N];
    stream.read_exact(&mut proof).await?;
    if !secret.verify(DIALER, &mine, theirs, &proof) {
        return Err(AuthError::BadMac);
    }
    Ok(())
}
