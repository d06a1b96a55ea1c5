//! A TCP relay on loopback that can be cut like a partitioned link: once cut, it
//! forwards nothing more, in either direction, and keeps every connection open (no
//! EOF, no RST), and new connections are accepted and left unanswered. It can also
//! delay what it forwards, each way, like a long link (this kernel has no netem).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Every connection, kept open after the cut.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

/// Forwards what `from` sends to `to`, each chunk `delay` after it arrived (in order:
/// a queue, drained by a thread of its own).
fn pump(from: TcpStream, to: TcpStream, cut: Arc<AtomicBool>, delay: Duration) {
    if delay.is_zero() {
        return forward(from, to, cut);
    }
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let mut out = to.try_clone().expect("clone");
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if out.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = out.shutdown(std::net::Shutdown::Write);
    });
    let mut from = from;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !cut.load(Ordering::SeqCst)
            && tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
        {
            return;
        }
    }
}

fn forward(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                if !cut.load(Ordering::SeqCst) {
                    let _ = to.shutdown(std::net::Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            // Partitioned: what was sent is lost, and nothing says so.
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

impl Relay {
    /// A relay to `target` (HOST:PORT).
    pub fn to(target: String) -> Relay {
        Relay::delayed(target, Duration::ZERO)
    }

    /// A relay to `target` that holds what it forwards `one_way` in each direction
    /// (a round trip of twice that).
    pub fn delayed(target: String, one_way: Duration) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay port");
        let port = listener.local_addr().expect("port").port();
        let cut = Arc::new(AtomicBool::new(false));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, h) = (Arc::clone(&cut), Arc::clone(&held));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if let Ok(keep) = client.try_clone() {
                    h.lock().expect("held").push(keep);
                }
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                if let Ok(keep) = server.try_clone() {
                    h.lock().expect("held").push(keep);
                }
                let (a, b) = (client.try_clone(), server.try_clone());
                if let (Ok(a), Ok(b)) = (a, b) {
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let c1 = Arc::clone(&c);
                    std::thread::spawn(move || pump(client, b, c1, one_way));
                    let c2 = Arc::clone(&c);
                    std::thread::spawn(move || pump(server, a, c2, one_way));
                }
            }
        });
        Relay { port, cut, held }
    }

    /// Cuts the link: from now on nothing passes, and nothing is closed.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for stream in self.held.lock().expect("held").iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
