//! A TCP relay on loopback that can be cut like a partitioned link and healed: while
//! cut, nothing passes in either direction and nothing is closed (no EOF, no RST);
//! what is sent meanwhile waits in the sockets, and new connections are accepted and
//! wait too, as retransmissions and SYNs would. Once healed, all of it goes on. It can
//! also delay what it forwards, each way, like a long link (this kernel has no netem).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Every connection, closed when the relay goes.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

/// Waits while the link is cut.
fn pass(cut: &AtomicBool) {
    while cut.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Forwards what `from` sends to `to`, each chunk `delay` after it arrived (in order:
/// a queue, drained by a thread of its own); nothing is read while the link is cut.
fn pump(mut from: TcpStream, to: TcpStream, cut: Arc<AtomicBool>, delay: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let mut out = to;
    let sender_cut = Arc::clone(&cut);
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            pass(&sender_cut);
            if out.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = out.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = [0u8; 64 * 1024];
    loop {
        pass(&cut);
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
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
                let (c, h, target) = (Arc::clone(&c), Arc::clone(&h), target.clone());
                std::thread::spawn(move || {
                    // A connection made while the link is cut goes on once it heals.
                    pass(&c);
                    let Ok(server) = TcpStream::connect(&target) else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    if let (Ok(x), Ok(y)) = (client.try_clone(), server.try_clone()) {
                        h.lock().expect("held").extend([x, y]);
                    }
                    let c2 = Arc::clone(&c);
                    std::thread::spawn(move || pump(server, a, c2, one_way));
                    pump(client, b, c, one_way);
                });
            }
        });
        Relay { port, cut, held }
    }

    /// Cuts the link: from now on nothing passes, and nothing is closed.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Heals the link: what waited goes on.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut.store(false, Ordering::SeqCst);
        for stream in self.held.lock().expect("held").iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
