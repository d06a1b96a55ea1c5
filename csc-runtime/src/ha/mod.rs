//! One manager commanding, others waiting (docs/deployment.md, "Two managers"): the
//! same solution binary on two or more hosts, `run --ha etcd=URL,...`. Each campaigns
//! for a leader key bound to a lease (`PREFIX/leader`, created only if absent, in one
//! transaction); the winner runs the session, the others wait and try again until
//! the key goes. The leader renews its lease every TTL/3 and, when it has not renewed
//! for TTL/2, ends the process (exit 5) before the lease can expire: a standby can win
//! only after the lease expired, TTL after the last renewal, so the old leader has
//! stopped commanding at least TTL/2 before the new one starts. The journal goes to
//! etcd under `PREFIX/journal/`, each record put in a transaction that holds only if
//! the leader key still holds this manager's id: a deposed leader cannot append, and
//! a storage command is issued only after its record is appended.

pub mod etcd;

use crate::core::record::Record;
use crate::journal::{JournalError, Store};
use etcd::{Etcd, EtcdError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exit code of a manager that lost its leadership (systemd restarts it; it then
/// waits as a standby).
pub const EXIT_DEPOSED: i32 = 5;

/// Where and how managers of one session meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ha {
    /// etcd members, `http://HOST:PORT`.
    pub members: Vec<String>,
    /// The session's keys: `PREFIX/leader`, `PREFIX/journal/…`.
    pub prefix: String,
    /// The leader's lease, seconds.
    pub ttl: u64,
}

impl Ha {
    /// `--ha etcd=URL[,URL...]` for session `session`, with a lease of `ttl` seconds.
    pub fn parse(text: &str, session: &str, ttl: u64) -> Result<Ha, String> {
        let urls = text.strip_prefix("etcd=").ok_or_else(|| {
            format!("`{text}`: write etcd=http://HOST:PORT[,http://HOST:PORT...]")
        })?;
        let members: Vec<String> = urls.split(',').map(str::to_string).collect();
        if let Some(bad) = members.iter().find(|m| !m.starts_with("http://")) {
            return Err(format!(
                "`{bad}` is not an etcd member's http://HOST:PORT (TLS to etcd: not yet)"
            ));
        }
        if ttl < 2 {
            return Err(
                "the lease must be at least 2 s (the leader renews every third of it)".into(),
            );
        }
        Ok(Ha {
            members,
            prefix: format!("/cssc/{session}"),
            ttl,
        })
    }

    fn leader_key(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    fn manager_key(&self, me: &str) -> String {
        format!("{}/managers/{me}", self.prefix)
    }

    fn client(&self) -> Etcd {
        // A call that takes longer than a third of the lease is as good as failed.
        Etcd::new(
            self.members.clone(),
            Duration::from_secs(self.ttl).div_f64(3.0),
        )
    }
}

/// This manager, in office.
pub struct Leadership {
    pub lease: i64,
    pub me: String,
    pub ha: Ha,
    /// When the lease was last granted or renewed: it expires TTL after.
    renewed: Instant,
}

/// Waits until this manager holds the leader key (or `stop` is set: `None`), saying
/// who leads meanwhile. Its lease lives while it waits, and registers it under
/// `PREFIX/managers/` (for `status`); the same lease binds the leader key once won.
pub fn campaign(ha: &Ha, me: &str, stop: &AtomicBool) -> Result<Option<Leadership>, EtcdError> {
    let etcd = ha.client();
    let key = ha.leader_key();
    let mut said = None;
    let mut lease = None;
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let alive = match lease {
            Some(id) => etcd.keep_alive(id)? > 0,
            None => false,
        };
        let id = match (alive, lease) {
            (true, Some(id)) => id,
            _ => {
                let id = etcd.grant(ha.ttl)?;
                etcd.txn(
                    Vec::new(),
                    vec![etcd::put(&ha.manager_key(me), me.as_bytes(), Some(id))],
                )?;
                lease = Some(id);
                id
            }
        };
        let won = etcd.txn(
            vec![etcd::absent(&key)],
            vec![etcd::put(&key, me.as_bytes(), Some(id))],
        )?;
        if won {
            tracing::info!(
                kind = "ha",
                leader = me,
                lease = id,
                "this manager leads (lease {} s)",
                ha.ttl
            );
            return Ok(Some(Leadership {
                lease: id,
                me: me.to_string(),
                ha: ha.clone(),
                renewed: asked,
            }));
        }
        let leader = etcd
            .get(&key)?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        if leader != said {
            tracing::info!(
                kind = "ha",
                state = "standby",
                "standby: {} leads",
                leader.as_deref().unwrap_or("nobody")
            );
            said = leader;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(None)
}

/// Who leads a session, for how long yet, and which managers wait.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Office {
    pub leader: Option<String>,
    /// Seconds left on the leader's lease.
    pub lease_left: Option<i64>,
    pub standbys: Vec<String>,
}

/// What etcd says of the session's managers now.
pub fn office(ha: &Ha) -> Result<Office, EtcdError> {
    let etcd = ha.client();
    let leader = etcd.get(&ha.leader_key())?;
    let lease_left = match &leader {
        Some(kv) if kv.lease != 0 => Some(etcd.time_to_live(kv.lease)?),
        _ => None,
    };
    let leader = leader.map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    let standbys = etcd
        .prefixed(&format!("{}/managers/", ha.prefix))?
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .filter(|m| Some(m) != leader.as_ref())
        .collect();
    Ok(Office {
        leader,
        lease_left,
        standbys,
    })
}

impl Leadership {
    /// Renews the lease every TTL/3 on a thread of its own; a watchdog on another
    /// ends the process (exit 5) once it has not been renewed for TTL/2, however long
    /// a renewal hangs: before the lease can expire, so before a standby can win.
    pub fn keep(&self) {
        let (lease, ha) = (self.lease, self.ha.clone());
        let ttl = Duration::from_secs(ha.ttl);
        let renewed = Arc::new(Mutex::new(self.renewed));
        let watched = Arc::clone(&renewed);
        let _ = std::thread::Builder::new()
            .name("ha-lease".into())
            .spawn(move || {
                let etcd = ha.client();
                loop {
                    std::thread::sleep(ttl / 3);
                    match etcd.keep_alive(lease) {
                        Ok(left) if left > 0 => *renewed.lock().expect("renewed") = Instant::now(),
                        Ok(_) => deposed("the lease expired"),
                        Err(e) => tracing::warn!(kind = "ha", "cannot renew the lease: {e}"),
                    }
                }
            });
        let _ = std::thread::Builder::new()
            .name("ha-watchdog".into())
            .spawn(move || loop {
                let since = watched.lock().expect("renewed").elapsed();
                if since >= ttl / 2 {
                    deposed(&format!(
                        "the lease was not renewed for {} ms",
                        since.as_millis()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            });
    }

    /// The journal in etcd: what earlier leaders wrote, and a store for this one.
    pub fn journal(&self) -> Result<(EtcdJournal, Vec<Record>), EtcdError> {
        let etcd = self.ha.client();
        let prefix = format!("{}/journal/", self.ha.prefix);
        let mut records = Vec::new();
        for kv in etcd.prefixed(&prefix)? {
            match serde_json::from_slice::<Record>(&kv.value) {
                Ok(record) => records.push(record),
                Err(e) => {
                    return Err(EtcdError::Refused {
                        path: kv.key,
                        said: format!("a record this runtime cannot read: {e}"),
                    })
                }
            }
        }
        let next = records.len() as u64;
        Ok((
            EtcdJournal {
                etcd,
                prefix,
                leader_key: self.ha.leader_key(),
                me: self.me.clone(),
                next,
            },
            records,
        ))
    }
}

/// Ends the process: a manager that is not sure it leads must not command.
fn deposed(why: &str) -> ! {
    tracing::error!(
        kind = "ha",
        state = "deposed",
        "{why}: no longer sure to lead; ending before the lease can expire (exit {EXIT_DEPOSED})"
    );
    std::process::exit(EXIT_DEPOSED)
}

/// The journal's records as etcd keys `PREFIX/journal/NNNNNNNNNNNN`, each put only
/// while the leader key holds this manager's id.
pub struct EtcdJournal {
    etcd: Etcd,
    prefix: String,
    leader_key: String,
    me: String,
    next: u64,
}

impl Store for EtcdJournal {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let key = format!("{}{:012}", self.prefix, self.next);
        let value = serde_json::to_vec(record).expect("a record serialises");
        let written = self
            .etcd
            .txn(
                vec![etcd::value_is(&self.leader_key, &self.me)],
                vec![etcd::put(&key, &value, None)],
            )
            .map_err(|e| JournalError::Remote(e.to_string()))?;
        if !written {
            return Err(JournalError::Deposed);
        }
        self.next += 1;
        Ok(())
    }
}

/// Writes every record to each store in turn: etcd first (fenced), then the local
/// file `status` reads on this host.
pub struct Both<A, B>(pub A, pub B);

impl<A: Store, B: Store> Store for Both<A, B> {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.0.append(record)?;
        self.1.append(record)
    }
}

/// A manager's id: its host and process, unique among the managers.
pub fn manager_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}
