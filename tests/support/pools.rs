//! Real btrfs pools for tests: sparse image files formatted with mkfs.btrfs and
//! loop-mounted (root, btrfs-progs), unmounted and removed on drop; an sshd on
//! 127.0.0.1 with a key made for it, to reach a pool the way remote pools are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (the btrfs tests need root and btrfs-progs)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mounted pools in a temporary directory.
pub struct Pools {
    pub dir: PathBuf,
    pub mounts: BTreeMap<String, PathBuf>,
}

impl Pools {
    /// One pool per name, each `mib` MiB, its image in the temporary directory.
    pub fn new(names: &[&str], mib: u64) -> Pools {
        Pools::new_in(&std::env::temp_dir(), names, mib)
    }

    /// The same with the images in `parent` (a benchmark puts them in memory, to
    /// measure the software rather than the disk).
    pub fn new_in(parent: &Path, names: &[&str], mib: u64) -> Pools {
        let dir = parent.join(format!(
            "cssc-pools-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("pool dir");
        let mut mounts = BTreeMap::new();
        for name in names {
            let image = dir.join(format!("{name}.img"));
            let file = std::fs::File::create(&image).expect("image");
            file.set_len(mib << 20).expect("size");
            run("mkfs.btrfs", &["-q", image.to_str().unwrap()]);
            let mount = dir.join(name);
            std::fs::create_dir(&mount).expect("mount point");
            run(
                "mount",
                &[
                    "-o",
                    "loop",
                    image.to_str().unwrap(),
                    mount.to_str().unwrap(),
                ],
            );
            mounts.insert(name.to_string(), mount);
        }
        Pools { dir, mounts }
    }

    pub fn path(&self, pool: &str, relative: &str) -> PathBuf {
        self.mounts[pool].join(relative)
    }

    /// The `local:` endpoint of a pool.
    pub fn endpoint(&self, pool: &str) -> String {
        format!("local:{}", self.mounts[pool].display())
    }

    pub fn subvolume(&self, pool: &str, relative: &str) -> PathBuf {
        let path = self.path(pool, relative);
        run("btrfs", &["subvolume", "create", path.to_str().unwrap()]);
        path
    }

    /// The names in the pool's `.cssc` directory (what the driver added).
    pub fn added(&self, pool: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(pool, ".cssc"))
            .map(|d| {
                d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The btrfs storage `id` at this pool (`id` names the pool too).
    pub fn storage(&self, id: &str) -> csc_runtime::plan::Storage {
        csc_runtime::plan::Storage {
            id: id.into(),
            driver: csc_runtime::vocab::DriverKind::Btrfs,
            endpoint: csc_runtime::address::Address::Local(self.mounts[id].display().to_string()),
            data: None,
        }
    }

    /// `btrfs subvolume show` of a path, as key → value.
    pub fn show(&self, path: &Path) -> BTreeMap<String, String> {
        run("btrfs", &["subvolume", "show", path.to_str().unwrap()])
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }
}

impl Drop for Pools {
    fn drop(&mut self) {
        for mount in self.mounts.values() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(mount)
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every regular file under `root` (relative path → FNV-1a 64 of its bytes), the
/// subvolume's own `.cssc` excluded.
pub fn digest(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                let name = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(name, csc_runtime::fingerprint::fnv1a64(&bytes));
            }
        }
    }
    out
}

/// Writes `mib` MiB of pseudo-random bytes (seeded) to `path`.
pub fn fill(path: &Path, mib: usize, seed: u64) {
    let mut state = seed | 1;
    let mut bytes = vec![0u8; mib << 20];
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(path, bytes).expect("write");
}

/// An sshd on 127.0.0.1 that lets root in with a key made for it; `config` is an
/// ssh client configuration that uses the key (give it as CSSC_SSH_CONFIG).
pub struct Sshd {
    pub port: u16,
    pub config: PathBuf,
    child: Child,
    dir: PathBuf,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = std::env::temp_dir().join(format!("cssc-sshd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("sshd dir");
        let key = dir.join("key");
        let host_key = dir.join("host_key");
        for k in [&key, &host_key] {
            run(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", k.to_str().unwrap()],
            );
        }
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("key.pub"), &authorized).expect("authorized keys");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            l.local_addr().unwrap().port()
        };
        let sshd_config = dir.join("sshd_config");
        std::fs::write(
            &sshd_config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\nPidFile {}\n",
                host_key.display(),
                authorized.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .expect("sshd config");
        std::fs::create_dir_all("/run/sshd").expect("privilege separation directory");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", sshd_config.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sshd (openssh-server)");
        let config = dir.join("ssh_config");
        std::fs::write(
            &config,
            format!(
                "Host *\n  IdentityFile {}\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
                key.display()
            ),
        )
        .expect("ssh config");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Sshd {
            port,
            config,
            child,
            dir,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
