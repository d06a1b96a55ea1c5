//! etcd v3 through its JSON gateway (`/v3/...` over HTTP), with the blocking HTTP
//! client the runtime already has for webhooks (ureq): no gRPC stack, no async
//! runtime, no `protoc` at build time. Keys and values travel base64-encoded; 64-bit
//! numbers as strings (the gateway's JSON mapping of protobuf).

use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;

/// Why etcd did not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// No member answered (all down, partitioned, or the addresses wrong).
    #[error("no etcd member answered ({tried}): {last}")]
    Unreachable { tried: String, last: String },
    /// A member answered, not with what the API returns.
    #[error("etcd {path}: {said}")]
    Refused { path: String, said: String },
}

/// One key's current value, and its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease it is bound to (0: none).
    pub lease: i64,
}

/// A client of an etcd cluster: tries its members in turn, staying with the one that
/// answered last.
pub struct Etcd {
    members: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
    agent: ureq::Agent,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn number(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The key just after every key that starts with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A comparison of a transaction: the key's value is `value`.
pub fn value_is(key: &str, value: &str) -> Value {
    json!({ "key": b64(key.as_bytes()), "target": "VALUE", "result": "EQUAL", "value": b64(value.as_bytes()) })
}

/// A comparison of a transaction: the key does not exist.
pub fn absent(key: &str) -> Value {
    json!({ "key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
}

/// A put of a transaction, bound to `lease` if given.
pub fn put(key: &str, value: &[u8], lease: Option<i64>) -> Value {
    let mut put = json!({ "key": b64(key.as_bytes()), "value": b64(value) });
    if let Some(lease) = lease {
        put["lease"] = Value::String(lease.to_string());
    }
    json!({ "request_put": put })
}

impl Etcd {
    /// A client of the members at `members` (`http://HOST:PORT`), each call bounded
    /// by `timeout`.
    pub fn new(members: Vec<String>, timeout: Duration) -> Etcd {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Etcd {
            members,
            current: std::sync::atomic::AtomicUsize::new(0),
            agent,
        }
    }

    fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        use std::sync::atomic::Ordering;
        let first = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..self.members.len() {
            let i = (first + k) % self.members.len();
            let url = format!("{}/v3/{path}", self.members[i].trim_end_matches('/'));
            let reply = self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string());
            match reply {
                Ok(mut r) => {
                    let status = r.status().as_u16();
                    let text = r.body_mut().read_to_string().unwrap_or_default();
                    // A member without a leader (no quorum) says so with a 5xx.
                    if status >= 500 {
                        last = format!("{url}: HTTP {status}: {}", text.trim());
                        continue;
                    }
                    self.current.store(i, Ordering::Relaxed);
                    let value: Value =
                        serde_json::from_str(&text).map_err(|e| EtcdError::Refused {
                            path: path.into(),
                            said: format!("{e}: {}", text.trim()),
                        })?;
                    if status >= 400 || value.get("error").is_some() {
                        return Err(EtcdError::Refused {
                            path: path.into(),
                            said: text.trim().to_string(),
                        });
                    }
                    // keepalive streams: its one answer is under `result`.
                    return Ok(value.get("result").cloned().unwrap_or(value));
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(EtcdError::Unreachable {
            tried: self.members.join(", "),
            last,
        })
    }

    /// A lease of `ttl` seconds: its id.
    pub fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        Ok(number(
            &self.call("lease/grant", &json!({ "TTL": ttl }))?["ID"],
        ))
    }

    /// Renews a lease: its remaining seconds (0: it had expired).
    pub fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        Ok(number(
            &self.call("lease/keepalive", &json!({ "ID": lease.to_string() }))?["TTL"],
        ))
    }

    /// A lease's remaining seconds (-1: it expired).
    pub fn time_to_live(&self, lease: i64) -> Result<i64, EtcdError> {
        Ok(number(
            &self.call("lease/timetolive", &json!({ "ID": lease.to_string() }))?["TTL"],
        ))
    }

    /// Ends a lease now (its keys go with it).
    pub fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("lease/revoke", &json!({ "ID": lease.to_string() }))
            .map(|_| ())
    }

    /// Runs `success` if every comparison holds (atomically): whether it did.
    pub fn txn(&self, compare: Vec<Value>, success: Vec<Value>) -> Result<bool, EtcdError> {
        let reply = self.call(
            "kv/txn",
            &json!({ "compare": compare, "success": success, "failure": [] }),
        )?;
        Ok(reply["succeeded"] == Value::Bool(true))
    }

    /// The key `key`, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        Ok(self
            .range(&json!({ "key": b64(key.as_bytes()) }))?
            .into_iter()
            .next())
    }

    /// Every key that starts with `prefix`, in key order.
    pub fn prefixed(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        self.range(&json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)) }))
    }

    fn range(&self, request: &Value) -> Result<Vec<Kv>, EtcdError> {
        let reply = self.call("kv/range", request)?;
        let decode = |v: &Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .unwrap_or_default()
        };
        Ok(reply["kvs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|kv| Kv {
                key: String::from_utf8_lossy(&decode(&kv["key"])).into_owned(),
                value: decode(&kv["value"]),
                create_revision: number(&kv["create_revision"]),
                mod_revision: number(&kv["mod_revision"]),
                lease: number(&kv["lease"]),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_just_after_its_last_key() {
        assert_eq!(prefix_end("/cssc/a/"), b"/cssc/a0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
