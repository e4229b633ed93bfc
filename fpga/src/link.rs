//! The host link: a framed protocol over the board's UART (8N1).
//!
//! Host to board: `0xA5, cmd, len (u16 LE), payload[len], crc (u16 LE)`; board to host:
//! `0x5A, status, len (u16 LE), payload[len], crc (u16 LE)`. The CRC is CRC-16/CCITT-FALSE
//! (polynomial 0x1021, initial 0xFFFF) over everything between the sync byte and the CRC. The
//! board answers every frame it receives whole, with `Status::BadCrc` when the CRC does not
//! match (and does nothing else), and drops a frame whose bytes stop arriving for longer than
//! its timeout, waiting for the next sync byte.
//!
//! | cmd | name | payload | reply payload |
//! |---|---|---|---|
//! | 0x01 | `ping` | - | `"SYST"`, the arch fingerprint (u64 LE), log2 of the memory bytes (u8) |
//! | 0x02 | `write_imem` | first instruction index (u32 LE), 16-byte instructions | - |
//! | 0x03 | `write_mem` | byte address (u32 LE), bytes | - |
//! | 0x04 | `read_mem` | byte address (u32 LE), length (u16 LE) | the bytes |
//! | 0x05 | `start` | - | - |
//! | 0x06 | `status` | - | state (0 idle, 1 running, 2 done), cycles (u64 LE) |

/// Sync byte of a host-to-board frame.
pub const SYNC_CMD: u8 = 0xA5;
/// Sync byte of a board-to-host frame.
pub const SYNC_REPLY: u8 = 0x5A;
/// Largest payload either side sends.
pub const MAX_PAYLOAD: usize = 1024 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    Ping = 0x01,
    WriteImem = 0x02,
    WriteMem = 0x03,
    ReadMem = 0x04,
    Start = 0x05,
    Status = 0x06,
}

/// The board's answer to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0x00,
    /// The frame's CRC did not match: nothing was done.
    BadCrc = 0x01,
    /// Unknown command.
    BadCmd = 0x02,
    /// Payload length or address out of range for the command.
    BadArg = 0x03,
    /// The accelerator is running: only `status` and `ping` are served.
    Busy = 0x04,
}

impl Status {
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0x00 => Status::Ok,
            0x01 => Status::BadCrc,
            0x02 => Status::BadCmd,
            0x03 => Status::BadArg,
            0x04 => Status::Busy,
            _ => return None,
        })
    }
}

/// CRC-16/CCITT-FALSE of `bytes`, continuing from `crc` (start with 0xFFFF).
pub fn crc16(mut crc: u16, bytes: &[u8]) -> u16 {
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A host-to-board frame.
pub fn command_frame(cmd: Cmd, payload: &[u8]) -> Vec<u8> {
    frame(SYNC_CMD, cmd as u8, payload)
}

/// A board-to-host frame (what the board sends; for tests and models).
pub fn reply_frame(status: Status, payload: &[u8]) -> Vec<u8> {
    frame(SYNC_REPLY, status as u8, payload)
}

fn frame(sync: u8, head: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= MAX_PAYLOAD, "payload too long");
    let mut body = vec![head];
    body.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    body.extend_from_slice(payload);
    let crc = crc16(0xFFFF, &body);
    let mut f = vec![sync];
    f.extend(body);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("no reply from the board within the timeout ({0} bytes received)")]
    Timeout(usize),
    #[error("reply frame: {0}")]
    Malformed(String),
    #[error("reply CRC {got:#06x}, computed {want:#06x}")]
    BadCrc { got: u16, want: u16 },
    #[error("the board answered {0:?}")]
    Refused(Status),
    #[error("port: {0}")]
    Io(String),
}

/// A parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub payload: Vec<u8>,
}

/// Parses one reply from the start of `bytes` (after skipping anything before the sync byte);
/// returns it and how many bytes it used, or None if the frame is not complete yet.
pub fn parse_reply(bytes: &[u8]) -> Result<Option<(Reply, usize)>, LinkError> {
    let Some(start) = bytes.iter().position(|&b| b == SYNC_REPLY) else {
        return Ok(None);
    };
    let f = &bytes[start..];
    if f.len() < 4 {
        return Ok(None);
    }
    let len = u16::from_le_bytes([f[2], f[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(LinkError::Malformed(format!(
            "payload length {len} > {MAX_PAYLOAD}"
        )));
    }
    if f.len() < 4 + len + 2 {
        return Ok(None);
    }
    let want = crc16(0xFFFF, &f[1..4 + len]);
    let got = u16::from_le_bytes([f[4 + len], f[5 + len]]);
    if got != want {
        return Err(LinkError::BadCrc { got, want });
    }
    let status = Status::from_u8(f[1])
        .ok_or_else(|| LinkError::Malformed(format!("unknown status {:#04x}", f[1])))?;
    Ok(Some((
        Reply {
            status,
            payload: f[4..4 + len].to_vec(),
        },
        start + 6 + len,
    )))
}

/// A byte pipe to a board: a serial port, or the Verilator model's UART (`sim::SimPort`).
pub trait Port {
    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError>;
    /// The next byte, or None after `timeout` without one.
    fn recv(&mut self, timeout: std::time::Duration) -> Result<Option<u8>, LinkError>;
}

/// The bytes `r` yields, read on a thread of their own so `Port::recv` can time out.
pub fn byte_channel(mut r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<u8> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut b = [0u8; 256];
        while let Ok(n) = r.read(&mut b) {
            if n == 0 || b[..n].iter().any(|&x| tx.send(x).is_err()) {
                break;
            }
        }
    });
    rx
}

/// The next byte of a `byte_channel`, None after `timeout`; `closed` says what ended.
pub fn recv_byte(
    rx: &std::sync::mpsc::Receiver<u8>,
    timeout: std::time::Duration,
    closed: &str,
) -> Result<Option<u8>, LinkError> {
    use std::sync::mpsc::RecvTimeoutError;
    match rx.recv_timeout(timeout) {
        Ok(b) => Ok(Some(b)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(LinkError::Io(closed.into())),
    }
}

/// What `status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Idle,
    Running,
    Done,
}

/// The board's answer to `ping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardInfo {
    pub fingerprint: u64,
    /// log2 of the board memory's bytes (`fpga build --mem-bits`), if the bitstream says.
    pub mem_bits: Option<u32>,
}

/// The host side of the link: one command, one reply.
pub struct Client<P: Port> {
    pub port: P,
    /// How long to wait for a reply's next byte.
    pub timeout: std::time::Duration,
}

/// Instructions per `write_imem` frame and bytes per `write_mem` / `read_mem` frame.
pub const IMEM_CHUNK: usize = 64;
pub const MEM_CHUNK: usize = 1024;

impl<P: Port> Client<P> {
    pub fn new(port: P) -> Self {
        Client {
            port,
            timeout: std::time::Duration::from_secs(5),
        }
    }

    /// Sends one frame and waits for its reply (any status).
    pub fn transact_raw(&mut self, frame: &[u8]) -> Result<Reply, LinkError> {
        self.port.send(frame)?;
        let mut got = Vec::new();
        loop {
            match self.port.recv(self.timeout)? {
                Some(b) => got.push(b),
                None => return Err(LinkError::Timeout(got.len())),
            }
            if let Some((r, _)) = parse_reply(&got)? {
                return Ok(r);
            }
        }
    }

    /// One command; an error unless the board answers `Ok`.
    pub fn transact(&mut self, cmd: Cmd, payload: &[u8]) -> Result<Vec<u8>, LinkError> {
        let r = self.transact_raw(&command_frame(cmd, payload))?;
        match r.status {
            Status::Ok => Ok(r.payload),
            s => Err(LinkError::Refused(s)),
        }
    }

    /// The board's arch fingerprint (the program images it runs must carry the same).
    /// The board's arch fingerprint.
    pub fn ping(&mut self) -> Result<u64, LinkError> {
        Ok(self.board_info()?.fingerprint)
    }

    /// What `ping` says about the board: its arch fingerprint and, from bitstreams built
    /// since the 13-byte reply, log2 of its memory's bytes (12-byte replies leave it `None`).
    pub fn board_info(&mut self) -> Result<BoardInfo, LinkError> {
        let p = self.transact(Cmd::Ping, &[])?;
        if !(p.len() == 12 || p.len() == 13) || &p[..4] != b"SYST" {
            return Err(LinkError::Malformed(format!("ping reply {p:02x?}")));
        }
        Ok(BoardInfo {
            fingerprint: u64::from_le_bytes(p[4..12].try_into().unwrap()),
            mem_bits: p.get(12).map(|&b| b as u32),
        })
    }

    pub fn write_imem(&mut self, first: u32, code: &[[u8; 16]]) -> Result<(), LinkError> {
        for (i, chunk) in code.chunks(IMEM_CHUNK).enumerate() {
            let mut p = (first + (i * IMEM_CHUNK) as u32).to_le_bytes().to_vec();
            chunk.iter().for_each(|w| p.extend_from_slice(w));
            self.transact(Cmd::WriteImem, &p)?;
        }
        Ok(())
    }

    pub fn write_mem(&mut self, addr: u32, bytes: &[u8]) -> Result<(), LinkError> {
        for (i, chunk) in bytes.chunks(MEM_CHUNK).enumerate() {
            let mut p = (addr + (i * MEM_CHUNK) as u32).to_le_bytes().to_vec();
            p.extend_from_slice(chunk);
            self.transact(Cmd::WriteMem, &p)?;
        }
        Ok(())
    }

    pub fn read_mem(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = (len - out.len()).min(MEM_CHUNK);
            let mut p = (addr + out.len() as u32).to_le_bytes().to_vec();
            p.extend_from_slice(&(n as u16).to_le_bytes());
            let got = self.transact(Cmd::ReadMem, &p)?;
            if got.len() != n {
                return Err(LinkError::Malformed(format!(
                    "read_mem of {n} bytes returned {}",
                    got.len()
                )));
            }
            out.extend(got);
        }
        Ok(out)
    }

    pub fn start(&mut self) -> Result<(), LinkError> {
        self.transact(Cmd::Start, &[]).map(|_| ())
    }

    /// (state, the cycle count of the last finished run).
    pub fn status(&mut self) -> Result<(RunState, u64), LinkError> {
        let p = self.transact(Cmd::Status, &[])?;
        if p.len() != 9 {
            return Err(LinkError::Malformed(format!("status reply {p:02x?}")));
        }
        let state = match p[0] {
            0 => RunState::Idle,
            1 => RunState::Running,
            2 => RunState::Done,
            x => return Err(LinkError::Malformed(format!("run state {x}"))),
        };
        Ok((state, u64::from_le_bytes(p[1..9].try_into().unwrap())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        // CRC-16/CCITT-FALSE of "123456789" is 0x29B1.
        assert_eq!(crc16(0xFFFF, b"123456789"), 0x29B1);
    }

    #[test]
    fn frames_are_laid_out_as_documented() {
        let f = command_frame(Cmd::ReadMem, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(&f[..4], &[0xA5, 0x04, 6, 0]);
        let crc = crc16(0xFFFF, &f[1..10]);
        assert_eq!(&f[10..], &crc.to_le_bytes());
    }

    proptest! {
        #[test]
        fn replies_round_trip_and_any_flipped_bit_is_caught(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            junk in proptest::collection::vec(0u8..0x5A, 0..4),
            flip in any::<prop::sample::Index>(),
        ) {
            let f = reply_frame(Status::Ok, &payload);
            let mut bytes = junk.clone();
            bytes.extend(&f);
            let (r, used) = parse_reply(&bytes).unwrap().unwrap();
            prop_assert_eq!(r, Reply { status: Status::Ok, payload: payload.clone() });
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(parse_reply(&bytes[..bytes.len() - 1]).unwrap(), None);
            // One flipped bit after the sync byte never parses as a good frame.
            let mut bad = f.clone();
            let i = 1 + flip.index(bad.len() - 1);
            bad[i] ^= 1 << (i % 8);
            let accepted = match parse_reply(&bad) {
                Ok(Some((r, _))) => r.status == Status::Ok && r.payload == payload,
                _ => false,
            };
            prop_assert!(!accepted, "flipped byte {} accepted", i);
        }
    }

    /// A port that answers every frame with one canned reply.
    struct Canned(Vec<u8>, std::collections::VecDeque<u8>);
    impl Port for Canned {
        fn send(&mut self, _: &[u8]) -> Result<(), LinkError> {
            self.1 = self.0.iter().copied().collect();
            Ok(())
        }
        fn recv(&mut self, _: std::time::Duration) -> Result<Option<u8>, LinkError> {
            Ok(self.1.pop_front())
        }
    }

    /// `ping` replies: 13 bytes carry the memory size, 12 (older bitstreams) do not, anything
    /// else is malformed.
    #[test]
    fn ping_replies_old_and_new() {
        let fp = 0x0123_4567_89ab_cdefu64;
        let mut p = b"SYST".to_vec();
        p.extend_from_slice(&fp.to_le_bytes());
        let info = |payload: &[u8]| {
            let mut c = Client::new(Canned(reply_frame(Status::Ok, payload), Default::default()));
            c.timeout = std::time::Duration::from_millis(50);
            c.board_info()
        };
        assert_eq!(
            info(&p),
            Ok(BoardInfo {
                fingerprint: fp,
                mem_bits: None
            })
        );
        let mut p13 = p.clone();
        p13.push(11);
        assert_eq!(info(&p13).unwrap().mem_bits, Some(11));
        assert!(matches!(info(&p[..11]), Err(LinkError::Malformed(_))));
    }
}
