//! TLS settings (Redis's `tls-*` names) and the rustls configurations built from them: the
//! client port's acceptor and the cluster bus's mutual TLS; also the bus's shared secret.
//!
//! rustls with the `ring` provider (aws-lc would need cmake and clang to build). Files are PEM.
//! Like Redis, `tls-auth-clients` defaults to `yes` (client certificates signed by
//! `tls-ca-cert-file` required), `optional` verifies a certificate only if one is sent, and a
//! CA file is required unless it is `no`.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use pinnacle_raft::transport::{BusSecurity, BusTls, Secret};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// TLS and cluster-bus security flags; each has the same name (without `--`) in the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Port for TLS client connections (0: none). `--port 0` leaves only this one.
    #[arg(long)]
    pub tls_port: Option<u16>,
    /// PEM certificate chain this server presents (client port and cluster bus).
    #[arg(long)]
    pub tls_cert_file: Option<String>,
    /// PEM private key of `--tls-cert-file`.
    #[arg(long)]
    pub tls_key_file: Option<String>,
    /// PEM CA certificates that client and peer certificates must chain to.
    #[arg(long)]
    pub tls_ca_cert_file: Option<String>,
    /// Client certificates: `yes` (required, the default), `no`, or `optional`.
    #[arg(long)]
    pub tls_auth_clients: Option<String>,
    /// `yes`: the cluster bus runs mutual TLS (every node's certificate signed by the CA).
    #[arg(long)]
    pub tls_cluster: Option<String>,
    /// Shared secret nodes prove on every cluster-bus connection (plaintext bus).
    #[arg(long)]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret (preferred: it stays out of `ps`).
    #[arg(long)]
    pub cluster_secret_file: Option<String>,
}

impl TlsArgs {
    /// `(config name, value)` for every flag given.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut put = |k, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        put("tls-port", self.tls_port.map(|p| p.to_string()));
        put("tls-cert-file", self.tls_cert_file.clone());
        put("tls-key-file", self.tls_key_file.clone());
        put("tls-ca-cert-file", self.tls_ca_cert_file.clone());
        put("tls-auth-clients", self.tls_auth_clients.clone());
        put("tls-cluster", self.tls_cluster.clone());
        put("cluster-secret", self.cluster_secret.clone());
        put("cluster-secret-file", self.cluster_secret_file.clone());
        out
    }
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A required setting is missing.
    #[error("{0}")]
    Missing(String),
    /// A file could not be read or parsed.
    #[error("{what} {path}: {msg}")]
    File {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (e.g. no usable CA certificate).
    #[error("TLS client verification: {0}")]
    Verifier(String),
    /// The cluster secret is unusable.
    #[error("cluster secret: {0}")]
    Secret(#[from] pinnacle_raft::transport::auth::AuthError),
}

// rustls deprecates ring's provider for lacking post-quantum key exchange; aws-lc-rs (which
// has it) needs cmake and clang to build, which the build machines lack.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn setting(config: &Config, name: &str) -> Option<String> {
    config.get(name).filter(|v| !v.is_empty())
}

fn required(config: &Config, name: &str, why: &str) -> Result<String, TlsError> {
    setting(config, name).ok_or_else(|| TlsError::Missing(format!("{why} needs {name}")))
}

fn load_certs(what: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |msg: String| TlsError::File {
        what,
        path: path.to_string(),
        msg,
    };
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(Path::new(path)).map_err(|e| TlsError::File {
        what: "tls-key-file",
        path: path.to_string(),
        msg: e.to_string(),
    })
}

fn load_roots(path: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs("tls-ca-cert-file", path)? {
        roots.add(c).map_err(|e| TlsError::File {
            what: "tls-ca-cert-file",
            path: path.to_string(),
            msg: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// This node's certificate chain and key.
fn identity(
    config: &Config,
    why: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert = required(config, "tls-cert-file", why)?;
    let key = required(config, "tls-key-file", why)?;
    Ok((load_certs("tls-cert-file", &cert)?, load_key(&key)?))
}

/// The client port's TLS acceptor, or `None` when `tls-port` is 0.
pub fn client_acceptor(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    if config.get_i64("tls-port").unwrap_or(0) == 0 {
        return Ok(None);
    }
    let (certs, key) = identity(config, "tls-port")?;
    let auth = config
        .get("tls-auth-clients")
        .unwrap_or_else(|| "yes".into());
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if auth == "no" {
        builder.with_no_client_auth()
    } else {
        let ca = setting(config, "tls-ca-cert-file").ok_or_else(|| {
            TlsError::Missing(
                "tls-ca-cert-file must be specified when tls-auth-clients is yes or optional"
                    .into(),
            )
        })?;
        let v = WebPkiClientVerifier::builder_with_provider(load_roots(&ca)?, provider());
        let v = if auth == "optional" {
            v.allow_unauthenticated()
        } else {
            v
        };
        builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Verifier(e.to_string()))?)
    };
    let mut cfg = builder.with_single_cert(certs, key)?;
    // redis-cli and redis-py offer no ALPN; accept whatever they send.
    cfg.alpn_protocols.clear();
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
}

/// How this node's cluster bus authenticates peers: mutual TLS with `tls-cluster yes`, else the
/// shared secret if one is set, else not at all.
pub fn bus_security(config: &Config) -> Result<BusSecurity, TlsError> {
    let secret = match (
        setting(config, "cluster-secret"),
        setting(config, "cluster-secret-file"),
    ) {
        (Some(s), _) => Some(Secret::new(s.as_bytes())?),
        (None, Some(path)) => {
            let text = std::fs::read(&path).map_err(|e| TlsError::File {
                what: "cluster-secret-file",
                path: path.clone(),
                msg: e.to_string(),
            })?;
            // A trailing newline (echo > file) is not part of the secret.
            let trimmed = text.strip_suffix(b"\n").unwrap_or(&text);
            let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
            Some(Secret::new(trimmed)?)
        }
        (None, None) => None,
    };
    if config.get("tls-cluster").as_deref() != Some("yes") {
        return Ok(secret.map_or(BusSecurity::Open, BusSecurity::Secret));
    }
    if secret.is_some() {
        tracing::warn!("tls-cluster is on: the cluster secret is not used (mutual TLS instead)");
    }
    let (certs, key) = identity(config, "tls-cluster")?;
    let ca = required(config, "tls-ca-cert-file", "tls-cluster")?;
    let roots = load_roots(&ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())?;
    let peer_verifier = PeerVerifier {
        inner: rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?,
    };
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(peer_verifier))
        .with_client_auth_cert(certs, key)?;
    Ok(BusSecurity::Tls(BusTls {
        server: Arc::new(server),
        client: Arc::new(client),
    }))
}

/// Verifies a peer node's certificate chain against the cluster CA without matching its name
/// to the dialed address, as Redis does on its cluster bus: membership is "holds a certificate
/// from the cluster's CA", and nodes are often certified by hostname but dialed by IP.
#[derive(Debug)]
struct PeerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // The chain was verified; only the name check failed.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let values = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::new(&Settings {
            values,
            config_file: None,
        })
        .expect("valid settings")
    }

    #[test]
    fn missing_files_and_ca_are_refused_like_redis() {
        assert!(client_acceptor(&config(&[])).expect("no tls").is_none());
        let e = client_acceptor(&config(&[("tls-port", "6380")])).err();
        assert!(e.is_some_and(|e| e.to_string().contains("tls-cert-file")));
        let e = client_acceptor(&config(&[
            ("tls-port", "6380"),
            ("tls-cert-file", "/nonexistent/cert.pem"),
            ("tls-key-file", "/nonexistent/key.pem"),
        ]))
        .err();
        assert!(e.is_some_and(|e| e.to_string().contains("/nonexistent/cert.pem")));
        let e = bus_security(&config(&[("tls-cluster", "yes")])).err();
        assert!(e.is_some_and(|e| e.to_string().contains("tls-cluster needs tls-cert-file")));
        assert!(Config::new(&Settings {
            values: vec![("tls-auth-clients".into(), "sometimes".into())],
            config_file: None,
        })
        .is_err());
    }

    #[test]
    fn bus_security_from_the_secret_settings() {
        assert!(matches!(
            bus_security(&config(&[])).expect("open"),
            BusSecurity::Open
        ));
        assert!(matches!(
            bus_security(&config(&[("cluster-secret", "s")])).expect("secret"),
            BusSecurity::Secret(_)
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "\n").expect("write");
        let path = file.display().to_string();
        // Only a newline: an empty secret is refused rather than accepted as "no secret".
        let e = bus_security(&config(&[("cluster-secret-file", &path)])).err();
        assert!(e.is_some_and(|e| e.to_string().contains("empty")));
        std::fs::write(&file, "abc\n").expect("write");
        assert!(matches!(
            bus_security(&config(&[("cluster-secret-file", &path)])).expect("secret"),
            BusSecurity::Secret(_)
        ));
        let e = bus_security(&config(&[("cluster-secret-file", "/nonexistent/s")])).err();
        assert!(e.is_some_and(|e| e.to_string().contains("cluster-secret-file")));
    }
}
