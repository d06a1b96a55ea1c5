//! `run --metrics ADDR`: the session's state in Prometheus' text format, served at
//! `GET /metrics` on an address the operator names (off unless asked; give a loopback
//! address to keep it on the host). The executor renders the text once a second; this
//! module only serves the last rendering. One read-only GET needs no HTTP framework,
//! so every solution binary stays free of one.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The last rendering, shared between the executor and the server.
pub type Page = Arc<Mutex<String>>;

/// Serves `page` on `addr` from a thread of its own; returns the bound address.
pub fn serve(addr: &str, page: Page) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &page);
            }
        })?;
    Ok(bound)
}

/// Reads the request head (bounded) and answers it: the page for `GET /metrics`, 404
/// for anything else.
fn answer(stream: TcpStream, page: &Page) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers, up to the blank line (at most 100 of them).
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => ("200 OK", page.lock().expect("page").clone()),
        _ => ("404 Not Found", "GET /metrics\n".to_string()),
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A label value as Prometheus' text format writes it.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_page_is_served_at_get_metrics_only() {
        let page: Page = Arc::new(Mutex::new("cssc_up 1\n".into()));
        let addr = serve("127.0.0.1:0", Arc::clone(&page)).expect("bind");
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).expect("connect");
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
            let mut text = String::new();
            s.read_to_string(&mut text).expect("answer");
            text
        };
        let ok = get("/metrics");
        assert!(
            ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("\r\n\r\ncssc_up 1\n"),
            "{ok}"
        );
        *page.lock().unwrap() = "cssc_up 0\n".into();
        assert!(get("/metrics").ends_with("cssc_up 0\n"));
        assert!(get("/").starts_with("HTTP/1.1 404"));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
