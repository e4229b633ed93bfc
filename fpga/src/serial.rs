//! A board's USB serial port as a `Port` (8N1, raw mode set with `stty`).

use crate::link::{LinkError, Port};
use std::io::{Read, Write};
use std::process::Command;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

pub struct SerialPort {
    file: std::fs::File,
    rx: Receiver<u8>,
}

impl SerialPort {
    pub fn open(dev: &str, baud: u32) -> Result<SerialPort, LinkError> {
        let st = Command::new("stty")
            .args([
                "-F",
                dev,
                &baud.to_string(),
                "raw",
                "-echo",
                "-ixon",
                "-ixoff",
                "cs8",
                "-cstopb",
                "-parenb",
            ])
            .output()
            .map_err(|e| LinkError::Io(format!("cannot run stty for {dev}: {e}")))?;
        if !st.status.success() {
            return Err(LinkError::Io(format!(
                "cannot configure {dev}: {}",
                String::from_utf8_lossy(&st.stderr).trim()
            )));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev)
            .map_err(|e| LinkError::Io(format!("cannot open {dev}: {e}")))?;
        let mut reader = file
            .try_clone()
            .map_err(|e| LinkError::Io(format!("{dev}: {e}")))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 256];
            while let Ok(n) = reader.read(&mut b) {
                if n == 0 || b[..n].iter().any(|&x| tx.send(x).is_err()) {
                    break;
                }
            }
        });
        Ok(SerialPort { file, rx })
    }
}

impl Port for SerialPort {
    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.file
            .write_all(bytes)
            .and_then(|_| self.file.flush())
            .map_err(|e| LinkError::Io(e.to_string()))
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<u8>, LinkError> {
        match self.rx.recv_timeout(timeout) {
            Ok(b) => Ok(Some(b)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(LinkError::Io("the port closed".into())),
        }
    }
}
