//! A small NBD client (fixed newstyle handshake, `NBD_OPT_GO`, simple replies): what
//! `verify` reads the two sides of a pair through, and writes a repair with. No crate
//! on crates.io offers a maintained synchronous NBD client; the subset needed is a
//! handful of fixed-size messages (the protocol: NetworkBlockDevice/nbd doc/proto.md).

use crate::address::Address;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

const OPTION_MAGIC: &[u8; 8] = b"IHAVEOPT";
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const INFO_EXPORT: u16 = 0;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_FLUSH: u16 = 3;
/// The largest request qemu's server takes (32 MiB); reads and writes are cut below it.
const MAX_REQUEST: usize = 1 << 24;

/// A byte stream to a server: TCP or a unix socket.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One connection to one export.
pub struct Nbd {
    stream: Box<dyn Stream>,
    handle: u64,
    /// The export's size in bytes.
    pub size: u64,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

impl Nbd {
    /// Connects to `export` at `address` (TCP or unix).
    pub fn connect(address: &Address, export: &str) -> io::Result<Nbd> {
        let stream: Box<dyn Stream> = match address {
            Address::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port))?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Address::Unix(path) => Box::new(UnixStream::connect(path)?),
            other => {
                return Err(io::Error::other(format!(
                    "{other} is no NBD address (tcp: or unix:)"
                )))
            }
        };
        Nbd::handshake(stream, export)
    }

    fn handshake(mut stream: Box<dyn Stream>, export: &str) -> io::Result<Nbd> {
        let mut greeting = [0u8; 18];
        stream.read_exact(&mut greeting)?;
        if &greeting[..8] != b"NBDMAGIC" || &greeting[8..16] != OPTION_MAGIC {
            return Err(io::Error::other("not an NBD server (fixed newstyle)"));
        }
        // Client flags: fixed newstyle, no zeroes.
        stream.write_all(&3u32.to_be_bytes())?;
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes()); // no information requests
        let mut option = OPTION_MAGIC.to_vec();
        option.extend_from_slice(&OPT_GO.to_be_bytes());
        option.extend_from_slice(&(data.len() as u32).to_be_bytes());
        option.extend_from_slice(&data);
        stream.write_all(&option)?;
        let mut size = None;
        loop {
            let mut head = [0u8; 20];
            stream.read_exact(&mut head)?;
            let (kind, len) = (be32(&head[12..]), be32(&head[16..]));
            let mut body = vec![0u8; len as usize];
            stream.read_exact(&mut body)?;
            match kind {
                REP_ACK => break,
                REP_INFO if body.len() >= 10 && body[..2] == INFO_EXPORT.to_be_bytes() => {
                    size = Some(u64::from_be_bytes(body[2..10].try_into().expect("8 bytes")));
                }
                k if k & 0x8000_0000 != 0 => {
                    return Err(io::Error::other(format!(
                        "export {export} refused: {}",
                        String::from_utf8_lossy(&body)
                    )))
                }
                _ => {}
            }
        }
        let size = size.ok_or_else(|| io::Error::other("the server did not say the size"))?;
        Ok(Nbd {
            stream,
            handle: 0,
            size,
        })
    }

    fn request(&mut self, command: u16, offset: u64, len: usize, data: &[u8]) -> io::Result<()> {
        self.handle += 1;
        let mut request = Vec::with_capacity(28 + data.len());
        request.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        request.extend_from_slice(&0u16.to_be_bytes());
        request.extend_from_slice(&command.to_be_bytes());
        request.extend_from_slice(&self.handle.to_be_bytes());
        request.extend_from_slice(&offset.to_be_bytes());
        request.extend_from_slice(&(len as u32).to_be_bytes());
        request.extend_from_slice(data);
        self.stream.write_all(&request)?;
        let mut reply = [0u8; 16];
        self.stream.read_exact(&mut reply)?;
        if be32(&reply) != SIMPLE_REPLY_MAGIC {
            return Err(io::Error::other("not an NBD simple reply"));
        }
        match be32(&reply[4..]) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno as i32)),
        }
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut at = 0;
        while at < buf.len() {
            let len = (buf.len() - at).min(MAX_REQUEST);
            self.request(CMD_READ, offset + at as u64, len, &[])?;
            self.stream.read_exact(&mut buf[at..at + len])?;
            at += len;
        }
        Ok(())
    }

    /// Writes `data` at `offset` and returns once the server acknowledged it.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        for (i, piece) in data.chunks(MAX_REQUEST).enumerate() {
            self.request(
                CMD_WRITE,
                offset + (i * MAX_REQUEST) as u64,
                piece.len(),
                piece,
            )?;
        }
        Ok(())
    }

    /// Asks the server to make what it acknowledged durable.
    pub fn flush(&mut self) -> io::Result<()> {
        self.request(CMD_FLUSH, 0, 0, &[])
    }
}
