//! Webhooks against a real HTTPS receiver (Python's http.server behind TLS, with
//! certificates this test makes with openssl): verified against the CA given as the
//! system's bundle (SSL_CERT_FILE), signed (HMAC-SHA256 checked by the receiver),
//! retried on 5xx, not on 4xx, refused for a certificate that does not verify, and
//! carried through the proxy `https_proxy` names.
//! One test in its own binary: the CA bundle is read once per process.

use csc_runtime::actions::{post, ActionError, Occurrence};
use csc_runtime::vocab::Event;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`NAME-ca.pem`) and a certificate for 127.0.0.1 it signed (`NAME.pem`, key
/// `NAME-key.pem`).
fn certificates(dir: &Path, name: &str) {
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca-key.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    );
    let (key, csr, cert) = (
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

const RECEIVER: &str = r#"
import hashlib, hmac, http.server, json, ssl, sys
port_file, cert, key, secret, codes, log = sys.argv[1:]
codes = [int(c) for c in codes.split(",") if c]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        got = self.headers.get("X-Cssc-Signature-256", "")
        code = codes.pop(0) if codes else 200
        with open(log, "a") as f:
            f.write(json.dumps({"valid": hmac.compare_digest(got, want), "body": body.decode(), "code": code}) + "\n")
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
server.socket = tls.wrap_socket(server.socket, server_side=True)
open(port_file + ".tmp", "w").write(str(server.server_address[1]))
__import__("os").rename(port_file + ".tmp", port_file)
server.serve_forever()
"#;

struct Receiver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Receiver {
    /// Serves with certificate `name`, answering `codes` in turn (then 200).
    fn start(dir: &Path, name: &str, codes: &str, tag: &str) -> Receiver {
        let port_file = dir.join(format!("{tag}.port"));
        let log = dir.join(format!("{tag}.log"));
        let child = Command::new("python3")
            .args(["-c", RECEIVER])
            .arg(&port_file)
            .arg(dir.join(format!("{name}.pem")))
            .arg(dir.join(format!("{name}-key.pem")))
            .args(["s3cret", codes])
            .arg(&log)
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p;
            }
            assert!(Instant::now() < deadline, "the receiver did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Receiver {
            child,
            url: format!("https://127.0.0.1:{port}/hook"),
            log,
        }
    }

    /// What it received: (signature valid, body, the code it answered).
    fn received(&self) -> Vec<(bool, String, u64)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["valid"] == true,
                    v["body"].as_str().unwrap().to_string(),
                    v["code"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_webhooks_are_verified_signed_and_retried_on_5xx_only() {
    let dir = std::env::temp_dir().join(format!("cssc-https-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir, "trusted");
    certificates(&dir, "stranger");
    // The "system's" bundle holds the trusted CA only (read once, at the first HTTPS).
    std::env::set_var("SSL_CERT_FILE", dir.join("trusted-ca.pem"));
    let what = Occurrence::new("s", 2, Event::OnError, Some("db".into()), "it broke".into());
    let quick = [Duration::from_millis(100); 3];
    let failures = Mutex::new(Vec::new());
    let failed = |text: &str| failures.lock().unwrap().push(text.to_string());

    // A 503, then a 200: two signed deliveries of the same body, the first logged.
    let flaky = Receiver::start(&dir, "trusted", "503", "flaky");
    let ok = post(&flaky.url, Some("s3cret"), &what, &quick, failed).expect("delivered");
    assert!(ok.ends_with(": 200"), "{ok}");
    let got = flaky.received();
    assert_eq!(got.iter().map(|g| g.2).collect::<Vec<_>>(), vec![503, 200]);
    assert!(
        got.iter().all(|g| g.0),
        "every body carries a valid signature: {got:?}"
    );
    assert_eq!(got[0].1, got[1].1, "a retry sends the same body");
    assert!(got[0].1.contains("\"event\":\"onError\""), "{}", got[0].1);
    assert_eq!(failures.lock().unwrap().len(), 1);
    assert!(failures.lock().unwrap()[0].contains("HTTP 503; trying again in"));

    // A wrong secret is what the receiver can tell: its check fails.
    let other = Receiver::start(&dir, "trusted", "", "other-key");
    post(&other.url, Some("not the secret"), &what, &quick, failed).expect("delivered");
    assert_eq!(
        other.received().iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![false]
    );

    // A 404 is the receiver refusing: not retried.
    failures.lock().unwrap().clear();
    let gone = Receiver::start(&dir, "trusted", "404", "gone");
    let err = post(&gone.url, Some("s3cret"), &what, &quick, failed).expect_err("refused");
    assert!(
        matches!(&err, ActionError::Refused { reason, .. } if reason == "HTTP 404"),
        "{err}"
    );
    assert_eq!(gone.received().len(), 1);
    assert!(failures.lock().unwrap().is_empty());

    // Always 500: four attempts, then it gives up and says so.
    let down = Receiver::start(&dir, "trusted", "500,500,500,500,500", "down");
    let err = post(&down.url, Some("s3cret"), &what, &quick, failed).expect_err("gave up");
    assert!(
        matches!(err, ActionError::GaveUp { attempts: 4, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("gave up after 4 attempts"),
        "{err}"
    );
    assert_eq!(down.received().len(), 4);

    // A certificate from a CA the bundle does not hold: refused before any request,
    // and not retried.
    failures.lock().unwrap().clear();
    let stranger = Receiver::start(&dir, "stranger", "", "stranger");
    let err = post(&stranger.url, Some("s3cret"), &what, &quick, failed).expect_err("unverified");
    assert!(
        matches!(&err, ActionError::Refused { reason, .. } if reason.to_lowercase().contains("certificate")),
        "{err}"
    );
    assert!(stranger.received().is_empty());
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );

    // Through the proxy `https_proxy` names: a CONNECT tunnel to the receiver, TLS to
    // the receiver inside it (the proxy sees only the target).
    let (proxy, tunnels) = connect_proxy();
    std::env::set_var("https_proxy", format!("http://{proxy}"));
    let proxied = Receiver::start(&dir, "trusted", "", "proxied");
    let ok = post(&proxied.url, Some("s3cret"), &what, &quick, failed).expect("delivered");
    assert!(ok.ends_with(": 200"), "{ok}");
    assert_eq!(proxied.received().len(), 1);
    let target = proxied
        .url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    assert_eq!(*tunnels.lock().unwrap(), vec![target.to_string()]);
    std::env::remove_var("https_proxy");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HTTP CONNECT proxy on a loopback port: each tunnel's target is recorded, then
/// bytes are carried both ways.
fn connect_proxy() -> (std::net::SocketAddr, std::sync::Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
    let addr = listener.local_addr().expect("address");
    let tunnels = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&tunnels);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let mut reader = BufReader::new(client.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let target = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0)
                    || header.trim().is_empty()
                {
                    break;
                }
            }
            seen.lock().unwrap().push(target.clone());
            let Ok(upstream) = TcpStream::connect(&target) else {
                continue;
            };
            let mut answer = client.try_clone().expect("clone");
            let _ = answer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let (mut up_read, mut up_write) = (upstream.try_clone().expect("clone"), upstream);
            let mut down_write = client;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut reader, &mut up_write);
                let _ = up_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_read, &mut down_write);
                let _ = down_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, tunnels)
}
