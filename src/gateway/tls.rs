//! HTTPS and mutual TLS on the one port: the rustls server configuration built from `[tls]`,
//! and the identity a client certificate gives a connection.
//!
//! With TLS on, every connection must start with a TLS handshake (there is no plaintext
//! fallback on the same port). ALPN offers `h2` and `http/1.1`; hyper-util's `auto` builder then
//! tells the two apart by the HTTP/2 preface exactly as it does over cleartext, so gRPC, GraphQL,
//! REST and the streaming protocols work unchanged over TLS.
//!
//! Mutual TLS: with `client_ca_file` set, the server asks each client for a certificate and
//! rustls' webpki verifier checks it against those CAs (chain, validity dates, the client-auth
//! extended key usage) during the handshake, before any HTTP is read. A verified certificate
//! becomes a [`ClientCertificate`] (subject, common name, fingerprint) that
//! `gateway::serve` puts in the extensions of every request on that connection; mapping it to a
//! principal is the auth layer's job, not this module's.
//!
//! Simplifications, named: no certificate revocation lists or OCSP (a production deployment
//! passes CRLs to the verifier), and certificates are read once at start-up (no hot reload: a
//! renewed certificate needs a restart).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use x509_parser::asn1_rs::ToDer;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::config::{ClientAuth, TlsConfig};
use crate::gateway::random::hex;

/// A TLS listener's settings, ready to use: what `gateway::serve` needs to wrap each
/// accepted connection.
#[derive(Clone)]
pub struct Tls {
    /// Performs the server side of the handshake.
    pub acceptor: TlsAcceptor,
    /// How long a handshake may take before the connection is dropped.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate, key and client CAs named by `config`. `Ok(None)` when TLS is off
    /// (no certificate configured): the port then speaks plaintext.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Self>, TlsError> {
        if !config.enabled() {
            return Ok(None);
        }
        Ok(Some(Self {
            acceptor: TlsAcceptor::from(server_config(config)?),
            handshake_timeout: config.handshake_timeout,
        }))
    }
}

/// The rustls server configuration for `config` (which must have TLS enabled): the ring
/// provider, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, and client certificate verification
/// when `client_ca_file` is set.
pub fn server_config(config: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    // The provider is named rather than taken from a process-wide default, so nothing depends
    // on which rustls backends other crates happen to compile in.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates(&config.cert_file, "tls.cert_file")?;
    let key = read_key(&config.key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "choosing protocol versions",
            source,
        })?;
    let builder = if config.client_ca_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(client_verifier(
            &config.client_ca_file,
            config.client_auth,
            provider,
        )?)
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "pairing tls.cert_file with tls.key_file (does the key belong to the certificate?)",
            source,
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

fn client_verifier(
    path: &Path,
    mode: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, "tls.client_ca_file")? {
        roots.add(certificate).map_err(|source| TlsError::Rustls {
            what: "adding a CA certificate from tls.client_ca_file",
            source,
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match mode {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    builder.build().map_err(TlsError::Verifier)
}

fn read_file(path: &Path, field: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field,
        path: path.to_owned(),
        source,
    })
}

fn read_certificates(
    path: &Path,
    field: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path, field)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            field,
            path: path.to_owned(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Missing {
            field,
            path: path.to_owned(),
            what: "no CERTIFICATE block",
        });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let field = "tls.key_file";
    let pem = read_file(path, field)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            field,
            path: path.to_owned(),
            what: "no PRIVATE KEY block (PKCS#8, RSA or EC)",
        },
        source => TlsError::Pem {
            field,
            path: path.to_owned(),
            source,
        },
    })
}

/// Why the TLS configuration could not be loaded. Every variant names the `[tls]` field and
/// file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{field}: cannot read {path}: {source}", path = .path.display())]
    Read {
        /// The `[tls]` field that names the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{field}: {path} is not valid PEM: {source}", path = .path.display())]
    Pem {
        /// The `[tls]` field that names the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// A file holds no item of the expected kind.
    #[error("{field}: {path} has {what}", path = .path.display())]
    Missing {
        /// The `[tls]` field that names the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the certificates or key.
    #[error("TLS configuration: {what}: {source}")]
    Rustls {
        /// The step that failed.
        what: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built from tls.client_ca_file.
    #[error("tls.client_ca_file: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
}

impl From<TlsError> for std::io::Error {
    fn from(error: TlsError) -> Self {
        let kind = match &error {
            TlsError::Read { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, error)
    }
}

/// The verified certificate a client presented during the TLS handshake. `gateway::serve`
/// inserts it into the extensions of every request on that connection (absent on plaintext
/// connections and when the client presented none, which `client_auth = "optional"` allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject distinguished name as an RFC 4514 string, most specific part first, e.g.
    /// `CN=workshop-admin,O=polyport dev`.
    pub subject: String,
    /// The subject's (first) common name, if it has one and it is a string: usually the name
    /// to map to a principal.
    pub common_name: Option<String>,
    /// SHA-256 of the certificate's DER bytes, lower-case hex without separators (`openssl
    /// x509 -noout -fingerprint -sha256` prints the same digits upper-case with colons).
    pub fingerprint_sha256: String,
}

impl ClientCertificate {
    /// Reads the subject and fingerprint of a DER certificate. rustls has already verified it;
    /// this only extracts names.
    pub fn from_der(
        der: &[u8],
    ) -> Result<Self, x509_parser::nom::Err<x509_parser::error::X509Error>> {
        let (_, certificate) = X509Certificate::from_der(der)?;
        let subject = certificate.subject();
        Ok(Self {
            subject: rfc4514(subject),
            common_name: subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            fingerprint_sha256: hex(&Sha256::digest(der)),
        })
    }
}

/// Whether a request arrived over TLS, and from where. `gateway::serve` inserts it into every
/// request's extensions, on plaintext connections too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address (the TCP peer: no proxy headers are trusted).
    pub peer: std::net::SocketAddr,
    /// True when the connection is TLS (the request's scheme is `https`).
    pub tls: bool,
}

/// Formats a distinguished name as RFC 4514 does: relative names in reverse order (the most
/// specific first), separated by commas, multi-valued ones joined with `+`, special characters
/// escaped. Attribute types without a short name are written as dotted OIDs, and values that
/// are not strings as `#` and the hex of their DER encoding.
fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attribute.attr_type().to_id_string();
            out.push_str(short_name(&oid).unwrap_or(&oid));
            out.push('=');
            match attribute.as_str() {
                Ok(value) => escape_value(value, &mut out),
                Err(_) => {
                    out.push('#');
                    let der = attribute.attr_value().to_der_vec().unwrap_or_default();
                    out.push_str(&hex(&der));
                }
            }
        }
    }
    out
}

/// The short names RFC 4514 section 3 lists (plus `emailAddress`, which OpenSSL prints).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 4514 section 2.4: backslash before `"+,;<>\`, a leading `#` or space and a trailing
/// space; control characters NUL as `\00`.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn certificate_with(subject: DistinguishedName) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = subject;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_is_written_most_specific_first_with_its_common_name() {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CountryName, "NL");
        subject.push(DnType::OrganizationName, "polyport dev");
        subject.push(DnType::CommonName, "workshop-admin");
        let der = certificate_with(subject);
        let certificate = ClientCertificate::from_der(&der).unwrap();
        assert_eq!(certificate.subject, "CN=workshop-admin,O=polyport dev,C=NL");
        assert_eq!(certificate.common_name.as_deref(), Some("workshop-admin"));
        assert_eq!(certificate.fingerprint_sha256, hex(&Sha256::digest(&der)));
        assert_eq!(certificate.fingerprint_sha256.len(), 64);
    }

    #[test]
    fn a_subject_without_a_common_name_has_none() {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "no names here");
        let certificate = ClientCertificate::from_der(&certificate_with(subject)).unwrap();
        assert_eq!(certificate.subject, "O=no names here");
        assert_eq!(certificate.common_name, None);
    }

    #[test]
    fn special_characters_in_names_are_escaped() {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, "#a, b+c; \"d\" <e> \\f ");
        let certificate = ClientCertificate::from_der(&certificate_with(subject)).unwrap();
        assert_eq!(certificate.subject, r#"CN=\#a\, b\+c\; \"d\" \<e\> \\f\ "#);
        // The common name is the value itself, unescaped.
        assert_eq!(
            certificate.common_name.as_deref(),
            Some("#a, b+c; \"d\" <e> \\f ")
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(ClientCertificate::from_der(b"not a certificate").is_err());
    }

    #[test]
    fn start_up_errors_name_the_field_and_the_file() {
        let dir = std::env::temp_dir().join(format!("polyport-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = crate::devcerts::DevCerts::generate(&["alice".to_owned()]).unwrap();
        certs.write(&dir, false).unwrap();
        let other = crate::devcerts::DevCerts::generate(&[]).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let foreign_key = dir.join("foreign-key.pem");
        std::fs::write(&foreign_key, &other.server_key_pem).unwrap();

        let good = TlsConfig {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
            client_ca_file: dir.join("ca.pem"),
            ..TlsConfig::default()
        };
        assert!(Tls::from_config(&good).unwrap().is_some());
        assert!(Tls::from_config(&TlsConfig::default()).unwrap().is_none());

        let cases: [(&str, TlsConfig, &str); 5] = [
            (
                "missing certificate",
                TlsConfig {
                    cert_file: dir.join("nope.pem"),
                    ..good.clone()
                },
                "tls.cert_file: cannot read",
            ),
            (
                "broken PEM",
                TlsConfig {
                    cert_file: not_pem.clone(),
                    ..good.clone()
                },
                "tls.cert_file:",
            ),
            (
                "no key in the key file",
                TlsConfig {
                    key_file: dir.join("server.pem"),
                    ..good.clone()
                },
                "tls.key_file:",
            ),
            (
                "a key of another certificate",
                TlsConfig {
                    key_file: foreign_key,
                    ..good.clone()
                },
                "does the key belong to the certificate?",
            ),
            (
                "an empty CA file",
                TlsConfig {
                    client_ca_file: empty,
                    ..good.clone()
                },
                "tls.client_ca_file:",
            ),
        ];
        for (case, config, expected) in cases {
            let error = Tls::from_config(&config).expect_err(case).to_string();
            assert!(error.contains(expected), "{case}: {error}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
