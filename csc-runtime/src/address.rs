//! Socket addresses as documents write them: `unix:PATH` or `tcp:HOST:PORT`. The
//! compiler checks them with this parser and the runtime connects with it.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Unix(String),
    Tcp { host: String, port: u16 },
}

impl Address {
    /// Parses an address; the error says what is valid.
    pub fn parse(text: &str) -> Result<Address, String> {
        let valid = "write unix:/path/to/socket or tcp:HOST:PORT (e.g. tcp:127.0.0.1:4444)";
        if let Some(path) = text.strip_prefix("unix:") {
            return if path.is_empty() {
                Err(format!("the socket path is empty; {valid}"))
            } else {
                Ok(Address::Unix(path.to_string()))
            };
        }
        let Some(rest) = text.strip_prefix("tcp:") else {
            return Err(format!("`{text}` has no unix: or tcp: prefix; {valid}"));
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` has no port; {valid}"))?;
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("`{port}` is not a port from 1 to 65535; {valid}")),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("`{host}` is not a host name; {valid}"));
        }
        Ok(Address::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{path}"),
            Address::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

impl From<crate::session::Endpoint> for Address {
    fn from(e: crate::session::Endpoint) -> Address {
        match e {
            crate::session::Endpoint::Unix(path) => Address::Unix(path.to_string()),
            crate::session::Endpoint::Tcp { host, port } => Address::Tcp {
                host: host.to_string(),
                port,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for text in ["unix:/run/a.qmp", "tcp:127.0.0.1:4444", "tcp:[::1]:10809"] {
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
        ] {
            assert!(Address::parse(text).is_err(), "{text}");
        }
    }
}
