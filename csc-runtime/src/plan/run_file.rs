//! The run-time file (TOML): its schema, applied over the document's session, and
//! where in it a fault is (`FILE:LINE:COLUMN:` and a caret, as `cssc check` says a
//! document's).

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    #[serde(default)]
    storage: BTreeMap<String, RunStorage>,
    #[serde(default)]
    copyset: Vec<RunCopySet>,
    #[serde(default)]
    contact: BTreeMap<String, RunContact>,
    timing: Option<RunTiming>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunContact {
    webhook: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    /// Signs each webhook body (HMAC-SHA256, `X-Cssc-Signature-256`).
    secret: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTiming {
    time_zone: Option<Spanned<String>>,
    hold_seconds: Option<u64>,
    failed_target_hold_seconds: Option<Spanned<u64>>,
    heartbeat_ms: Option<u64>,
    hung_after_ms: Option<u64>,
    replicate_every_ms: Option<u64>,
    verify_every_seconds: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunStorage {
    /// The document's driver for a storage it declares, else qemu.
    driver: Option<Spanned<String>>,
    endpoint: Spanned<String>,
    data: Option<Spanned<String>>,
    /// TLS for its monitor and for the NBD connections between daemons.
    tls: Option<Spanned<RunTls>>,
    /// Reached over TCP beyond this host without TLS, knowingly.
    insecure: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTls {
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    hostname: Option<Spanned<String>>,
    daemon_dir: Spanned<String>,
    identity: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunCopySet {
    name: Spanned<String>,
    volumes: Vec<Spanned<String>>,
}

/// A fault of a run-time file, and where it is: said as `FILE:LINE:COLUMN:`, then
/// the line with a caret under the value, as `cssc check` shows a document's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct RunFileError {
    pub file: String,
    /// Where in the file, when the fault is at one value.
    pub at: Option<Position>,
    pub message: String,
}

/// A place in a run-time file: line and column (from 1), the line's text, and how
/// many characters of it the value spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub text: String,
    pub width: usize,
}

impl RunFileError {
    fn render(&self) -> String {
        let file = &self.file;
        let message = &self.message;
        match &self.at {
            None => format!("{file}: {message}"),
            Some(Position {
                line,
                column,
                text,
                width,
            }) => format!(
                "{file}:{line}:{column}: {message}\n{line:>5} | {text}\n      | {}{}",
                " ".repeat(column - 1),
                "^".repeat(*width)
            ),
        }
    }
}

/// A run-time file's text, to say where in it a fault is.
struct RunText<'a> {
    name: &'a str,
    text: &'a str,
}

impl RunText<'_> {
    /// A fault of the file as a whole.
    fn whole(&self, message: impl std::fmt::Display) -> RunFileError {
        RunFileError {
            file: self.name.to_string(),
            at: None,
            message: message.to_string(),
        }
    }

    fn at<T>(&self, value: &Spanned<T>, message: impl std::fmt::Display) -> RunFileError {
        let span = value.span();
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let number = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("");
        let column = before[line_start..].chars().count() + 1;
        let width = self.text[start..span.end.min(line_start + line.len()).max(start)]
            .chars()
            .count()
            .max(1);
        RunFileError {
            at: Some(Position {
                line: number,
                column,
                text: line.to_string(),
                width,
            }),
            ..self.whole(message)
        }
    }
}

impl Plan {
    /// Applies a run-time file (TOML, see the module's documentation). A fault is
    /// said with its line and column.
    pub fn apply_run_file(&mut self, name: &str, text: &str) -> Result<(), RunFileError> {
        let run = RunText { name, text };
        let file: RunFile = toml::from_str(text).map_err(|e| run.whole(e))?;
        if let Some(t) = file.timing {
            if let Some(zone) = &t.time_zone {
                self.time_zone = TimeZone::get(zone.get_ref()).map_err(|e| {
                    run.at(zone, format!("timing: time_zone `{}` is not a zone of the system's time zone database (Debian: tzdata; names like Europe/Paris or UTC): {e}", zone.get_ref()))
                })?;
            }
            let timing = &mut self.timing;
            if let Some(s) = t.hold_seconds {
                timing.hold = Duration::from_secs(s);
            }
            if let Some(s) = &t.failed_target_hold_seconds {
                if *s.get_ref() == 0 {
                    return Err(run.at(s, "timing: failed_target_hold_seconds must be at least 1: with 0 a failed pair acknowledges writes its target lacks before the rest of its group is held"));
                }
                timing.failed_target_hold_secs = *s.get_ref();
            }
            if let Some(ms) = t.heartbeat_ms {
                timing.heartbeat = Duration::from_millis(ms.max(10));
            }
            if let Some(ms) = t.hung_after_ms {
                timing.hung_after = Duration::from_millis(ms.max(10));
            }
            if let Some(ms) = t.replicate_every_ms {
                timing.replicate_every = Duration::from_millis(ms.max(10));
            }
            if let Some(s) = &t.verify_every_seconds {
                if *s.get_ref() == 0 {
                    return Err(run.at(s, "timing: verify_every_seconds must be at least 1 (leave it out for no scheduled verify)"));
                }
                timing.verify_every = Some(Duration::from_secs(*s.get_ref()));
            }
        }
        for (id, st) in file.storage {
            let address = |text: &Spanned<String>, what: &str| {
                Address::parse(text.get_ref())
                    .map_err(|e| run.at(text, format!("storage {id}: {what}: {e}")))
            };
            let driver = match &st.driver {
                Some(d) => DriverKind::parse(d.get_ref()).ok_or_else(|| {
                    let known: Vec<&str> = DriverKind::ALL.iter().map(|k| k.as_str()).collect();
                    run.at(
                        d,
                        format!(
                            "storage {id}: unknown driver `{}` (drivers: {})",
                            d.get_ref(),
                            known.join(", ")
                        ),
                    )
                })?,
                None => self
                    .storages
                    .get(&id)
                    .map_or(DriverKind::Qemu, |s| s.driver),
            };
            let storage = Storage {
                endpoint: address(&st.endpoint, "endpoint")?,
                data: st.data.as_ref().map(|d| address(d, "data")).transpose()?,
                driver,
                id: id.clone(),
            };
            if !storage.endpoint.suits(driver) {
                return Err(run.at(
                    &st.endpoint,
                    format!(
                        "storage {id}: endpoint `{}` is not one a {driver} storage has ({})",
                        storage.endpoint,
                        driver.capabilities().endpoints
                    ),
                ));
            }
            if let (Some(data), false) = (&st.data, driver == DriverKind::Qemu) {
                return Err(run.at(data, format!("storage {id}: a {driver} storage has no data address (its pools are reached through the endpoint)")));
            }
            if let Some(spanned) = &st.tls {
                if driver != DriverKind::Qemu {
                    return Err(run.at(spanned, format!("storage {id}: [tls] is for qemu storages (a {driver} storage is reached through its endpoint)")));
                }
                let tls = spanned.get_ref();
                let paths = [&tls.ca, &tls.cert, &tls.key, &Some(tls.daemon_dir.clone())];
                for path in paths.into_iter().flatten() {
                    if !path.get_ref().starts_with('/') {
                        return Err(run.at(
                            path,
                            format!(
                                "storage {id}: tls: `{}` is not an absolute path",
                                path.get_ref()
                            ),
                        ));
                    }
                }
                // cssc's side of the monitor: for a tcp: monitor, all three files.
                let monitor = match (&tls.ca, &tls.cert, &tls.key, &storage.endpoint) {
                    (Some(ca), Some(cert), Some(key), Address::Tcp { .. }) => Some(Credentials {
                        ca: ca.get_ref().into(),
                        cert: cert.get_ref().into(),
                        key: key.get_ref().into(),
                    }),
                    (None, None, None, Address::Unix(_)) => None,
                    (_, _, _, Address::Tcp { .. }) => return Err(run.at(spanned, format!("storage {id}: tls: its monitor {} is reached over TCP: give ca, cert and key (cssc's side of the TLS monitor)", storage.endpoint))),
                    _ => return Err(run.at(spanned, format!("storage {id}: tls: its monitor {} is a local socket: ca, cert and key are for a tcp: monitor (leave them out)", storage.endpoint))),
                };
                if !tls.identity.get_ref().contains('=') {
                    return Err(run.at(&tls.identity, format!("storage {id}: tls: identity `{}` is not a distinguished name: write the DN of its daemon's client-cert.pem as QEMU's tls-authz reads it, the subject's parts in their own order, e.g. \"O=Example,CN=site1.example\" for a subject /O=Example/CN=site1.example", tls.identity.get_ref())));
                }
                self.tls.insert(
                    id.clone(),
                    Tls {
                        monitor,
                        hostname: tls.hostname.as_ref().map(|h| h.get_ref().clone()),
                        daemon_dir: tls.daemon_dir.get_ref().clone(),
                        identity: tls.identity.get_ref().clone(),
                    },
                );
            }
            if st.insecure == Some(true) {
                self.insecure.insert(id.clone());
            }
            self.storages.insert(id, storage);
        }
        for (contact, ways) in file.contact {
            // Where the contact's table says something, for the faults of the whole.
            let first = ways
                .webhook
                .as_ref()
                .or(ways.command.as_ref())
                .or(ways.secret.as_ref());
            let whole = |message: String| match first {
                Some(value) => run.at(value, message),
                None => run.whole(message),
            };
            // A document with CONTACTs notifies only those; one without resolves its
            // NOTIFY names here, at run time (docs/solution-format.md).
            let known: Vec<&str> = self.contacts.iter().map(|c| c.name.as_str()).collect();
            let i = match self.contacts.iter().position(|c| c.name == contact) {
                Some(i) => i,
                None if known.is_empty() => {
                    self.contacts.push(Contact {
                        name: contact.clone(),
                        webhook: None,
                        command: None,
                        secret: None,
                    });
                    self.contacts.len() - 1
                }
                None => {
                    return Err(whole(format!(
                        "contact {contact}: the document has no contact of that name (its contacts: {})",
                        known.join(", ")
                    )))
                }
            };
            if let Some(w) = &ways.webhook {
                if let Some(fault) = webhook_fault(w.get_ref()) {
                    return Err(run.at(
                        w,
                        format!("contact {contact}: webhook `{}`: {fault}", w.get_ref()),
                    ));
                }
            }
            if let Some(c) = ways
                .command
                .as_ref()
                .filter(|c| !c.get_ref().starts_with('/'))
            {
                return Err(run.at(c, format!("contact {contact}: command `{}` is not an absolute path (programs run without a shell or PATH search)", c.get_ref())));
            }
            if let (Some(secret), None) = (&ways.secret, &ways.webhook) {
                return Err(run.at(
                    secret,
                    format!(
                        "contact {contact}: a secret signs webhook bodies: give the webhook too"
                    ),
                ));
            }
            if ways.webhook.is_none() && ways.command.is_none() {
                return Err(whole(format!(
                    "contact {contact}: give a webhook, a command or both"
                )));
            }
            self.contacts[i] = Contact {
                name: contact,
                webhook: ways.webhook.map(Spanned::into_inner),
                command: ways.command.map(Spanned::into_inner),
                secret: ways.secret.map(Spanned::into_inner),
            };
        }
        // The file's copy sets' names, by index (they replace the document's).
        let mut named = Vec::new();
        if !file.copyset.is_empty() {
            let mut copysets = Vec::new();
            for c in file.copyset {
                let mut volumes = Vec::new();
                for v in &c.volumes {
                    match v.get_ref().split_once(':') {
                        Some((storage, volume)) if !storage.is_empty() && !volume.is_empty() => {
                            volumes.push(Volume {
                                storage: storage.to_string(),
                                name: volume.to_string(),
                            })
                        }
                        _ => {
                            return Err(run.at(
                                v,
                                format!(
                                    "copy set {}: `{}` is not STORAGE:VOLUME",
                                    c.name.get_ref(),
                                    v.get_ref()
                                ),
                            ))
                        }
                    }
                }
                copysets.push(CopySet {
                    name: c.name.get_ref().clone(),
                    volumes,
                });
                named.push(c.name);
            }
            self.copysets = copysets;
        }
        self.validate().map_err(|fault| {
            // A fault of a copy set of this file is said at its name.
            match fault.copyset.and_then(|i| named.get(i)) {
                Some(span) => run.at(span, &fault.message),
                None => run.whole(&fault.message),
            }
        })
    }
}
