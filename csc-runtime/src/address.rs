//! Storage endpoints as documents write them: sockets (`unix:PATH`, `tcp:HOST:PORT`,
//! for qemu) and pools (`local:/PATH`, `ssh:[USER@]HOST[:PORT]:/PATH`, for btrfs). The
//! compiler checks them with this parser and the runtime connects with it.

use std::fmt;

/// How a socket address is written (qemu's monitor and data).
const SOCKET: &str = "write unix:/path/to/socket or tcp:HOST:PORT (e.g. tcp:127.0.0.1:4444)";
/// How a pool is written (btrfs).
const POOL: &str =
    "write local:/PATH or ssh:[USER@]HOST[:PORT]:/PATH (e.g. ssh:backup@dr.example:/srv/pool2)";

/// Why a text is not an address; each says what is valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    #[error("`{0}` has no unix:, tcp:, local: or ssh: prefix; {SOCKET} for qemu, or local:/PATH or ssh:[USER@]HOST[:PORT]:/PATH for btrfs")]
    NoPrefix(String),
    #[error("the socket path is empty; {SOCKET}")]
    EmptySocketPath,
    #[error("`{0}` has no port; {SOCKET}")]
    NoPort(String),
    #[error("`{0}` is not a port from 1 to 65535; {SOCKET}")]
    BadPort(String),
    #[error("`{0}` is not a host name; {SOCKET}")]
    BadHost(String),
    #[error("`{0}` is not an absolute path; {POOL}")]
    NotAbsolute(String),
    #[error("{0}; {POOL}")]
    Ssh(SshFault),
}

/// What is wrong with an `ssh:` pool address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SshFault {
    #[error("`ssh:{0}` has no :/PATH after the host")]
    NoPath(String),
    #[error("`{0}` is not a port from 1 to 65535")]
    BadPort(String),
    #[error("`{0}` is not [USER@]HOST[:PORT]")]
    BadLogin(String),
}

/// A host as sockets, `ss` and ssh take it: without the brackets an IPv6 literal is
/// written with in an address (`tcp:[::1]:4444`).
pub fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Unix(String),
    Tcp {
        host: String,
        port: u16,
    },
    /// A directory on this host (a mounted btrfs file system).
    Local(String),
    /// A directory on another host, reached with `ssh`.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
}

impl Address {
    /// Parses an address; the error says what is valid.
    /// Whether this is a TCP address that stays on this host (127.0.0.0/8, ::1,
    /// localhost): traffic to it crosses no link. A host name other than localhost
    /// may resolve anywhere, so it is not.
    pub fn is_loopback(&self) -> bool {
        match self {
            Address::Tcp { host, .. } => {
                let host = bare_host(host);
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            _ => false,
        }
    }

    pub fn parse(text: &str) -> Result<Address, AddressError> {
        if let Some(path) = text.strip_prefix("local:") {
            return if path.starts_with('/') {
                Ok(Address::Local(path.to_string()))
            } else {
                Err(AddressError::NotAbsolute(path.to_string()))
            };
        }
        if let Some(rest) = text.strip_prefix("ssh:") {
            return Address::parse_ssh(rest).map_err(AddressError::Ssh);
        }
        if let Some(path) = text.strip_prefix("unix:") {
            return if path.is_empty() {
                Err(AddressError::EmptySocketPath)
            } else {
                Ok(Address::Unix(path.to_string()))
            };
        }
        let Some(rest) = text.strip_prefix("tcp:") else {
            return Err(AddressError::NoPrefix(text.to_string()));
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| AddressError::NoPort(text.to_string()))?;
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(AddressError::BadPort(port.to_string())),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(AddressError::BadHost(host.to_string()));
        }
        Ok(Address::Tcp {
            host: host.to_string(),
            port,
        })
    }

    /// `[USER@]HOST[:PORT]:/PATH` (after `ssh:`).
    fn parse_ssh(rest: &str) -> Result<Address, SshFault> {
        let (login, path) = rest
            .split_once(":/")
            .map(|(l, p)| (l, format!("/{p}")))
            .ok_or_else(|| SshFault::NoPath(rest.to_string()))?;
        let (user, host_port) = match login.rsplit_once('@') {
            Some((user, hp)) => (Some(user.to_string()), hp),
            None => (None, login),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => {
                match p.parse::<u16>() {
                    Ok(port) if port > 0 => (h, Some(port)),
                    _ => return Err(SshFault::BadPort(p.to_string())),
                }
            }
            _ => (host_port, None),
        };
        let bad = |s: &str| {
            s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '@' || c == '/')
        };
        if bad(host) || user.as_deref().is_some_and(bad) || host.starts_with('-') {
            return Err(SshFault::BadLogin(login.to_string()));
        }
        Ok(Address::Ssh {
            user,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Whether a storage of this kind can be reached at this address.
    pub fn suits(&self, driver: crate::vocab::DriverKind) -> bool {
        use crate::vocab::DriverKind;
        match self {
            Address::Unix(_) | Address::Tcp { .. } => driver == DriverKind::Qemu,
            Address::Local(_) | Address::Ssh { .. } => driver == DriverKind::Btrfs,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{path}"),
            Address::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Address::Local(path) => write!(f, "local:{path}"),
            Address::Ssh {
                user,
                host,
                port,
                path,
            } => {
                f.write_str("ssh:")?;
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                f.write_str(host)?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                write!(f, ":{path}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for text in [
            "unix:/run/a.qmp",
            "tcp:127.0.0.1:4444",
            "tcp:[::1]:10809",
            "local:/srv/pool1",
            "ssh:dr.example:/srv/pool2",
            "ssh:backup@dr.example:2222:/srv/pool2",
            "ssh:root@[::1]:22:/p",
        ] {
            assert_eq!(Address::parse(text).expect(text).to_string(), text);
        }
        assert_eq!(
            Address::parse("tcp:[::1]:4444"),
            Ok(Address::Tcp {
                host: "[::1]".into(),
                port: 4444
            })
        );
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for text in [
            "tcp:host:0",
            "tcp:host",
            "http://x",
            "unix:",
            "tcp::80",
            "tcp:a b:80",
            "tcp:h:70000",
            "local:relative",
            "ssh:host",
            "ssh:-oProxyCommand=x:/p",
            "ssh:a b:/p",
            "ssh:host:0:/p",
        ] {
            assert!(Address::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn ssh_parts_are_read() {
        assert_eq!(
            Address::parse("ssh:backup@dr.example:2222:/srv/pool2"),
            Ok(Address::Ssh {
                user: Some("backup".into()),
                host: "dr.example".into(),
                port: Some(2222),
                path: "/srv/pool2".into()
            })
        );
        assert_eq!(
            Address::parse("ssh:[::1]:/p"),
            Ok(Address::Ssh {
                user: None,
                host: "[::1]".into(),
                port: None,
                path: "/p".into()
            })
        );
    }
}
