//! The board top level in Verilator, behind a `Port`: host code talks to the RTL exactly as
//! to a board on a serial port (`board_harness.cpp` models the UART wires).

use crate::board::Board;
use crate::link::{LinkError, Port};
use crate::rtl::{write_board_rtl, BoardRtl};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;
use systole_arch::{ArchConfig, Program};

pub const HARNESS_CPP: &str = include_str!("board_harness.cpp");

/// A built Verilator model of `systole_board`.
pub struct BoardSim {
    pub exe: PathBuf,
    /// The model's folder: a baked program's `.hex` files are read from it at start.
    pub dir: PathBuf,
    pub params: BoardRtl,
}

fn run_tool(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "cannot run {:?} (install it: scripts/test.sh): {e}",
            cmd.get_program()
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl BoardSim {
    /// Builds (or reuses, keyed by the sources' hash) the model for `arch` in the RTL cache
    /// (`$SYSTOLE_RTL_CACHE`, else the temp dir). The PLL is a wire in simulation.
    pub fn cached(
        arch: &ArchConfig,
        params: &BoardRtl,
        bake: Option<&Program>,
    ) -> Result<BoardSim, String> {
        let base = std::env::var_os("SYSTOLE_RTL_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("systole-rtl"));
        let dir = base.join(format!(
            "board-{}-{:016x}{}",
            arch.name,
            arch.fingerprint(),
            if bake.is_some() { "-baked" } else { "" }
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let board = Board::by_name("ulx3s").map_err(|e| e.to_string())?;
        // Simulation runs the oscillator's clock straight through.
        let clock = board
            .clock_verilog(board.osc_mhz)
            .map_err(|e| e.to_string())?;
        let files = write_board_rtl(arch, params, &clock, &dir, bake).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("board_harness.cpp"), HARNESS_CPP).map_err(|e| e.to_string())?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let baked: Vec<String> = bake
            .map(|p| {
                crate::rtl::bake_files(arch, p)
                    .into_iter()
                    .map(|f| f.0)
                    .collect()
            })
            .unwrap_or_default();
        let all = files.iter().chain(&baked).map(String::as_str);
        for f in all.chain(["board_harness.cpp"]) {
            std::fs::read(dir.join(f))
                .map_err(|e| e.to_string())?
                .hash(&mut h);
        }
        let stamp = format!("{:016x}\n", h.finish());
        let obj = dir.join("obj");
        let exe = obj.join("Vsystole_board");
        let stamp_path = dir.join("build.stamp");
        if !(exe.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp)) {
            let _ = std::fs::remove_file(&stamp_path);
            run_tool(
                Command::new("verilator")
                    .current_dir(&dir)
                    .args(["--cc", "--exe", "--build", "-O2", "-j", "2"])
                    .args(["-Wno-WIDTH", "-Wno-UNOPTFLAT", "-Wno-PINCONNECTEMPTY"])
                    .args(["--top-module", "systole_board", "--Mdir"])
                    .arg(&obj)
                    .args(["-CFLAGS", "-O1"])
                    .args(&files)
                    .arg("board_harness.cpp"),
            )?;
            std::fs::write(&stamp_path, stamp).map_err(|e| e.to_string())?;
        }
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
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 256];
            while let Ok(n) = stdout.read(&mut b) {
                if n == 0 || b[..n].iter().any(|&x| tx.send(x).is_err()) {
                    break;
                }
            }
        });
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
        match self.rx.recv_timeout(timeout) {
            Ok(b) => Ok(Some(b)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(LinkError::Io("the board model exited".into()))
            }
        }
    }
}

impl Drop for SimPort {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"Q");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
