//! The session as it will run: the document's description, with STORAGE and COPYSET
//! supplied or overridden by a run-time file, so one binary serves many hosts.
//!
//! ```toml
//! [storage.site1]                  # replaces or adds STORAGE id="site1"
//! endpoint = "unix:/run/cssc/site1.qmp"
//! data = "tcp:127.0.0.1:10809"     # optional
//!
//! [[copyset]]                      # if any, they replace the document's COPYSETs
//! name = "db"
//! volumes = ["site1:db-a", "site2:db-b"]
//!
//! [contact.oncall]                 # replaces a CONTACT's ways to be reached
//! webhook = "https://alerts.example/cssc"  # http:// or https://
//! secret = "…"                      # optional: signs each body (X-Cssc-Signature-256)
//! command = "/usr/local/bin/page-oncall"
//!
//! [timing]                          # optional; defaults in `Timing::default`
//! time_zone = "Europe/Paris"        # `daily HH:MM` is read here (default: the host's)
//! hold_seconds = 2                  # a freeze without thaw releases writers after this
//! failed_target_hold_seconds = 1    # a write to a failed target waits this long
//! heartbeat_ms = 200                # every storage is asked this often
//! hung_after_ms = 800               # and is hung when it does not answer within this
//! replicate_every_ms = 1000         # a btrfs continuous copy sends what changed this often
//! verify_every_seconds = 86400      # optional: `verify` every continuous sequence in Duplex
//! ```

use crate::address::Address;
use crate::capability::{refusals, volume_fault, Needs};
pub use crate::model::{webhook_fault, Contact, CopySet, Storage, Volume};
pub use crate::session::Sequence;
use crate::session::Session;
use crate::tls::{Credentials, Tls};
use crate::vocab::{DriverKind, Keyword};
/// The zone type of [`Plan::time_zone`] (jiff's), for those who build a plan.
pub use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use toml::Spanned;

mod run_file;
mod validate;

pub use run_file::{Position, RunFileError};
pub use validate::PlanFault;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub storages: BTreeMap<String, Storage>,
    pub contacts: Vec<Contact>,
    pub copysets: Vec<CopySet>,
    /// In chain order: element i is sequence i+1.
    pub sequences: Vec<Sequence>,
    pub timing: Timing,
    /// The zone `daily HH:MM` schedules are read in: the run-time file's
    /// `[timing] time_zone`, else the host's (`TZ`, else /etc/localtime).
    pub time_zone: TimeZone,
    /// The TLS credentials of storages reached over TLS (run-time file only), by id.
    pub tls: BTreeMap<String, Tls>,
    /// Storages the run-time file lets be reached without TLS beyond this host
    /// (`insecure = true`).
    pub insecure: BTreeSet<String>,
}

/// The session's clocks for failures and freezes (docs/runtime.md, "Freeze").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a freeze holds the writers of its group when the document does not thaw.
    pub hold: Duration,
    /// How long a write to a target that failed is held before the source goes on
    /// alone (the NBD client's reconnect-delay, whole seconds). It must outlast the
    /// detection and the hold of the rest of the group: with 0 the failed pair would
    /// acknowledge writes its target lacks while the others still mirror.
    pub failed_target_hold_secs: u64,
    /// How often every storage is asked whether it is alive.
    pub heartbeat: Duration,
    /// A storage that does not answer within this is hung.
    pub hung_after: Duration,
    /// How often a continuous copy that is not a mirror sends what changed (btrfs).
    pub replicate_every: Duration,
    /// How often every continuous sequence in Duplex is verified (none: only when an
    /// operator asks).
    pub verify_every: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            hold: Duration::from_secs(2),
            failed_target_hold_secs: 1,
            heartbeat: Duration::from_millis(200),
            hung_after: Duration::from_millis(800),
            replicate_every: Duration::from_secs(1),
            verify_every: None,
        }
    }
}

/// One hop of one copy set: what a sequence copies for that copy set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pair {
    pub sequence: u32,
    /// Index into `Plan::copysets`.
    pub copyset: usize,
    pub source: Volume,
    pub target: Volume,
}

/// The copy sets of a compiled session, from the JSON text cssc wrote
/// ([`Session::copysets`]).
fn copysets_of(json: &str) -> Vec<CopySet> {
    let sets: Vec<(String, Vec<(String, String)>)> =
        serde_json::from_str(json).expect("cssc writes the copy sets as JSON");
    sets.into_iter()
        .map(|(name, volumes)| CopySet {
            name,
            volumes: volumes
                .into_iter()
                .map(|(storage, name)| Volume { storage, name })
                .collect(),
        })
        .collect()
}

/// An address of the static session: text cssc wrote after checking it.
fn address(text: &str) -> Address {
    Address::parse(text).expect("cssc writes addresses it checked")
}

impl Plan {
    /// The plan of a compiled session, as the document wrote it.
    pub fn from_session(s: &Session) -> Plan {
        Plan {
            name: s.name.to_string(),
            storages: s
                .storages
                .iter()
                .map(|st| {
                    let storage = Storage {
                        id: st.id.to_string(),
                        driver: st.driver,
                        endpoint: address(st.endpoint),
                        data: st.data.map(address),
                    };
                    (storage.id.clone(), storage)
                })
                .collect(),
            contacts: s
                .contacts
                .iter()
                .map(|c| Contact {
                    name: c.name.to_string(),
                    webhook: c.webhook.map(str::to_string),
                    command: c.command.map(str::to_string),
                    secret: None,
                })
                .collect(),
            copysets: copysets_of(s.copysets.json()),
            sequences: s.sequences.to_vec(),
            timing: Timing::default(),
            time_zone: TimeZone::system(),
            tls: BTreeMap::new(),
            insecure: BTreeSet::new(),
        }
    }

    /// The storages the copy sets use (a storage only named is never reached).
    pub fn storages_used(&self) -> std::collections::BTreeSet<&str> {
        self.copysets
            .iter()
            .flat_map(|c| c.volumes.iter().map(|v| v.storage.as_str()))
            .collect()
    }

    /// The storages of one kind the copy sets use.
    pub fn storages_of(&self, kind: DriverKind) -> std::collections::BTreeSet<&str> {
        self.storages_used()
            .into_iter()
            .filter(|id| self.storages.get(*id).is_some_and(|s| s.driver == kind))
            .collect()
    }

    /// The pairs of sequence `number`: one per copy set.
    pub fn pairs(&self, number: u32) -> Vec<Pair> {
        let i = number as usize;
        self.copysets
            .iter()
            .enumerate()
            .map(|(copyset, set)| Pair {
                sequence: number,
                copyset,
                source: set.volumes[i - 1].clone(),
                target: set.volumes[i].clone(),
            })
            .collect()
    }

    pub fn sequence(&self, number: u32) -> Option<&Sequence> {
        self.sequences.get((number as usize).checked_sub(1)?)
    }

    /// The name of the copy set a pair report or a copy's progress names by index.
    pub fn copyset_name(&self, index: usize) -> Option<&str> {
        self.copysets.get(index).map(|c| c.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{BaseCopy, ContinuousMode, DriverKind};

    const SESSION: Session = Session {
        name: "t",
        description: None,
        storages: &[crate::session::Storage {
            id: "a",
            driver: DriverKind::Qemu,
            endpoint: "unix:/run/a.qmp",
            data: None,
        }],
        contacts: &[],
        copysets: crate::session::CopySets(|| "[]"),
        sequences: &[crate::session::Sequence {
            number: 1,
            copy: BaseCopy::Continuous(ContinuousMode::Synchronous),
            schedule: None,
            keep: 1,
            handled: &[],
            commands: &[],
        }],
    };

    #[test]
    fn a_run_file_overrides_storage_and_supplies_copysets() {
        let mut plan = Plan::from_session(&SESSION);
        plan.apply_run_file(
            "host.toml",
            "[storage.a]\nendpoint = \"tcp:127.0.0.1:4444\"\n[storage.b]\nendpoint = \"unix:/b\"\ndata = \"unix:/b.nbd\"\n[[copyset]]\nname = \"db\"\nvolumes = [\"a:x\", \"b:y\"]\n",
        )
        .expect("valid run file");
        assert_eq!(
            plan.storages["a"].endpoint,
            Address::Tcp {
                host: "127.0.0.1".into(),
                port: 4444
            }
        );
        assert_eq!(
            plan.pairs(1)[0].target,
            Volume {
                storage: "b".into(),
                name: "y".into()
            }
        );
    }

    #[test]
    fn the_run_time_file_docs_runtime_md_shows_is_one_run_accepts() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/runtime.md"));
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("its end");
        let mut plan = Plan::from_session(&SESSION);
        plan.apply_run_file("runtime.md", &doc[start..end])
            .expect("the documented run-time file");
        assert!(
            plan.tls["site2"].monitor.is_some(),
            "site2's monitor over TLS"
        );
        assert_eq!(plan.tls["site2"].identity, "O=Example,CN=site2.example");
        assert_eq!(plan.pairs(1).len(), 1);
    }

    #[test]
    fn a_storage_reached_over_the_network_needs_tls_unless_the_file_says_insecure() {
        let sets = "[[copyset]]\nname = \"db\"\nvolumes = [\"a:x\", \"a:y\"]\n";
        let run = |storage: &str| {
            let mut plan = Plan::from_session(&SESSION);
            plan.apply_run_file("h.toml", &format!("{storage}{sets}"))
                .map(|()| plan)
                .map_err(|e| e.to_string())
        };
        let err = run("[storage.a]\nendpoint = \"tcp:192.0.2.10:4444\"\n").unwrap_err();
        assert!(
            err.contains("storage a: tcp:192.0.2.10:4444 is reached over the network without TLS"),
            "{err}"
        );
        let err = run("[storage.a]\nendpoint = \"unix:/a\"\ndata = \"tcp:dr.example:10809\"\n")
            .unwrap_err();
        assert!(
            err.contains("tcp:dr.example:10809 is reached over the network"),
            "{err}"
        );
        run("[storage.a]\nendpoint = \"tcp:127.0.0.1:4444\"\ndata = \"tcp:[::1]:10809\"\n")
            .expect("loopback crosses no link");
        let plan = run("[storage.a]\nendpoint = \"tcp:192.0.2.10:4444\"\ninsecure = true\n")
            .expect("insecure, knowingly");
        assert!(plan.insecure.contains("a"));
        let tls = "[storage.a.tls]\nca = \"/etc/cssc/ca.pem\"\ncert = \"/etc/cssc/c.pem\"\nkey = \"/etc/cssc/c.key\"\ndaemon_dir = \"/etc/pki/qemu\"\nidentity = \"O=Example,CN=a\"\n";
        let plan = run(&format!(
            "[storage.a]\nendpoint = \"tcp:192.0.2.10:4444\"\n{tls}"
        ))
        .expect("over TLS");
        assert_eq!(plan.tls["a"].identity, "O=Example,CN=a");
        assert_eq!(plan.tls["a"].hostname, None);
        let err = run(&format!("[storage.a]\nendpoint = \"unix:/a\"\n{tls}")).unwrap_err();
        assert!(
            err.contains("is a local socket: ca, cert and key are for a tcp: monitor"),
            "{err}"
        );
        let local = "[storage.a]\nendpoint = \"unix:/a\"\ndata = \"tcp:192.0.2.10:10809\"\n[storage.a.tls]\ndaemon_dir = \"/etc/pki/qemu\"\nidentity = \"O=Example,CN=a\"\n";
        let plan = run(local).expect("a local monitor, NBD over TLS");
        assert_eq!(plan.tls["a"].monitor, None);
        let err = run(&local.replace("unix:/a", "tcp:192.0.2.10:4444")).unwrap_err();
        assert!(err.contains("give ca, cert and key"), "{err}");
        let err = run(&format!(
            "[storage.a]\nendpoint = \"tcp:192.0.2.10:4444\"\n{}",
            tls.replace("O=Example,CN=a", "site a")
        ))
        .unwrap_err();
        assert!(
            err.contains("identity `site a` is not a distinguished name"),
            "{err}"
        );
        let err = run(&format!(
            "[storage.a]\nendpoint = \"tcp:192.0.2.10:4444\"\n{}",
            tls.replace("/etc/cssc/ca.pem", "ca.pem")
        ))
        .unwrap_err();
        assert!(err.contains("`ca.pem` is not an absolute path"), "{err}");
    }

    #[test]
    fn a_run_file_fault_is_said_at_its_line_and_column_with_a_caret() {
        let mut plan = Plan::from_session(&SESSION);
        let err = plan
            .apply_run_file("host.toml", "[storage.a]\nendpoint = \"local:/srv/pool\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "host.toml:2:12: storage a: endpoint `local:/srv/pool` is not one a qemu storage has (unix:/PATH or tcp:HOST:PORT (its QMP monitor))\n    2 | endpoint = \"local:/srv/pool\"\n      |            ^^^^^^^^^^^^^^^^^"
        );
        let err = plan
            .apply_run_file(
                "host.toml",
                "[[copyset]]\nname = \"db\"\nvolumes = [\"a:x\", \"nowhere\"]\n",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("host.toml:3:19: copy set db: `nowhere` is not STORAGE:VOLUME"),
            "{err}"
        );
        let err = plan
            .apply_run_file(
                "host.toml",
                "[[copyset]]\nname = \"db\"\nvolumes = [\"a:x\", \"a:y\", \"a:z\"]\n",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("host.toml:2:8: copy set db has 3 volumes"),
            "{err}"
        );
    }

    #[test]
    fn a_run_file_sets_the_clocks_and_refuses_a_zero_failed_target_hold() {
        let mut plan = Plan::from_session(&SESSION);
        assert_eq!(plan.timing, Timing::default());
        plan.apply_run_file(
            "h.toml",
            "[timing]\nhold_seconds = 30\nfailed_target_hold_seconds = 3\nheartbeat_ms = 50\nhung_after_ms = 400\nreplicate_every_ms = 5000\nverify_every_seconds = 3600\n",
        )
        .expect("valid timing");
        assert_eq!(
            plan.timing,
            Timing {
                hold: Duration::from_secs(30),
                failed_target_hold_secs: 3,
                heartbeat: Duration::from_millis(50),
                hung_after: Duration::from_millis(400),
                replicate_every: Duration::from_secs(5),
                verify_every: Some(Duration::from_secs(3600)),
            }
        );
        let err = plan
            .apply_run_file("h.toml", "[timing]\nfailed_target_hold_seconds = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(err.contains("at least 1"), "{err}");
        let err = plan
            .apply_run_file("h.toml", "[timing]\nverify_every_seconds = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(
            err.starts_with("h.toml:2:24: timing: verify_every_seconds must be at least 1"),
            "{err}"
        );
        assert!(plan
            .apply_run_file("h.toml", "[timing]\nhold = 3\n")
            .is_err());
    }

    #[test]
    fn a_run_file_replaces_a_contact_s_ways_and_refuses_unknown_or_bad_ones() {
        let mut plan = Plan::from_session(&SESSION);
        plan.contacts.push(Contact {
            name: "oncall".into(),
            webhook: Some("http://127.0.0.1:9000/old".into()),
            command: None,
            secret: None,
        });
        plan.apply_run_file(
            "h.toml",
            "[contact.oncall]\ncommand = \"/usr/local/bin/page\"\n",
        )
        .expect("applies");
        assert_eq!(
            plan.contacts[0],
            Contact {
                name: "oncall".into(),
                webhook: None,
                command: Some("/usr/local/bin/page".into()),
                secret: None,
            }
        );
        let unknown = plan
            .apply_run_file("h.toml", "[contact.oncal]\nwebhook = \"http://h/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("no contact of that name (its contacts: oncall)"),
            "{unknown}"
        );
        plan.apply_run_file(
            "h.toml",
            "[contact.oncall]\nwebhook = \"https://h/x\"\nsecret = \"k\"\n",
        )
        .expect("https with a secret");
        assert_eq!(plan.contacts[0].secret.as_deref(), Some("k"));
        let ftp = plan
            .apply_run_file("h.toml", "[contact.oncall]\nwebhook = \"ftp://h/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(ftp.contains("is an http:// or https:// URL"), "{ftp}");
        let unsigned = plan
            .apply_run_file(
                "h.toml",
                "[contact.oncall]\ncommand = \"/p\"\nsecret = \"k\"\n",
            )
            .unwrap_err()
            .to_string();
        assert!(unsigned.contains("give the webhook too"), "{unsigned}");
        let relative = plan
            .apply_run_file("h.toml", "[contact.oncall]\ncommand = \"page\"\n")
            .unwrap_err()
            .to_string();
        assert!(relative.contains("not an absolute path"), "{relative}");
        let empty = plan
            .apply_run_file("h.toml", "[contact.oncall]\n")
            .unwrap_err()
            .to_string();
        assert!(
            empty.contains("give a webhook, a command or both"),
            "{empty}"
        );
    }

    #[test]
    fn a_run_file_copy_set_gets_the_compiler_s_rules() {
        let mut plan = Plan::from_session(&SESSION);
        let twice = plan
            .apply_run_file(
                "h.toml",
                "[[copyset]]\nname = \"x\"\nvolumes = [\"a:v\", \"a:v\"]\n",
            )
            .unwrap_err()
            .to_string();
        assert!(
            twice.contains("copy set x: volume v on a is already in copy set x"),
            "{twice}"
        );
        let across = plan
            .apply_run_file(
                "h.toml",
                "[[copyset]]\nname = \"x\"\nvolumes = [\"a:v\", \"a:w\"]\n[[copyset]]\nname = \"y\"\nvolumes = [\"a:u\", \"a:w\"]\n",
            )
            .unwrap_err().to_string();
        assert!(
            across.contains("copy set y: volume w on a is already in copy set x"),
            "{across}"
        );
    }

    #[test]
    fn a_bad_run_file_is_explained() {
        let mut plan = Plan::from_session(&SESSION);
        let err = plan
            .apply_run_file(
                "h.toml",
                "[[copyset]]\nname = \"db\"\nvolumes = [\"a:x\", \"c:y\"]\n",
            )
            .expect_err("unknown storage")
            .to_string();
        assert!(err.contains("no storage `c`"), "{err}");
        let err = plan
            .apply_run_file("h.toml", "[storage.a]\nendpoint = \"http://x\"\n")
            .expect_err("bad address")
            .to_string();
        assert!(err.contains("storage a: endpoint"), "{err}");
        let err = plan
            .apply_run_file(
                "h.toml",
                "[[copyset]]\nname = \"db\"\nvolumes = [\"a:x\"]\n",
            )
            .expect_err("short")
            .to_string();
        assert!(err.contains("needs 2"), "{err}");
        assert!(plan.apply_run_file("h.toml", "bogus = 1").is_err());
    }
}
