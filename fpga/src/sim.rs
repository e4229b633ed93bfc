//! The board top level in Verilator, behind a `Port`: host code talks to the RTL exactly as
//! to a board on a serial port (`board_harness.cpp` models the UART wires).

use crate::board::wire_clock_verilog;
use crate::link::{byte_channel, recv_byte, LinkError, Port};
use crate::rtl::{write_board_rtl, BoardRtl};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;
use systole_arch::{ArchConfig, Program};
use systole_hdl::cosim::{cache_base, verilate_cached, CosimError};

pub const HARNESS_CPP: &str = include_str!("board_harness.cpp");

/// A built Verilator model of `systole_board`.
pub struct BoardSim {
    pub exe: PathBuf,
    /// The model's folder: a baked program's `.hex` files are read from it at start.
    pub dir: PathBuf,
    pub params: BoardRtl,
}

impl BoardSim {
    /// Builds (or reuses, while the Verilog is unchanged) the model for `arch` under the RTL
    /// cache (`systole_hdl::cosim::cache_base`). The PLL is a wire in simulation; a baked
    /// program's `.hex` files are read when the model starts, so they need no rebuild.
    pub fn cached(
        arch: &ArchConfig,
        params: &BoardRtl,
        bake: Option<&Program>,
    ) -> Result<BoardSim, String> {
        let dir = cache_base().join(format!(
            "board-{}-{:016x}{}",
            arch.name,
            arch.fingerprint(),
            if bake.is_some() { "-baked" } else { "" }
        ));
        let exe = verilate_cached(&dir, "systole_board", false, |dir| {
            let mut files = write_board_rtl(arch, params, &wire_clock_verilog(), dir, bake)
                .map_err(|e| CosimError::Tool(e.to_string()))?;
            std::fs::write(dir.join("board_harness.cpp"), HARNESS_CPP)?;
            files.push("board_harness.cpp".into());
            Ok(files)
        })
        .map_err(|e| e.to_string())?;
        Ok(BoardSim {
            exe,
            dir,
            params: params.clone(),
        })
    }

    /// Starts the model; its UART is the returned port.
    pub fn spawn(&self) -> Result<SimPort, String> {
        let mut child = Command::new(&self.exe)
            .arg(self.params.cycles_per_bit.to_string())
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        let stdin = child.stdin.take().unwrap();
        let rx = byte_channel(child.stdout.take().unwrap());
        Ok(SimPort { child, stdin, rx })
    }
}

/// The model's UART as a `Port`.
pub struct SimPort {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<u8>,
}

impl SimPort {
    /// Holds the board's reset button down for `cycles` clock cycles.
    pub fn press_reset(&mut self, cycles: u32) -> Result<(), LinkError> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&cycles.to_le_bytes());
        self.write(&m)
    }

    fn write(&mut self, m: &[u8]) -> Result<(), LinkError> {
        self.stdin
            .write_all(m)
            .and_then(|_| self.stdin.flush())
            .map_err(|e| LinkError::Io(e.to_string()))
    }
}

impl Port for SimPort {
    fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        for chunk in bytes.chunks(u16::MAX as usize) {
            let mut m = vec![b'D'];
            m.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
            m.extend_from_slice(chunk);
            self.write(&m)?;
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<u8>, LinkError> {
        recv_byte(&self.rx, timeout, "the board model exited")
    }
}

impl Drop for SimPort {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"Q");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
