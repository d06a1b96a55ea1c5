//! STORAGE and CONTACT: ids, drivers, endpoints by driver, webhooks, programs.

use super::{names, Checker};
use crate::diagnostics::{valid_values_help, Code, Diagnostic};
use crate::ir::{self};
use crate::syntax::ast::{self, Text};
use csc_runtime::address::Address;
use csc_runtime::model::webhook_fault;
use csc_runtime::vocab::{DriverKind, Keyword};
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn storages(&mut self, storages: &[ast::Storage]) -> Vec<ir::Storage> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for s in storages {
            let Some(id) = &s.id else { continue };
            let unique = self.unique(&mut seen, id, Code::DuplicateStorage, "storage id");
            let driver = match &s.driver {
                None => Some(DriverKind::Qemu),
                Some(d) => DriverKind::parse(&d.value).or_else(|| {
                    let help = valid_values_help(&d.value, &names::<DriverKind>());
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnknownDriver,
                            d.span.clone(),
                            format!("unknown driver `{}`", d.value),
                        )
                        .label("unknown driver")
                        .help(help.to_string()),
                    );
                    None
                }),
            };
            let endpoint = s.endpoint.as_ref().and_then(|e| self.endpoint(e, driver));
            // `Some(None)`: no DATA, which is fine; `None`: a DATA that is wrong.
            let data = match &s.data {
                None => Some(None),
                Some(d) if driver.is_some_and(|k| k != DriverKind::Qemu) => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::BadEndpoint,
                            d.span.clone(),
                            format!(
                                "a {} storage has no DATA address",
                                driver.expect("a driver")
                            ),
                        )
                        .label("not for this driver")
                        .help("its pool is reached through ENDPOINT alone: remove <DATA>"),
                    );
                    None
                }
                Some(d) => self.endpoint(d, driver).map(Some),
            };
            if let (true, Some(driver), Some(endpoint), Some(data)) =
                (unique, driver, endpoint, data)
            {
                out.push(ir::Storage {
                    id: id.value.to_string(),
                    driver,
                    endpoint,
                    data,
                });
            }
        }
        out
    }

    /// An address, and whether a storage of `driver` (when known) is reached there.
    pub(super) fn endpoint(&mut self, text: &Text, driver: Option<DriverKind>) -> Option<Address> {
        let address = Address::parse(&text.value)
            .map_err(|help| {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadEndpoint,
                        text.span.clone(),
                        format!("`{}` is not an address", text.value),
                    )
                    .label("bad address")
                    .help(help.to_string()),
                );
            })
            .ok()?;
        match driver {
            Some(driver) if !address.suits(driver) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::BadEndpoint,
                        text.span.clone(),
                        format!("a {driver} storage is not reached at `{}`", text.value),
                    )
                    .label("not for this driver")
                    .help(format!("write {}", driver.capabilities().endpoints)),
                );
                None
            }
            _ => Some(address),
        }
    }

    pub(super) fn contacts(&mut self, contacts: &[ast::Contact]) -> Vec<ir::Contact> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for c in contacts {
            let Some(name) = &c.name else { continue };
            let unique = self.unique(&mut seen, name, Code::DuplicateContact, "contact");
            if c.webhook.is_none() && c.command.is_none() {
                let message = format!("contact `{}` has no way to be reached", name.value);
                let help = "add <WEBHOOK>http://127.0.0.1:9000/hook</WEBHOOK> or <COMMAND>/absolute/program</COMMAND>";
                self.diags.push(
                    Diagnostic::error(Code::BadContact, name.span.clone(), message)
                        .label("no WEBHOOK or COMMAND")
                        .help(help.to_string()),
                );
                continue;
            }
            let webhook = c.webhook.as_ref().map(|w| match webhook_fault(&w.value) {
                Some(fault) => {
                    let message = format!("`{}` is not a webhook URL", w.value);
                    self.diags.push(
                        Diagnostic::error(Code::BadContact, w.span.clone(), message)
                            .label("bad webhook")
                            .help(fault),
                    );
                    None
                }
                None => Some(w.value.to_string()),
            });
            let command = c.command.as_ref().map(|p| self.program(p));
            if unique && !matches!(webhook, Some(None)) && !matches!(command, Some(None)) {
                out.push(ir::Contact {
                    name: name.value.to_string(),
                    webhook: webhook.flatten(),
                    command: command.flatten(),
                    secret: None,
                });
            }
        }
        out
    }

    /// A program to run must be an absolute path: it is run without a shell or PATH search.
    pub(super) fn program(&mut self, text: &Text) -> Option<String> {
        if text.value.starts_with('/') {
            return Some(text.value.to_string());
        }
        let message = format!("`{}` is not an absolute path", text.value);
        let help = "programs run directly (no shell, no PATH search); write the full path, e.g. /usr/local/sbin/site-switch";
        self.diags.push(
            Diagnostic::error(Code::BadProgram, text.span.clone(), message)
                .label("relative path")
                .help(help),
        );
        None
    }
}
