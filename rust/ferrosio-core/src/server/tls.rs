//! TLS on the server's listener: the certificate and key (and, optionally, the CAs whose
//! client certificates are required), loaded once at start so that a missing, unreadable or
//! mismatched file is an error of `ServerHandle::start`, not of the first connection.
//! ALPN offers `http/1.1` only: the front door speaks HTTP/1.1.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig as RustlsServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerTls;
use crate::tls::{provider, read_certificates, read_private_key, PemError};

/// Why the server's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("TLS certificate or key: {0}")]
    Pem(#[from] PemError),
    #[error("TLS certificate {cert} does not match key {key}: {detail}")]
    KeyMismatch {
        cert: String,
        key: String,
        detail: String,
    },
    #[error("TLS client CA file {path}: {detail}")]
    ClientCa { path: String, detail: String },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// The acceptor for `tls`'s files.
pub(super) fn acceptor(tls: &ServerTls) -> Result<TlsAcceptor, ServerTlsError> {
    let certs = read_certificates(&tls.cert_file)?;
    let key = read_private_key(&tls.key_file)?;
    let provider = provider();
    let builder = RustlsServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerTlsError::Setup(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let client_ca = |detail: String| ServerTlsError::ClientCa {
                path: path.display().to_string(),
                detail,
            };
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(path).map_err(|e| client_ca(e.to_string()))? {
                roots.add(cert).map_err(|e| client_ca(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| client_ca(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // with_single_cert checks that the key is the certificate's (rustls 0.23: keys_match).
    let mut config =
        builder
            .with_single_cert(certs, key)
            .map_err(|e| ServerTlsError::KeyMismatch {
                cert: tls.cert_file.display().to_string(),
                key: tls.key_file.display().to_string(),
                detail: e.to_string(),
            })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
