//! `polyport dev-certs`: a throw-away certificate authority, a server certificate for the local
//! machine and client certificates, so HTTPS and mutual TLS can be shown with curl alone.
//!
//! Everything is made with rcgen: ECDSA P-256 keys, certificates valid from an hour ago for
//! 825 days. The server certificate names `localhost`, `127.0.0.1` and `::1`; each client
//! certificate carries its name as the subject's common name (CN), which is what the auth layer
//! maps to a principal.
//!
//! Simplification, named: the CA key is written next to the certificates, unencrypted, so more
//! clients can be made later by hand. A real CA keeps its key offline (or in an HSM) and issues
//! client certificates from signing requests; never trust this CA outside a demo.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The client name `polyport dev-certs` uses when given no `--client`.
pub const DEFAULT_CLIENT: &str = "workshop-admin";

/// The organisation every generated certificate names, so they are easy to recognise.
const ORGANIZATION: &str = "polyport dev";

/// A generated set of certificates and keys, all PEM.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate (`ca.pem`): what servers trust for client certificates and clients
    /// trust for the server's.
    pub ca_pem: String,
    /// The CA's private key (`ca-key.pem`).
    pub ca_key_pem: String,
    /// The server certificate for localhost, 127.0.0.1 and ::1 (`server.pem`).
    pub server_pem: String,
    /// The server's private key (`server-key.pem`).
    pub server_key_pem: String,
    /// One certificate and key per client name.
    pub clients: Vec<ClientCert>,
}

/// One client's certificate and key.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The name: the certificate's common name and part of its file names.
    pub name: String,
    /// The certificate (`client-NAME.pem`).
    pub cert_pem: String,
    /// Its private key (`client-NAME-key.pem`).
    pub key_pem: String,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevCertsError {
    /// A client name that cannot be a file name part.
    #[error("client name {0:?}: {CLIENT_NAME_RULE}")]
    BadName(String),
    /// rcgen failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What a client name may contain (it becomes part of file names).
pub const CLIENT_NAME_RULE: &str =
    "use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'";

/// Checks a client name against [`CLIENT_NAME_RULE`].
pub fn check_client_name(name: &str) -> Result<(), DevCertsError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(DevCertsError::BadName(name.to_owned()))
    }
}

impl DevCerts {
    /// Makes a new CA, a server certificate and one client certificate per name in `clients`.
    pub fn generate(clients: &[String]) -> Result<Self, DevCertsError> {
        for name in clients {
            check_client_name(name)?;
        }
        let ca_key = KeyPair::generate()?;
        let mut ca = params(Vec::new(), "polyport dev CA")?;
        // The CA signs end-entity certificates only: no intermediate CAs below it.
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate()?;
        let names = ["localhost", "127.0.0.1", "::1"].map(str::to_owned);
        let mut server = params(names.to_vec(), "localhost")?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_pem = server.signed_by(&server_key, &issuer)?.pem();

        let clients = clients
            .iter()
            .map(|name| {
                let key = KeyPair::generate()?;
                let mut client = params(Vec::new(), name)?;
                client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                Ok(ClientCert {
                    name: name.clone(),
                    cert_pem: client.signed_by(&key, &issuer)?.pem(),
                    key_pem: key.serialize_pem(),
                })
            })
            .collect::<Result<_, rcgen::Error>>()?;
        Ok(Self {
            ca_pem,
            ca_key_pem,
            server_pem,
            server_key_pem: server_key.serialize_pem(),
            clients,
        })
    }

    /// The files this set is written as: (file name, contents, whether it is a private key).
    pub fn files(&self) -> Vec<(String, &str, bool)> {
        let mut files = vec![
            ("ca.pem".to_owned(), self.ca_pem.as_str(), false),
            ("ca-key.pem".to_owned(), self.ca_key_pem.as_str(), true),
            ("server.pem".to_owned(), self.server_pem.as_str(), false),
            (
                "server-key.pem".to_owned(),
                self.server_key_pem.as_str(),
                true,
            ),
        ];
        for client in &self.clients {
            files.push((client_file(&client.name), client.cert_pem.as_str(), false));
            files.push((client_key_file(&client.name), client.key_pem.as_str(), true));
        }
        files
    }

    /// Writes every file into `dir` (created if missing). Private keys are readable by their
    /// owner only (mode 0600 on Unix). Unless `force`, nothing is written when any of the files
    /// already exists. Returns the paths written.
    pub fn write(&self, dir: &Path, force: bool) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let files = self.files();
        if !force {
            let existing: Vec<String> = files
                .iter()
                .map(|(name, _, _)| dir.join(name))
                .filter(|path| path.exists())
                .map(|path| path.display().to_string())
                .collect();
            if let Some(first) = existing.first() {
                let what = match existing.len() {
                    1 => format!("{first} already exists"),
                    n => format!("{first} and {} more files already exist", n - 1),
                };
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{what}; pass --force to overwrite"),
                ));
            }
        }
        let mut written = Vec::with_capacity(files.len());
        for (name, contents, secret) in files {
            let path = dir.join(name);
            if force {
                // Removed, not truncated: a new file gets the mode below even if the old one
                // was readable by others.
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(if secret { 0o600 } else { 0o644 });
            }
            #[cfg(not(unix))]
            let _ = secret;
            let mut file = options.open(&path)?;
            file.write_all(contents.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }
}

/// `client-NAME.pem`
pub fn client_file(name: &str) -> String {
    format!("client-{name}.pem")
}

/// `client-NAME-key.pem`
pub fn client_key_file(name: &str) -> String {
    format!("client-{name}-key.pem")
}

/// Parameters shared by every certificate: the subject (common name and organisation), the
/// subject alternative names, and the validity period.
fn params(alt_names: Vec<String>, common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(alt_names)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, ORGANIZATION);
    subject.push(DnType::CommonName, common_name);
    params.distinguished_name = subject;
    params.use_authority_key_identifier_extension = true;
    // An hour of slack for clocks that are a little behind; 825 days is long enough for a
    // course and short enough that no client complains about the lifetime.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(Duration::from_secs(3600));
    params.not_after = epoch + now + Duration::from_secs(825 * 24 * 3600);
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::tls::ClientCertificate;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("polyport-devcerts-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn each_client_certificate_carries_its_name_as_the_common_name() {
        let certs = DevCerts::generate(&["alice".to_owned(), "bob".to_owned()]).unwrap();
        let names: Vec<_> = certs
            .clients
            .iter()
            .map(|client| {
                let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
                let identity = ClientCertificate::from_der(&der).unwrap();
                assert_eq!(
                    identity.subject,
                    format!("CN={},O=polyport dev", client.name)
                );
                identity.common_name.unwrap()
            })
            .collect();
        assert_eq!(names, ["alice", "bob"]);
    }

    #[test]
    fn client_names_that_are_not_plain_file_name_parts_are_refused() {
        for name in ["", "../etc", "a/b", ".hidden", "-flag", "with space"] {
            assert!(DevCerts::generate(&[name.to_owned()]).is_err(), "{name:?}");
        }
        for name in [DEFAULT_CLIENT, "svc.orders_2"] {
            assert!(check_client_name(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn existing_files_are_not_overwritten_without_force_and_keys_are_private() {
        let dir = temp_dir();
        let first = DevCerts::generate(&[DEFAULT_CLIENT.to_owned()]).unwrap();
        let written = first.write(&dir, false).unwrap();
        assert_eq!(written.len(), 6);

        let second = DevCerts::generate(&[DEFAULT_CLIENT.to_owned()]).unwrap();
        let error = second.write(&dir, false).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(error.to_string().contains("--force"), "{error}");
        let on_disk = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        assert_eq!(on_disk, first.ca_pem, "nothing was overwritten");

        second.write(&dir, true).unwrap();
        let on_disk = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        assert_eq!(on_disk, second.ca_pem, "--force overwrites");

        #[cfg(unix)]
        for (name, _, secret) in second.files() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(&name))
                .unwrap()
                .permissions()
                .mode();
            let expected = if secret { 0o600 } else { 0o644 };
            assert_eq!(mode & 0o777 & !0o022, expected & !0o022, "{name}");
            if secret {
                assert_eq!(mode & 0o077, 0, "{name} is readable by others");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
