//! TLS between cssc and a storage's daemon, and between daemons (docs/runtime.md,
//! "Links between sites"). A storage's credentials come from the run-time file:
//! cssc's own side (the site's CA, the certificate and key it presents to the QMP
//! monitor) and the daemon's (the directory QEMU's `tls-creds-x509` reads, the DN its
//! certificate carries when it reaches another site's exports). The monitor is spoken
//! to through rustls, mutually: the daemon's certificate is verified against the CA
//! and its name, and cssc's is presented for the daemon's `tls-authz`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A storage's TLS credentials, as its `[storage.ID.tls]` table says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// cssc's side of a `tcp:` monitor (a `unix:` one is local: no TLS).
    pub monitor: Option<Credentials>,
    /// The name the daemon's certificate carries; default: the endpoint's host.
    pub hostname: Option<String>,
    /// On the daemon's host: the directory its `tls-creds-x509` objects read
    /// (`ca-cert.pem`, `server-cert.pem`, `server-key.pem`, `client-cert.pem`,
    /// `client-key.pem`).
    pub daemon_dir: String,
    /// The DN of the daemon's client certificate (`client-cert.pem`), which the
    /// target daemons' `tls-authz` lets reach their exports.
    pub identity: String,
}

/// On this host: the CA that signed the daemon's certificate, and the certificate
/// and key cssc presents to its monitor (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How long before a certificate's end `check-config` warns.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why TLS to a storage cannot be set up, or a certificate is not fit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} holds no PEM private key", .0.display())]
    NoKey(PathBuf),
    #[error("`{0}` is not a name or address a certificate can carry")]
    BadName(String),
    #[error("TLS set-up refused: {0}")]
    Setup(#[source] rustls::Error),
    /// The certificate does not verify against the CA (another CA, or expired).
    #[error("{} does not verify against {}: {reason}", .cert.display(), .ca.display())]
    Unverified {
        cert: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error("{} expires within {} days", .0.display(), EXPIRY_WARNING.as_secs() / 86400)]
    ExpiresSoon(PathBuf),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(TlsError::Setup)?;
    }
    Ok(roots)
}

/// ring, the provider ureq's webhooks already use (one TLS stack in the binary).
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange, which QEMU's
/// gnutls monitors do not offer either.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Credentials {
    /// The client side of a monitor connection to a daemon whose certificate carries
    /// `name`.
    pub fn client(&self, name: &str) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsError> {
        let server = ServerName::try_from(crate::address::bare_host(name).to_string())
            .map_err(|_| TlsError::BadName(name.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?)
            .map_err(|_| TlsError::NoKey(self.key.clone()))?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_root_certificates(roots(&self.ca)?)
            .with_client_auth_cert(certificates(&self.cert)?, key)
            .map_err(TlsError::Setup)?;
        Ok((Arc::new(config), server))
    }

    /// Whether cssc's own certificate verifies against the CA now and still will in
    /// `EXPIRY_WARNING` (check-config).
    pub fn check(&self) -> Result<(), TlsError> {
        check_chain(&self.cert, &self.ca)
    }
}

/// Whether the first certificate of `cert` verifies against `ca` now, and still will
/// in `EXPIRY_WARNING`: as a client certificate (a monitor's `tls-authz` sees it).
pub fn check_chain(cert: &Path, ca: &Path) -> Result<(), TlsError> {
    let chain = certificates(cert)?;
    let roots = roots(ca)?;
    let algorithms = provider().signature_verification_algorithms;
    let verify = |at: SystemTime| {
        let end = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| e.to_string())?;
        end.verify_for_usage(
            algorithms.all,
            &roots.roots,
            &chain[1..],
            UnixTime::since_unix_epoch(
                at.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let now = SystemTime::now();
    verify(now).map_err(|reason| TlsError::Unverified {
        cert: cert.to_path_buf(),
        ca: ca.to_path_buf(),
        reason,
    })?;
    verify(now + EXPIRY_WARNING).map_err(|_| TlsError::ExpiresSoon(cert.to_path_buf()))
}

/// A TLS connection to a monitor, readable by one thread while another writes. The
/// connection's state is shared under one lock, held only to feed it what the socket
/// brought or to take what it has to send: never across socket I/O, so a writer
/// blocked on a full socket cannot keep the reader from draining the daemon's
/// replies (with many pipelined commands, each side would wait on the other). Writes
/// to the socket take a second lock, `send`, first, so records go out in the order
/// they were made.
pub struct TlsStream {
    tcp: TcpStream,
    shared: Arc<Mutex<Shared>>,
    send: Arc<Mutex<()>>,
}

struct Shared {
    conn: ClientConnection,
    /// Bytes read from the socket that the connection has not taken yet.
    raw: Vec<u8>,
}

impl TlsStream {
    /// The handshake over `tcp` (bounded by its timeouts).
    pub fn handshake(
        mut tcp: TcpStream,
        config: Arc<ClientConfig>,
        server: ServerName<'static>,
    ) -> std::io::Result<TlsStream> {
        let mut conn = ClientConnection::new(config, server).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(TlsStream {
            tcp,
            shared: Arc::new(Mutex::new(Shared {
                conn,
                raw: Vec::new(),
            })),
            send: Arc::default(),
        })
    }

    pub fn try_clone(&self) -> std::io::Result<TlsStream> {
        Ok(TlsStream {
            tcp: self.tcp.try_clone()?,
            shared: Arc::clone(&self.shared),
            send: Arc::clone(&self.send),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Sends what the connection has to send (after `data`, if any), in order.
    fn flush_records(&self, data: &[u8]) -> std::io::Result<()> {
        let _order = self.send.lock().expect("tls send");
        let records = {
            let mut shared = self.shared.lock().expect("tls");
            if !data.is_empty() {
                shared.conn.writer().write_all(data)?;
            }
            let mut records = Vec::new();
            while shared.conn.wants_write() {
                shared.conn.write_tls(&mut records)?;
            }
            records
        };
        (&self.tcp).write_all(&records)
    }
}

impl Read for TlsStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let replies = {
                let mut shared = self.shared.lock().expect("tls");
                let Shared { conn, raw } = &mut *shared;
                while !raw.is_empty() {
                    // Refused while the plaintext it holds is not read: read it first.
                    let Ok(taken) = conn.read_tls(&mut &raw[..]) else {
                        break;
                    };
                    raw.drain(..taken);
                    conn.process_new_packets()
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    if taken == 0 {
                        break;
                    }
                }
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                conn.wants_write()
            };
            // What the protocol answers by itself (a key update, an alert).
            if replies {
                self.flush_records(&[])?;
            }
            let n = self.tcp.read(&mut buf)?;
            if n == 0 {
                return Ok(0);
            }
            self.shared
                .lock()
                .expect("tls")
                .raw
                .extend_from_slice(&buf[..n]);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.flush_records(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
