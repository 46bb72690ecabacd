//! TLS for the client's connections (`https://`, `wss://`): rustls with the ring provider.
//!
//! Certificates are verified by default against the system's trusted CAs (rustls-native-certs:
//! `/etc/ssl/certs` on Debian; `SSL_CERT_FILE` / `SSL_CERT_DIR` override it), or against the
//! CAs of one PEM file instead. Verification can be turned off. A failed handshake becomes a
//! [`TlsError`] that names the cause (unknown issuer, wrong host name, expiry) in words.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::PemError;

/// How to verify the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Verify the certificate chain and the host name (off: accept any certificate).
    pub verify: bool,
    /// Trust the CAs in this PEM file instead of the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            verify: true,
            ca_file: None,
        }
    }
}

/// Errors of the TLS layer: setting it up, and the handshake.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {detail}")]
    CaFile { path: PathBuf, detail: String },
    #[error("no certificate in CA file {0}")]
    EmptyCaFile(PathBuf),
    #[error("no trusted CA certificates in the system store{0}")]
    SystemStore(String),
    #[error("TLS setup failed: {0}")]
    Setup(String),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS certificate verify failed: unknown issuer (the server's certificate does not chain to a trusted CA)")]
    UnknownIssuer,
    #[error("TLS certificate verify failed: certificate not valid for host '{host}'{}", presented_names(.presented))]
    NameMismatch {
        host: String,
        presented: Vec<String>,
    },
    #[error("TLS certificate verify failed: certificate expired{}", since(" (not valid after ", .not_after))]
    Expired { not_after: Option<UnixTime> },
    #[error("TLS certificate verify failed: certificate not valid yet{}", since(" (not valid before ", .not_before))]
    NotYetValid { not_before: Option<UnixTime> },
    #[error("TLS certificate verify failed: certificate revoked")]
    Revoked,
    #[error("TLS certificate verify failed: {0}")]
    BadCertificate(rustls::Error),
    #[error("TLS handshake failure with {host}: {detail}")]
    Handshake { host: String, detail: String },
}

fn presented_names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = names.iter().map(|n| readable_name(n)).collect();
        format!(" (it is for {})", names.join(", "))
    }
}

/// webpki reports the certificate's names in their `Debug` form (`DnsName("example.org")`,
/// `IpAddress(10.0.0.1)`): the name alone reads better. Other kinds stay as they are.
fn readable_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

fn since(prefix: &str, time: &Option<UnixTime>) -> String {
    time.map_or_else(String::new, |t| format!("{prefix}{})", utc_string(t)))
}

/// `YYYY-MM-DD HH:MM:SS UTC` (days to civil date: Howard Hinnant's algorithm).
fn utc_string(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Makes TLS client connections with one configuration (cheap to clone).
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl TlsConnector {
    /// Loads the trusted CAs (the system's, or `ca_file`'s) and builds the configuration.
    pub fn new(options: &TlsOptions) -> Result<TlsConnector, TlsError> {
        let provider = crate::tls::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let config = if options.verify {
            let roots = match &options.ca_file {
                Some(path) => ca_file_roots(path)?,
                None => system_roots()?,
            };
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        };
        Ok(TlsConnector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake on `tcp`, for server name `host` (a DNS name or an IP address).
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::ServerName(host.to_owned()))?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| handshake_error(host, e))
    }
}

fn ca_file_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let certs = crate::tls::read_certificates(path).map_err(|e| match e {
        PemError::NoCertificate(p) => TlsError::EmptyCaFile(p),
        PemError::Unreadable { path, detail } => TlsError::CaFile { path, detail },
        PemError::NoPrivateKey(p) => TlsError::EmptyCaFile(p),
    })?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::CaFile {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // A store usually holds a few certificates rustls cannot use; the rest are enough.
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(String::new, |e| format!(": {e}"));
        return Err(TlsError::SystemStore(why));
    }
    Ok(roots)
}

/// What went wrong in a handshake, from the rustls error inside tokio-rustls's `io::Error`.
fn handshake_error(host: &str, err: io::Error) -> TlsError {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TlsError::Handshake {
            host: host.to_owned(),
            detail: err.to_string(),
        };
    };
    let rustls::Error::InvalidCertificate(cert) = tls else {
        let detail = match tls {
            rustls::Error::InvalidMessage(_) => {
                format!("{tls} (is the server speaking TLS on that port?)")
            }
            other => other.to_string(),
        };
        return TlsError::Handshake {
            host: host.to_owned(),
            detail,
        };
    };
    match cert {
        CertificateError::UnknownIssuer => TlsError::UnknownIssuer,
        CertificateError::NotValidForName => TlsError::NameMismatch {
            host: host.to_owned(),
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext { presented, .. } => TlsError::NameMismatch {
            host: host.to_owned(),
            presented: presented.clone(),
        },
        CertificateError::Expired => TlsError::Expired { not_after: None },
        CertificateError::ExpiredContext { not_after, .. } => TlsError::Expired {
            not_after: Some(*not_after),
        },
        CertificateError::NotValidYet => TlsError::NotYetValid { not_before: None },
        CertificateError::NotValidYetContext { not_before, .. } => TlsError::NotYetValid {
            not_before: Some(*not_before),
        },
        CertificateError::Revoked => TlsError::Revoked,
        _ => TlsError::BadCertificate(tls.clone()),
    }
}

/// `verify = false`: any certificate is accepted; the handshake signatures are still checked,
/// so the connection is at least encrypted to whoever holds the presented key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client connection's byte stream: plain TCP, or TLS over TCP.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(
            utc_string(UnixTime::since_unix_epoch(std::time::Duration::ZERO)),
            "1970-01-01 00:00:00 UTC"
        );
        // 2000-02-29 12:34:56 UTC (a leap day)
        assert_eq!(
            utc_string(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                951_827_696
            ))),
            "2000-02-29 12:34:56 UTC"
        );
    }

    #[test]
    fn certificate_errors_are_named() {
        let wrap = |e: CertificateError| {
            handshake_error(
                "127.0.0.1",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(e),
                ),
            )
            .to_string()
        };
        assert!(wrap(CertificateError::UnknownIssuer).contains("unknown issuer"));
        let msg = wrap(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap(),
            presented: vec![
                "DnsName(\"example.org\")".into(),
                "IpAddress(10.0.0.1)".into(),
                "DirectoryName".into(),
            ],
        });
        assert!(
            msg.contains(
                "not valid for host '127.0.0.1' (it is for example.org, 10.0.0.1, DirectoryName)"
            ),
            "{msg}"
        );
        assert!(wrap(CertificateError::Expired).contains("certificate expired"));
        let plain = handshake_error("h", io::Error::other("reset"));
        assert_eq!(plain.to_string(), "TLS handshake failure with h: reset");
    }

    #[test]
    fn missing_and_empty_ca_files_are_reported() {
        let options = TlsOptions {
            verify: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
        };
        let err = TlsConnector::new(&options).unwrap_err();
        assert!(matches!(err, TlsError::CaFile { .. }), "{err}");
        let empty =
            std::env::temp_dir().join(format!("ferrosio-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, b"not a certificate\n").unwrap();
        let err = TlsConnector::new(&TlsOptions {
            verify: true,
            ca_file: Some(empty.clone()),
        })
        .unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(matches!(err, TlsError::EmptyCaFile(_)), "{err}");
    }

    #[test]
    fn unverified_config_builds() {
        TlsConnector::new(&TlsOptions {
            verify: false,
            ca_file: None,
        })
        .unwrap();
    }
}
