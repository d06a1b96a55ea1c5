//! An application doing dependent writes, and the check of what its targets hold.
//!
//! Write k is issued only after write k-1 is acknowledged, round robin over the
//! volumes: write k goes to volume k % n, slot k / n (4 KiB each), and carries a tag
//! and k. After a freeze the targets must hold exactly writes 0..K for some K (a
//! prefix: no write present whose predecessor is missing), and for synchronous pairs
//! K covers every write acknowledged before the failure. The writer speaks NBD itself
//! (fixed newstyle, NBD_OPT_GO, simple replies) so that it times each acknowledgement
//! on its own clock.

use csc_runtime::lab::Lab;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

const SLOT: usize = 4096;
const TAG: &[u8; 8] = b"cssc-dw1";

/// One NBD connection to an export.
struct Nbd {
    stream: TcpStream,
    handle: u64,
}

impl Nbd {
    fn connect(port: u16, export: &str) -> std::io::Result<Nbd> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let mut greeting = [0u8; 18];
        stream.read_exact(&mut greeting)?;
        if &greeting[..16] != b"NBDMAGICIHAVEOPT" {
            return Err(std::io::Error::other("not an NBD server"));
        }
        // Client flags: fixed newstyle, no zeroes.
        stream.write_all(&3u32.to_be_bytes())?;
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        let mut option = b"IHAVEOPT".to_vec();
        option.extend_from_slice(&7u32.to_be_bytes()); // NBD_OPT_GO
        option.extend_from_slice(&(data.len() as u32).to_be_bytes());
        option.extend_from_slice(&data);
        stream.write_all(&option)?;
        loop {
            let mut head = [0u8; 20];
            stream.read_exact(&mut head)?;
            let kind = u32::from_be_bytes(head[12..16].try_into().expect("4 bytes"));
            let len = u32::from_be_bytes(head[16..20].try_into().expect("4 bytes"));
            let mut body = vec![0u8; len as usize];
            stream.read_exact(&mut body)?;
            match kind {
                1 => return Ok(Nbd { stream, handle: 0 }), // NBD_REP_ACK
                k if k & 0x8000_0000 != 0 => {
                    return Err(std::io::Error::other(format!(
                        "export {export} refused: {}",
                        String::from_utf8_lossy(&body)
                    )))
                }
                _ => {} // NBD_REP_INFO
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.handle += 1;
        let mut request = Vec::with_capacity(28 + data.len());
        request.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        request.extend_from_slice(&0u16.to_be_bytes()); // flags
        request.extend_from_slice(&1u16.to_be_bytes()); // NBD_CMD_WRITE
        request.extend_from_slice(&self.handle.to_be_bytes());
        request.extend_from_slice(&offset.to_be_bytes());
        request.extend_from_slice(&(data.len() as u32).to_be_bytes());
        request.extend_from_slice(data);
        self.stream.write_all(&request)?;
        let mut reply = [0u8; 16];
        self.stream.read_exact(&mut reply)?;
        let error = u32::from_be_bytes(reply[4..8].try_into().expect("4 bytes"));
        if error != 0 {
            return Err(std::io::Error::other(format!("NBD error {error}")));
        }
        Ok(())
    }
}

/// A running dependent writer.
pub struct Writer {
    stop: Arc<AtomicBool>,
    /// When write k was acknowledged, by index k.
    pub acks: Arc<Mutex<Vec<Instant>>>,
    handle: JoinHandle<Result<(), String>>,
    volumes: usize,
}

impl Writer {
    /// Starts writing through the `app-VOLUME` exports of `volumes` (site, volume),
    /// each `slots` 4 KiB slots long; stops by itself before reusing a slot.
    pub fn start(lab: &Lab, volumes: &[(&str, &str)], slots: u64) -> Writer {
        let mut connections: Vec<Nbd> = volumes
            .iter()
            .map(|(site, volume)| {
                Nbd::connect(lab.sites[*site].nbd_port, &format!("app-{volume}"))
                    .expect("the application connects")
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (halt, record) = (Arc::clone(&stop), Arc::clone(&acks));
        let n = connections.len() as u64;
        let handle = std::thread::spawn(move || {
            let mut block = vec![0u8; SLOT];
            for k in 0..slots * n {
                if halt.load(Ordering::Relaxed) {
                    return Ok(());
                }
                block[..8].copy_from_slice(TAG);
                for chunk in block[8..].chunks_mut(8) {
                    chunk.copy_from_slice(&k.to_le_bytes());
                }
                let volume = (k % n) as usize;
                connections[volume]
                    .write((k / n) * SLOT as u64, &block)
                    .map_err(|e| format!("write {k}: {e}"))?;
                record.lock().expect("acks").push(Instant::now());
            }
            Ok(())
        });
        Writer {
            stop,
            acks,
            handle,
            volumes: volumes.len(),
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    /// How many writes were acknowledged before `instant`.
    pub fn acknowledged_before(&self, instant: Instant) -> usize {
        self.acks
            .lock()
            .expect("acks")
            .partition_point(|t| *t < instant)
    }

    /// The first acknowledgement after `instant`, if any.
    pub fn first_ack_after(&self, instant: Instant) -> Option<Instant> {
        let acks = self.acks.lock().expect("acks");
        acks.get(acks.partition_point(|t| *t <= instant)).copied()
    }

    /// Waits until at least `more` further writes are acknowledged (or panics after 20 s).
    pub fn wait_for_progress(&self, more: usize) {
        let want = self.acknowledged() + more;
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while self.acknowledged() < want {
            assert!(
                Instant::now() < deadline,
                "the application made no progress: {} writes acknowledged",
                self.acknowledged()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Stops the writer; returns how it ended (an error once its source is gone).
    pub fn stop(self) -> (Vec<Instant>, Result<(), String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let ended = self.handle.join().expect("writer thread");
        let acks = self.acks.lock().expect("acks").clone();
        (acks, ended, self.volumes)
    }
}

/// What a set of targets holds of the writes.
#[derive(Debug)]
pub struct Held {
    /// Writes 0..prefix are all present.
    pub prefix: u64,
    /// Writes present past the first missing one: each breaks consistency.
    pub past_gap: Vec<u64>,
}

/// Reads every slot of the target images (in the writer's volume order).
pub fn held(lab: &Lab, targets: &[(&str, &str)], slots: u64) -> Held {
    let mut present = std::collections::BTreeSet::new();
    for (volume, (site, name)) in targets.iter().enumerate() {
        let image = std::fs::read(lab.image(site, name)).expect("target image");
        for slot in 0..slots as usize {
            let bytes = &image[slot * SLOT..(slot + 1) * SLOT];
            if &bytes[..8] == TAG {
                let k = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
                assert_eq!(
                    k % targets.len() as u64,
                    volume as u64,
                    "write {k} landed on the wrong volume"
                );
                present.insert(k);
            }
        }
    }
    let prefix = (0..).find(|k| !present.contains(k)).expect("a gap");
    Held {
        prefix,
        past_gap: present.into_iter().filter(|k| *k > prefix).collect(),
    }
}

/// Writes `pattern` in 64 KiB at each offset through the volume's `app-` export, as an
/// application would (one connection, no process to start: fast enough to land inside
/// a short copy); returns once every write is acknowledged.
pub fn write_pattern(lab: &Lab, site: &str, volume: &str, pattern: u8, offsets: &[u64]) {
    let mut nbd = Nbd::connect(lab.sites[site].nbd_port, &format!("app-{volume}"))
        .expect("the application connects");
    let block = vec![pattern; 65536];
    for offset in offsets {
        nbd.write(*offset, &block).expect("write acknowledged");
    }
}
