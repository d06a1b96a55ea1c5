//! Certificates for a laboratory whose links speak TLS, made with the `openssl`
//! command (Debian: openssl): a CA, and certificates it signs for daemons (QEMU's
//! `tls-creds-x509` directory layout), for cssc and for an application.

use super::{tool, LabError};
use std::path::{Path, PathBuf};

/// A certificate authority in a directory (`ca-cert.pem`, `ca-key.pem`).
pub struct Pki {
    pub dir: PathBuf,
}

/// A certificate and its key.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The DN QEMU's `tls-authz` matches for a certificate this lab issued for `cn`:
/// gnutls's form, the subject's RDNs in their own order (`/O=cssc-lab/CN=cn`), not
/// RFC 4514's reversed one (measured: `CN=cn,O=cssc-lab` is refused).
pub fn dn(cn: &str) -> String {
    format!("O=cssc-lab,CN={cn}")
}

/// The name a lab certificate for `cn` carries (besides 127.0.0.1).
pub fn hostname(cn: &str) -> String {
    format!("{cn}.cssc.test")
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

impl Pki {
    /// A new CA named `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Result<Pki, LabError> {
        std::fs::create_dir_all(dir).map_err(super::io(format!("create {}", dir.display())))?;
        tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &text(&dir.join("ca-key.pem")),
                "-out",
                &text(&dir.join("ca-cert.pem")),
                "-days",
                "365",
                "-subj",
                &format!("/O=cssc-lab/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )?;
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca-cert.pem")
    }

    /// A certificate for `cn` (server and client use, `hostname(cn)` and 127.0.0.1),
    /// valid for `days`, written as `cert` and `key`.
    pub fn issue(&self, cn: &str, days: u32, cert: &Path, key: &Path) -> Result<Issued, LabError> {
        let request = cert.with_extension("csr");
        let extensions = cert.with_extension("ext");
        std::fs::write(
            &extensions,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:{},IP:127.0.0.1\n",
                hostname(cn)
            ),
        )
        .map_err(super::io(format!("write {}", extensions.display())))?;
        tool(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &text(key),
                "-out",
                &text(&request),
                "-subj",
                &format!("/O=cssc-lab/CN={cn}"),
            ],
        )?;
        tool(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &text(&request),
                "-CA",
                &text(&self.ca()),
                "-CAkey",
                &text(&self.dir.join("ca-key.pem")),
                "-CAcreateserial",
                "-CAserial",
                &text(&self.dir.join("ca.srl")),
                "-days",
                &days.to_string(),
                "-extfile",
                &text(&extensions),
                "-out",
                &text(cert),
            ],
        )?;
        Ok(Issued {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// A daemon's `tls-creds-x509` directory for `cn`: this CA, and one certificate
    /// it serves and reaches other sites with.
    pub fn daemon_dir(&self, cn: &str) -> Result<PathBuf, LabError> {
        let dir = self.dir.join(cn);
        std::fs::create_dir_all(&dir).map_err(super::io(format!("create {}", dir.display())))?;
        let issued = self.issue(
            cn,
            365,
            &dir.join("server-cert.pem"),
            &dir.join("server-key.pem"),
        )?;
        for (from, to) in [
            (self.ca(), "ca-cert.pem"),
            (issued.cert, "client-cert.pem"),
            (issued.key, "client-key.pem"),
        ] {
            std::fs::copy(&from, dir.join(to))
                .map_err(super::io(format!("copy {}", from.display())))?;
        }
        Ok(dir)
    }
}
