//! A pool: a mounted btrfs file system, on this host or over ssh. Every operation is a
//! program run with argv (`btrfs`, `mv`, `mkdir`, `test`); over ssh the argv is quoted
//! word by word for the remote shell, which is the only shell any of it meets.

use crate::address::Address;
use crate::drivers::DriverError;
use std::process::{Command, Output, Stdio};

/// One subvolume as `btrfs subvolume list -o -u -q -R` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Subvolume {
    /// Its name (the last component of its path).
    pub name: String,
    pub uuid: String,
    /// The subvolume it is a snapshot of (`None`: not a snapshot).
    pub parent_uuid: Option<String>,
    /// The snapshot it was received from (`None`: not received, or not completely:
    /// `btrfs receive` sets it last).
    pub received_uuid: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Pool {
    /// The storage id.
    pub id: String,
    /// The pool's directory on its host.
    pub root: String,
    /// `None`: this host.
    remote: Option<Remote>,
}

#[derive(Clone, Debug)]
struct Remote {
    destination: String,
    port: Option<u16>,
}

/// A word as the remote shell reads it back: single-quoted, quotes escaped.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `-` in listings means none.
fn some(field: &str) -> Option<String> {
    (field != "-" && !field.is_empty()).then(|| field.to_string())
}

/// Parses the lines of `btrfs subvolume list -u -q -R`.
pub(crate) fn parse_list(text: &str) -> Vec<Subvolume> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                words
                    .iter()
                    .position(|w| *w == key)
                    .and_then(|i| words.get(i + 1))
                    .copied()
            };
            let path = line.split_once(" path ")?.1;
            Some(Subvolume {
                name: path.rsplit('/').next()?.to_string(),
                uuid: after("uuid")?.to_string(),
                parent_uuid: after("parent_uuid").and_then(some),
                received_uuid: after("received_uuid").and_then(some),
            })
        })
        .collect()
}

impl Pool {
    pub(crate) fn new(id: &str, address: &Address) -> Result<Pool, DriverError> {
        let (root, remote) = match address {
            Address::Local(path) => (path.clone(), None),
            Address::Ssh {
                user,
                host,
                port,
                path,
            } => {
                let host = crate::address::bare_host(host);
                let destination = match user {
                    Some(u) => format!("{u}@{host}"),
                    None => host.to_string(),
                };
                (
                    path.clone(),
                    Some(Remote {
                        destination,
                        port: *port,
                    }),
                )
            }
            other => {
                return Err(DriverError::at(
                    id,
                    format!(
                    "{other} is not a pool address (local:/PATH or ssh:[USER@]HOST[:PORT]:/PATH)"
                ),
                ))
            }
        };
        Ok(Pool {
            id: id.to_string(),
            root: root.trim_end_matches('/').to_string(),
            remote,
        })
    }

    /// The absolute path of `relative` in the pool.
    pub(crate) fn path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.root)
    }

    /// The program that runs `argv` on the pool's host.
    pub(crate) fn command(&self, argv: &[&str]) -> Command {
        match &self.remote {
            None => {
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
            Some(remote) => {
                let mut c = Command::new("ssh");
                // No prompt can be answered: a missing key fails at once; a dead link
                // is noticed within seconds, not TCP's minutes.
                c.args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=10",
                    "-o",
                    "ServerAliveInterval=5",
                    "-o",
                    "ServerAliveCountMax=2",
                ]);
                if let Ok(config) = std::env::var("CSSC_SSH_CONFIG") {
                    c.args(["-F", &config]);
                }
                if let Some(port) = remote.port {
                    c.args(["-p", &port.to_string()]);
                }
                let line: Vec<String> = argv.iter().map(|w| quote(w)).collect();
                c.arg("--").arg(&remote.destination).arg(line.join(" "));
                c
            }
        }
    }

    /// Runs `argv`; its standard output, or a refusal with what it said.
    pub(crate) fn run(&self, argv: &[&str]) -> Result<String, DriverError> {
        let output = self
            .command(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.refusal(argv, &e.to_string()))?;
        self.checked(argv, output)
    }

    fn checked(&self, argv: &[&str], output: Output) -> Result<String, DriverError> {
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let said = String::from_utf8_lossy(&output.stderr);
            Err(self.refusal(argv, said.trim()))
        }
    }

    pub(crate) fn refusal(&self, argv: &[&str], said: &str) -> DriverError {
        DriverError::at(&self.id, format!("`{}` failed: {said}", argv.join(" ")))
    }

    /// Whether `relative` exists in the pool.
    pub(crate) fn exists(&self, relative: &str) -> Result<bool, DriverError> {
        let path = self.path(relative);
        let output = self
            .command(&["test", "-e", &path])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| DriverError::at(&self.id, e))?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.refusal(
                &["test", "-e", &path],
                String::from_utf8_lossy(&output.stderr).trim(),
            )),
        }
    }

    /// The subvolume at `relative`, or a refusal that says what is there instead.
    pub(crate) fn show(&self, relative: &str) -> Result<Subvolume, DriverError> {
        let path = self.path(relative);
        let text = self
            .run(&["btrfs", "subvolume", "show", &path])
            .map_err(|e| DriverError::on(&self.id, relative, e.message))?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        Ok(Subvolume {
            name: relative.rsplit('/').next().unwrap_or(relative).to_string(),
            uuid: field("UUID:").unwrap_or_default(),
            parent_uuid: field("Parent UUID:").as_deref().and_then(some),
            received_uuid: field("Received UUID:").as_deref().and_then(some),
        })
    }

    /// The subvolumes directly in the pool's own subvolume (where `.cssc` is).
    pub(crate) fn list(&self) -> Result<Vec<Subvolume>, DriverError> {
        let text = self.run(&[
            "btrfs",
            "subvolume",
            "list",
            "-o",
            "-u",
            "-q",
            "-R",
            &self.root,
        ])?;
        Ok(parse_list(&text))
    }

    /// The names of the read-only subvolumes among [`Pool::list`]'s.
    pub(crate) fn read_only(&self) -> Result<Vec<String>, DriverError> {
        let text = self.run(&[
            "btrfs",
            "subvolume",
            "list",
            "-o",
            "-r",
            "-u",
            "-q",
            "-R",
            &self.root,
        ])?;
        Ok(parse_list(&text).into_iter().map(|s| s.name).collect())
    }

    /// The names in a directory of the pool (none if it does not exist).
    pub(crate) fn entries(&self, relative: &str) -> Result<Vec<String>, DriverError> {
        if !self.exists(relative)? {
            return Ok(Vec::new());
        }
        let text = self.run(&["ls", "-1A", &self.path(relative)])?;
        Ok(text.lines().map(str::to_string).collect())
    }

    pub(crate) fn mkdir(&self, relative: &str) -> Result<(), DriverError> {
        self.run(&["mkdir", "-p", &self.path(relative)]).map(drop)
    }

    pub(crate) fn snapshot(&self, from: &str, to: &str) -> Result<(), DriverError> {
        self.run(&[
            "btrfs",
            "subvolume",
            "snapshot",
            "-r",
            &self.path(from),
            &self.path(to),
        ])
        .map(drop)
    }

    /// Deletes subvolumes, all with one program (nothing to do for none).
    pub(crate) fn delete(&self, relative: &[String]) -> Result<(), DriverError> {
        if relative.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = relative.iter().map(|r| self.path(r)).collect();
        let mut argv = vec!["btrfs", "subvolume", "delete"];
        argv.extend(paths.iter().map(String::as_str));
        self.run(&argv).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_words_are_quoted_for_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(id);x"), "'$(id);x'");
    }

    #[test]
    fn an_ssh_pool_runs_its_argv_through_one_quoted_line() {
        let address = Address::parse("ssh:backup@dr.example:2222:/srv/pool2/").unwrap();
        let pool = Pool::new("pool2", &address).unwrap();
        let c = pool.command(&["btrfs", "receive", "/srv/pool2/.cssc"]);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(c.get_program(), "ssh");
        assert!(args.ends_with(&[
            "-p".into(),
            "2222".into(),
            "--".into(),
            "backup@dr.example".into(),
            "'btrfs' 'receive' '/srv/pool2/.cssc'".into()
        ]));
        assert_eq!(pool.path("share"), "/srv/pool2/share");
    }

    #[test]
    fn listings_are_read_with_their_uuids() {
        let text = "ID 257 gen 7 top level 5 parent_uuid b86b received_uuid - uuid 1a06 path .cssc/cssc-1-s1-c0-5\nID 256 gen 8 top level 5 parent_uuid - received_uuid a21d uuid 4d2f path .cssc/x y\n";
        assert_eq!(
            parse_list(text),
            vec![
                Subvolume {
                    name: "cssc-1-s1-c0-5".into(),
                    uuid: "1a06".into(),
                    parent_uuid: Some("b86b".into()),
                    received_uuid: None
                },
                Subvolume {
                    name: "x y".into(),
                    uuid: "4d2f".into(),
                    parent_uuid: None,
                    received_uuid: Some("a21d".into())
                },
            ]
        );
    }
}
