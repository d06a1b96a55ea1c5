//! What a `btrfs send` stream carries, read as it passes: its size and whether it
//! changes anything. The format (btrfs-progs `send.h`): a 17-byte header
//! (`btrfs-stream\0`, version), then commands, each a 10-byte header (payload length
//! u32, command u16, CRC u32, little-endian) and its payload. An incremental stream
//! of a subvolume that did not change holds only its SNAPSHOT and END commands.

const HEADER: usize = 17;
const COMMAND_HEADER: usize = 10;
const SUBVOL: u16 = 1;
const SNAPSHOT: u16 = 2;
const END: u16 = 21;

/// Follows a stream chunk by chunk (until it has seen a change: what comes after is
/// only counted, in `bytes`).
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// Bytes seen.
    pub bytes: u64,
    /// Commands that change the received subvolume (all but SUBVOL, SNAPSHOT, END).
    pub changes: u64,
    /// Bytes still to skip (the header, or a payload).
    skip: usize,
    /// A command header split across chunks.
    partial: Vec<u8>,
    started: bool,
}

impl Reader {
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if !self.started {
            self.started = true;
            self.skip = HEADER;
        }
        while !chunk.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(chunk.len());
                self.skip -= n;
                chunk = &chunk[n..];
                continue;
            }
            let need = COMMAND_HEADER - self.partial.len();
            let n = need.min(chunk.len());
            self.partial.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.partial.len() < COMMAND_HEADER {
                break;
            }
            let h = &self.partial;
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let command = u16::from_le_bytes([h[4], h[5]]);
            if !matches!(command, SUBVOL | SNAPSHOT | END) {
                self.changes += 1;
            }
            self.skip = len;
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut c = (payload.len() as u32).to_le_bytes().to_vec();
        c.extend(kind.to_le_bytes());
        c.extend([0; 4]);
        c.extend(payload);
        c
    }

    fn stream(commands: &[(u16, &[u8])]) -> Vec<u8> {
        let mut s = b"btrfs-stream\0".to_vec();
        s.extend(1u32.to_le_bytes());
        for (kind, payload) in commands {
            s.extend(command(*kind, payload));
        }
        s
    }

    #[test]
    fn an_unchanged_snapshot_changes_nothing_in_any_chunking() {
        let empty = stream(&[(SNAPSHOT, b"name and uuids"), (END, b"")]);
        let changed = stream(&[(SNAPSHOT, b"x"), (15, &[7; 300]), (20, b"t"), (END, b"")]);
        for size in [1, 3, 10, 17, 64, 4096] {
            for (bytes, changes) in [(&empty, 0), (&changed, 2)] {
                let mut r = Reader::default();
                bytes.chunks(size).for_each(|c| r.feed(c));
                assert_eq!(r.changes, changes, "chunks of {size}");
                assert_eq!(r.bytes, bytes.len() as u64);
            }
        }
    }
}
