//! Simulates a generated module in Icarus Verilog with per-cycle stimuli, so tests can hold
//! the Verilog text itself (not only rust-hdl's simulation of the same design) against the
//! emulator twins: the array's wiring is written twice (see array.rs).

use crate::verilog::{Error, Port};
use std::fmt::Write;
use std::path::Path;
use std::process::Command;

/// Runs `module` (defined in `files`, relative to `dir`) for `stimuli.len()` cycles. In cycle
/// t the inputs other than `clock` take `stimuli[t]` (in port order), the outputs are
/// sampled, then the clock rises. Returns every cycle's outputs in port order, sign-extended
/// where the port is signed.
pub fn run(
    dir: &Path,
    files: &[&str],
    module: &str,
    ports: &[Port],
    stimuli: &[Vec<i64>],
) -> Result<Vec<Vec<i64>>, Error> {
    let ins: Vec<&Port> = ports
        .iter()
        .filter(|p| p.dir == "in" && p.name != "clock")
        .collect();
    let outs: Vec<&Port> = ports.iter().filter(|p| p.dir == "out").collect();
    let mut tb = String::from("module systole_tb;\n    reg clock = 0;\n");
    for (j, p) in ins.iter().enumerate() {
        let _ = writeln!(tb, "    reg [{}:0] i{j};", p.width - 1);
    }
    for (j, p) in outs.iter().enumerate() {
        let _ = writeln!(tb, "    wire [{}:0] o{j};", p.width - 1);
    }
    let conns: Vec<String> = std::iter::once(".clock(clock)".to_string())
        .chain(
            ins.iter()
                .enumerate()
                .map(|(j, p)| format!(".{}(i{j})", p.name)),
        )
        .chain(
            outs.iter()
                .enumerate()
                .map(|(j, p)| format!(".{}(o{j})", p.name)),
        )
        .collect();
    let _ = writeln!(tb, "    {module} dut({});", conns.join(", "));
    let fmt = vec!["%h"; outs.len()].join(" ");
    let args: Vec<String> = (0..outs.len()).map(|j| format!("o{j}")).collect();
    tb.push_str("    initial begin\n");
    for (t, s) in stimuli.iter().enumerate() {
        if s.len() != ins.len() {
            return Err(Error::Tool(format!(
                "cycle {t}: {} stimuli for {} inputs",
                s.len(),
                ins.len()
            )));
        }
        tb.push_str("        clock = 0;");
        for (j, (p, &v)) in ins.iter().zip(s).enumerate() {
            let mask = if p.width >= 64 {
                u64::MAX
            } else {
                (1u64 << p.width) - 1
            };
            let _ = write!(tb, " i{j} = {}'h{:x};", p.width, v as u64 & mask);
        }
        let _ = writeln!(tb, "\n        #1 $display(\"{fmt}\", {});", args.join(", "));
        tb.push_str("        clock = 1; #1;\n");
    }
    tb.push_str("        $finish;\n    end\nendmodule\n");
    std::fs::write(dir.join("systole_tb.v"), &tb).map_err(|err| Error::Io {
        path: dir.join("systole_tb.v").display().to_string(),
        err,
    })?;
    let exe = dir.join("systole_tb.vvp");
    let mut cc = Command::new("iverilog");
    cc.current_dir(dir)
        .args(["-g2012", "-s", "systole_tb", "-o"])
        .arg(&exe)
        .arg("systole_tb.v")
        .args(files);
    run_tool(&mut cc)?;
    let text = run_tool(Command::new("vvp").current_dir(dir).args(["-n"]).arg(&exe))?;
    let mut result = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("VCD"))
    {
        let vals: Vec<&str> = line.split_whitespace().collect();
        if vals.len() != outs.len() {
            continue; // $finish and similar messages
        }
        let mut row = Vec::new();
        for (p, v) in outs.iter().zip(vals) {
            let u = u64::from_str_radix(v, 16)
                .map_err(|_| Error::Tool(format!("output {} is {v} (not a number)", p.name)))?;
            let x = if p.signed && p.width < 64 && u >> (p.width - 1) & 1 == 1 {
                (u | !((1u64 << p.width) - 1)) as i64
            } else {
                u as i64
            };
            row.push(x);
        }
        result.push(row);
    }
    if result.len() != stimuli.len() {
        return Err(Error::Tool(format!(
            "{} cycles simulated, {} printed:\n{text}",
            stimuli.len(),
            result.len()
        )));
    }
    Ok(result)
}

fn run_tool(cmd: &mut Command) -> Result<String, Error> {
    let out = cmd
        .output()
        .map_err(|e| Error::Tool(format!("cannot run {cmd:?}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(Error::Tool(format!(
            "{cmd:?} failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(text)
}
