//! A board's USB serial port as a `Port` (8N1, raw mode set with `stty`).

use crate::link::{byte_channel, recv_byte, LinkError, Port};
use std::io::Write;
use std::process::Command;
use std::sync::mpsc::Receiver;
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
        let reader = file
            .try_clone()
            .map_err(|e| LinkError::Io(format!("{dev}: {e}")))?;
        Ok(SerialPort {
            file,
            rx: byte_channel(reader),
        })
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
        recv_byte(&self.rx, timeout, "the port closed")
    }
}
