//! Online verify (`BIN verify SEQ [--repair]`): each pair's target compared with its
//! source while the session runs, read through NBD exports of both (DRBD's online
//! verify, a ZFS scrub), at a bounded rate so the application keeps its speed. A
//! difference is read again before it is reported (a synchronous pair's write in flight
//! is on the source a moment before it is on the target); `repair` copies just the
//! differing extents from source to target, reading both again after each copy until
//! they agree, so a write of the application racing the repair is never undone.
//!
//! Runs on its own thread with its own connections: the executor's loop goes on.

use crate::address::Address;
use crate::nbd::Nbd;
use std::time::{Duration, Instant};

/// What is compared at once; a difference is reported to this granule.
pub const GRANULE: u64 = 65536;
/// How much is read from each side per request.
const CHUNK: u64 = 1 << 20;
/// How often a differing granule is read again before it counts.
const REREADS: usize = 3;
/// How often a repair is tried before the extent is said to be unrepaired.
const REPAIR_TRIES: usize = 5;

/// One side of a pair, as verify reads it.
#[derive(Clone, Debug)]
pub struct Side {
    pub address: Address,
    pub export: String,
}

/// A pair to verify.
#[derive(Clone, Debug)]
pub struct Job {
    pub sequence: u32,
    pub copyset: usize,
    pub source: Side,
    pub target: Side,
}

/// A run of differing bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// What verify found for one pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub sequence: u32,
    pub copyset: usize,
    /// Bytes compared (of the source).
    pub bytes: u64,
    pub differing: Vec<Extent>,
    /// Bytes copied by the repair.
    pub repaired: u64,
    /// Extents the repair could not make agree.
    pub unrepaired: Vec<Extent>,
}

/// How verify runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Bytes per second read from each side, at most.
    pub rate: u64,
    pub repair: bool,
}

/// Why a pair could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("cannot read the {side} {export} at {address}: {source}")]
    Connect {
        side: &'static str,
        export: String,
        address: Box<Address>,
        #[source]
        source: std::io::Error,
    },
    #[error("the target holds {target} bytes, less than its source ({source_size})")]
    TargetSmaller { target: u64, source_size: u64 },
    #[error("reading failed: {0}")]
    Read(#[source] std::io::Error),
    /// The thread that read ended without an answer (it panicked).
    #[error("the verify thread died")]
    Died,
}

/// Verifies `job`; `progress` is told the bytes compared so far.
pub fn run(job: &Job, options: Options, progress: &dyn Fn(u64)) -> Result<Verified, VerifyError> {
    let connect = |side: &Side, what: &'static str| {
        Nbd::connect(&side.address, &side.export).map_err(|source| VerifyError::Connect {
            side: what,
            export: side.export.clone(),
            address: Box::new(side.address.clone()),
            source,
        })
    };
    let mut source = connect(&job.source, "source")?;
    let mut target = connect(&job.target, "target")?;
    let size = source.size;
    if target.size < size {
        return Err(VerifyError::TargetSmaller {
            target: target.size,
            source_size: size,
        });
    }
    let mut found = Verified {
        sequence: job.sequence,
        copyset: job.copyset,
        ..Verified::default()
    };
    let started = Instant::now();
    let (mut a, mut b) = (vec![0u8; CHUNK as usize], vec![0u8; CHUNK as usize]);
    let io = VerifyError::Read;
    let mut offset = 0;
    while offset < size {
        let len = CHUNK.min(size - offset) as usize;
        source.read(offset, &mut a[..len]).map_err(io)?;
        target.read(offset, &mut b[..len]).map_err(io)?;
        for (i, (x, y)) in a[..len]
            .chunks(GRANULE as usize)
            .zip(b[..len].chunks(GRANULE as usize))
            .enumerate()
        {
            if x == y {
                continue;
            }
            let granule = Extent {
                offset: offset + i as u64 * GRANULE,
                len: x.len() as u64,
            };
            if still_differs(&mut source, &mut target, granule).map_err(io)? {
                push_merged(&mut found.differing, granule);
            }
        }
        offset += len as u64;
        found.bytes = offset;
        progress(offset);
        // At most `rate` bytes a second from each side.
        let due = Duration::from_secs_f64(offset as f64 / options.rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    if options.repair {
        for extent in found.differing.clone() {
            if repair(&mut source, &mut target, extent).map_err(io)? {
                found.repaired += extent.len;
            } else {
                found.unrepaired.push(extent);
            }
        }
    }
    Ok(found)
}

/// Whether a granule still differs after being read again a few times.
fn still_differs(source: &mut Nbd, target: &mut Nbd, at: Extent) -> std::io::Result<bool> {
    let (mut a, mut b) = (vec![0u8; at.len as usize], vec![0u8; at.len as usize]);
    for _ in 0..REREADS {
        std::thread::sleep(Duration::from_millis(20));
        source.read(at.offset, &mut a)?;
        target.read(at.offset, &mut b)?;
        if a == b {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies an extent from source to target until both read the same.
fn repair(source: &mut Nbd, target: &mut Nbd, at: Extent) -> std::io::Result<bool> {
    let (mut a, mut b) = (vec![0u8; at.len as usize], vec![0u8; at.len as usize]);
    for _ in 0..REPAIR_TRIES {
        source.read(at.offset, &mut a)?;
        target.write(at.offset, &a)?;
        target.flush()?;
        // Read again: a write of the application between the read and the copy reached
        // the target through its mirror and may have been overwritten with older data.
        source.read(at.offset, &mut a)?;
        target.read(at.offset, &mut b)?;
        if a == b {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds a granule to the extents, joining it to the last one when they touch.
fn push_merged(extents: &mut Vec<Extent>, granule: Extent) {
    match extents.last_mut() {
        Some(last) if last.offset + last.len == granule.offset => last.len += granule.len,
        _ => extents.push(granule),
    }
}

/// One line per pair, as `verify` answers.
pub fn describe(found: &Verified, name: &str) -> String {
    let mut line = format!(
        "sequence {} copy set {name}: {} bytes compared, {} differing extent(s)",
        found.sequence,
        found.bytes,
        found.differing.len()
    );
    for e in &found.differing {
        line.push_str(&format!("\n  {} bytes at offset {}", e.len, e.offset));
    }
    if found.repaired > 0 || !found.unrepaired.is_empty() {
        line.push_str(&format!("\n  repaired: {} bytes copied", found.repaired));
    }
    for e in &found.unrepaired {
        line.push_str(&format!(
            "\n  not repaired (it kept changing): {} bytes at offset {}",
            e.len, e.offset
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_granules_make_one_extent() {
        let mut extents = Vec::new();
        for offset in [0, GRANULE, 5 * GRANULE] {
            push_merged(
                &mut extents,
                Extent {
                    offset,
                    len: GRANULE,
                },
            );
        }
        assert_eq!(
            extents,
            vec![
                Extent {
                    offset: 0,
                    len: 2 * GRANULE
                },
                Extent {
                    offset: 5 * GRANULE,
                    len: GRANULE
                }
            ]
        );
    }
}
