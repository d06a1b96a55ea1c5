//! A laboratory of real storage: one qemu-storage-daemon per site in a scratch
//! directory, raw volumes as block nodes, an NBD server on each (TCP on 127.0.0.1, as
//! sites talk in production, so a hung site's connections can be destroyed), source
//! volumes exported for an application's writes. Used by `demo` and by the tests.
//! A secure lab ([`Lab::secure`]) speaks TLS on every TCP link: its monitors on TCP
//! and its NBD servers take only certificates of its CA and DNs they know; a site
//! without sources has no NBD server of its own (a session starts one).

pub mod pki;

use crate::address::Address;
use crate::plan::Plan;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Site {
    /// The monitor cssc uses.
    pub qmp: PathBuf,
    /// A third monitor on TCP (127.0.0.1), for sessions that reach the daemon over TCP.
    pub qmp_port: u16,
    /// A second monitor, the administrator's (a monitor serves one client at a time).
    pub admin: PathBuf,
    /// The NBD server's port on 127.0.0.1.
    pub nbd_port: u16,
    /// Whether the daemon starts its own NBD server (a secure lab's target site does
    /// not: the session starts one).
    serves_nbd: bool,
    child: Option<Child>,
    args: Vec<String>,
}

pub struct Lab {
    pub dir: PathBuf,
    pub sites: BTreeMap<String, Site>,
    /// Every volume's image file, by (site, volume).
    pub images: BTreeMap<(String, String), PathBuf>,
    /// A secure lab's certificates.
    pub tls: Option<Secure>,
    keep: bool,
}

/// A secure lab's CA, and the certificates of cssc and of the application.
pub struct Secure {
    pub pki: pki::Pki,
    pub cssc: pki::Issued,
    pub app: pki::Issued,
}

/// Why the lab could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    #[error("cannot run {program} (Debian: apt-get install qemu-utils): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed: its command line and what it said.
    #[error("{command}: {said}")]
    Tool { command: String, said: String },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no site {0}")]
    NoSite(String),
    #[error("site {0} still runs")]
    StillRuns(String),
    #[error("site {0} has no daemon")]
    NoDaemon(String),
    #[error("qemu-storage-daemon did not open {} in 10 s", .0.display())]
    NotListening(PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    |source| LabError::Io { what, source }
}

fn tool(program: &str, args: &[&str]) -> Result<String, LabError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        // qemu-io says why a request failed on stdout, not stderr.
        Err(LabError::Tool {
            command: format!("{program} {}", args.join(" ")),
            said: format!(
                "{} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        })
    }
}

/// Fills a file with `bytes` of pseudo-random data (xorshift: fast, not secret).
fn fill_random(path: &Path, bytes: u64, seed: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut state = seed | 1;
    let mut file = std::io::BufWriter::new(std::fs::OpenOptions::new().write(true).open(path)?);
    let mut block = vec![0u8; 1 << 16];
    for _ in 0..bytes / block.len() as u64 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block)?;
    }
    file.flush()
}

impl Lab {
    /// A lab in a new scratch directory under `parent`; removed on drop unless `keep`.
    pub fn new(parent: &Path, keep: bool) -> Result<Lab, LabError> {
        // Unique within the process too: tests create labs in parallel.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!("cssc-lab-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        Ok(Lab {
            dir,
            sites: BTreeMap::new(),
            images: BTreeMap::new(),
            tls: None,
            keep,
        })
    }

    /// Makes the sites added from now on speak TLS: a CA, and certificates for cssc
    /// (`cssc`) and the application (`app`).
    pub fn secure(&mut self) -> Result<(), LabError> {
        let dir = self.dir.join("pki");
        let pki = pki::Pki::new(&dir, "cssc lab CA")?;
        let cssc = pki.issue(
            "cssc",
            365,
            &dir.join("cssc-cert.pem"),
            &dir.join("cssc-key.pem"),
        )?;
        let app = pki.daemon_dir("app")?;
        let app = pki::Issued {
            cert: app.join("client-cert.pem"),
            key: app.join("client-key.pem"),
        };
        self.tls = Some(Secure { pki, cssc, app });
        Ok(())
    }

    /// The arguments of a secure site's daemon: its credentials; its TCP monitor over
    /// TLS for cssc's certificate only; an NBD server (when it has sources) over TLS
    /// for the application and every site.
    fn secure_args(
        &self,
        site: &str,
        qmp_port: u16,
        nbd_port: Option<u16>,
        others: &[String],
    ) -> Result<Vec<String>, LabError> {
        let Some(secure) = &self.tls else {
            return Ok(Vec::new());
        };
        let dir = secure.pki.daemon_dir(site)?;
        let mut args = vec![
            "--object".to_string(),
            format!(
                "tls-creds-x509,id=lab-tls,dir={},endpoint=server,verify-peer=on",
                dir.display()
            ),
            "--object".into(),
            // QEMU's option syntax doubles a comma inside a value.
            format!("authz-simple,id=lab-monitor,identity={}", pki::dn("cssc").replace(',', ",,")),
            "--chardev".into(),
            format!("socket,id=qmptcp,host=127.0.0.1,port={qmp_port},server=on,wait=off,tls-creds=lab-tls,tls-authz=lab-monitor"),
            "--monitor".into(),
            "chardev=qmptcp,mode=control".into(),
        ];
        if let Some(port) = nbd_port {
            let rules: Vec<serde_json::Value> = others
                .iter()
                .map(String::as_str)
                .chain(["app"])
                .map(|cn| serde_json::json!({ "match": pki::dn(cn), "policy": "allow" }))
                .collect();
            args.extend([
                "--object".into(),
                serde_json::json!({ "qom-type": "authz-list", "id": "lab-nbd", "policy": "deny", "rules": rules }).to_string(),
                "--nbd-server".into(),
                format!("addr.type=inet,addr.host=127.0.0.1,addr.port={port},max-connections=0,tls-creds=lab-tls,tls-authz=lab-nbd"),
            ]);
        }
        Ok(args)
    }

    /// Creates the raw images of `volumes` (name, bytes) that do not exist yet.
    fn create(&mut self, site: &str, volumes: &[(String, u64)]) -> Result<(), LabError> {
        for (name, bytes) in volumes {
            let image = self.dir.join(format!("{site}-{name}.img"));
            if !image.exists() {
                tool(
                    "qemu-img",
                    &[
                        "create",
                        "-q",
                        "-f",
                        "raw",
                        &image.display().to_string(),
                        &bytes.to_string(),
                    ],
                )?;
            }
            self.images.insert((site.to_string(), name.clone()), image);
        }
        Ok(())
    }

    /// Creates `volumes` (name, bytes) as raw images and starts the site's daemon. The
    /// `sources` are filled with pseudo-random data first and get an NBD export
    /// `app-NAME` for an application to write.
    pub fn add_site(
        &mut self,
        site: &str,
        volumes: &[(String, u64)],
        sources: &[String],
    ) -> Result<(), LabError> {
        let qmp = self.dir.join(format!("{site}.qmp"));
        let admin = self.dir.join(format!("{site}-admin.qmp"));
        let nbd_port = free_port()?;
        let qmp_port = free_port()?;
        let serves_nbd = self.tls.is_none() || !sources.is_empty();
        let mut args = if self.tls.is_some() {
            let others: Vec<String> = self.sites.keys().cloned().collect();
            self.secure_args(site, qmp_port, serves_nbd.then_some(nbd_port), &others)?
        } else {
            Vec::new()
        };
        args.extend([
            "--chardev".to_string(),
            format!("socket,id=qmp,path={},server=on,wait=off", qmp.display()),
            "--monitor".into(),
            "chardev=qmp,mode=control".into(),
            "--chardev".into(),
            format!(
                "socket,id=admin,path={},server=on,wait=off",
                admin.display()
            ),
            "--monitor".into(),
            "chardev=admin,mode=control".into(),
        ]);
        if self.tls.is_none() {
            args.extend([
                "--chardev".into(),
                format!("socket,id=qmptcp,host=127.0.0.1,port={qmp_port},server=on,wait=off"),
                "--monitor".into(),
                "chardev=qmptcp,mode=control".into(),
                "--nbd-server".into(),
                // As many clients as a scale test's pairs (QEMU's default is 100).
                format!(
                    "addr.type=inet,addr.host=127.0.0.1,addr.port={nbd_port},max-connections=0"
                ),
            ]);
        }
        self.create(site, volumes)?;
        for (name, bytes) in volumes.iter().filter(|(v, _)| sources.contains(v)) {
            // Distinct data per volume, so a copy landing on the wrong target shows.
            let seed = crate::fingerprint::fnv1a64(format!("{site}/{name}").as_bytes());
            fill_random(self.image(site, name), *bytes, seed)
                .map_err(io(format!("fill {name}")))?;
        }
        for (name, _) in volumes {
            let image = self.image(site, name).to_path_buf();
            args.push("--blockdev".into());
            args.push(format!(
                "driver=file,node-name={name}-file,filename={}",
                image.display()
            ));
            args.push("--blockdev".into());
            args.push(format!("driver=raw,node-name={name},file={name}-file"));
            if sources.contains(name) {
                args.push("--export".into());
                args.push(format!(
                    "type=nbd,id=app-{name},node-name={name},name=app-{name},writable=on"
                ));
            }
        }
        let mut s = Site {
            qmp,
            qmp_port,
            admin,
            nbd_port,
            serves_nbd,
            child: None,
            args,
        };
        start(&mut s)?;
        self.sites.insert(site.to_string(), s);
        Ok(())
    }

    /// Kills a site's daemon at once (SIGKILL): a site failure.
    pub fn kill(&mut self, site: &str) {
        if let Some(mut child) = self.sites.get_mut(site).and_then(|s| s.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed site's daemon again, as its administrator would after a failure:
    /// the same volumes (as the failure left them), monitors and NBD address, and none
    /// of what a session had added.
    pub fn restart(&mut self, site: &str) -> Result<(), LabError> {
        let s = self
            .sites
            .get_mut(site)
            .ok_or_else(|| LabError::NoSite(site.to_string()))?;
        if s.child.is_some() {
            return Err(LabError::StillRuns(site.to_string()));
        }
        start(s)
    }

    /// Points the plan's storages at this lab's daemons (a secure lab's at their TLS
    /// monitors, with their credentials).
    pub fn wire(&self, plan: &mut Plan) {
        for (id, site) in &self.sites {
            if let Some(storage) = plan.storages.get_mut(id) {
                storage.endpoint = Address::Unix(site.qmp.display().to_string());
                storage.data = Some(Address::Tcp {
                    host: "127.0.0.1".into(),
                    port: site.nbd_port,
                });
                if let Some(tls) = self.tls_of(id) {
                    storage.endpoint = Address::Tcp {
                        host: "127.0.0.1".into(),
                        port: site.qmp_port,
                    };
                    plan.tls.insert(id.clone(), tls);
                }
            }
        }
    }

    /// A secure lab's site as a run-time file's `[storage.ID.tls]` describes it.
    pub fn tls_of(&self, site: &str) -> Option<crate::tls::Tls> {
        let secure = self.tls.as_ref()?;
        Some(crate::tls::Tls {
            monitor: Some(crate::tls::Credentials {
                ca: secure.pki.ca(),
                cert: secure.cssc.cert.clone(),
                key: secure.cssc.key.clone(),
            }),
            hostname: Some(pki::hostname(site)),
            daemon_dir: secure.pki.dir.join(site).display().to_string(),
            identity: pki::dn(site),
        })
    }

    /// The URI of an export of a site's NBD server (for qemu-img and qemu-io).
    pub fn nbd_uri(&self, site: &str, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.sites[site].nbd_port)
    }

    /// Stops a site's daemon (SIGSTOP) or lets it go on (SIGCONT): a hung site.
    pub fn signal(&self, site: &str, signal: &str) -> Result<(), LabError> {
        let child = self.sites[site]
            .child
            .as_ref()
            .ok_or_else(|| LabError::NoDaemon(site.to_string()))?;
        tool("kill", &[&format!("-{signal}"), &child.id().to_string()]).map(|_| ())
    }

    pub fn image(&self, site: &str, volume: &str) -> &Path {
        &self.images[&(site.to_string(), volume.to_string())]
    }

    /// Writes `pattern` at each offset (64 KiB each) through the volume's export, as an
    /// application would; returns once every write is acknowledged.
    pub fn write(
        &self,
        site: &str,
        volume: &str,
        pattern: u8,
        offsets: &[u64],
    ) -> Result<(), LabError> {
        self.write_blocks(site, volume, pattern, offsets, 65536)
    }

    /// Writes `pattern` in blocks of `size` bytes at each offset, as [`Lab::write`].
    pub fn write_blocks(
        &self,
        site: &str,
        volume: &str,
        pattern: u8,
        offsets: &[u64],
        size: u64,
    ) -> Result<(), LabError> {
        self.write_to(site, &format!("app-{volume}"), pattern, offsets, size)
    }

    /// Writes as [`Lab::write_blocks`], through any NBD export of the site's server
    /// (a recovered target's production export, say).
    pub fn write_to(
        &self,
        site: &str,
        export: &str,
        pattern: u8,
        offsets: &[u64],
        size: u64,
    ) -> Result<(), LabError> {
        let mut args = self.qemu_io(site, export);
        for off in offsets {
            args.push("-c".into());
            args.push(format!("write -P {pattern} {off} {size}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool("qemu-io", &args).map(|_| ())
    }

    /// The arguments that open export `export` of a site's NBD server in `qemu-io`
    /// as the application does (over TLS, as the app, in a secure lab); commands follow.
    pub fn qemu_io(&self, site: &str, export: &str) -> Vec<String> {
        match &self.tls {
            None => vec!["-f".to_string(), "raw".into(), self.nbd_uri(site, export)],
            Some(secure) => vec![
                "--object".to_string(),
                format!(
                    "tls-creds-x509,id=app,dir={},endpoint=client",
                    secure.pki.dir.join("app").display()
                ),
                "--image-opts".into(),
                format!(
                    "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={},export={export},tls-creds=app,tls-hostname={}",
                    self.sites[site].nbd_port,
                    pki::hostname(site)
                ),
            ],
        }
    }

    /// Whether two images hold the same bytes (`qemu-img compare`, sharing the locks of
    /// running daemons).
    pub fn same(&self, a: &Path, b: &Path) -> Result<bool, LabError> {
        let out = Command::new("qemu-img")
            .args(["compare", "-U", "-q", "-f", "raw", "-F", "raw"])
            .arg(a)
            .arg(b)
            .output()
            .map_err(|source| LabError::Spawn {
                program: "qemu-img".into(),
                source,
            })?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(LabError::Tool {
                command: format!("qemu-img compare {} {}", a.display(), b.display()),
                said: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }),
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
fn free_port() -> Result<u16, LabError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|a| a.port())
        .map_err(io("find a free port on 127.0.0.1"))
}

fn start(site: &mut Site) -> Result<(), LabError> {
    let _ = std::fs::remove_file(&site.qmp);
    let child = Command::new("qemu-storage-daemon")
        .args(&site.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| LabError::Spawn {
            program: "qemu-storage-daemon".into(),
            source,
        })?;
    site.child = Some(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    while !(site.qmp.exists()
        && (!site.serves_nbd || listening(site.nbd_port))
        && listening(site.qmp_port))
    {
        if Instant::now() > deadline {
            return Err(LabError::NotListening(site.qmp.clone()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        for site in self.sites.values_mut() {
            if let Some(mut child) = site.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
