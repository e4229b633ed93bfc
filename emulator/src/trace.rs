//! Chrome / Perfetto trace JSON: one track per unit, one slice per instruction, timestamps in
//! microseconds at the arch clock (open in ui.perfetto.dev or chrome://tracing).

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// 0 load, 1 compute, 2 store, 3 controller
    pub track: usize,
    pub insn: usize,
    pub name: String,
    pub start: u64,
    /// Last cycle (inclusive).
    pub end: u64,
}

pub const TRACKS: [&str; 4] = ["load", "compute", "store", "controller"];

pub fn chrome_trace(spans: &[Span], clock_mhz: f64, name: &str) -> Value {
    let mut ev = vec![
        json!({"ph": "M", "name": "process_name", "pid": 1, "args": {"name": format!("systole {name}")}}),
    ];
    for (i, t) in TRACKS.iter().enumerate() {
        ev.push(json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": i, "args": {"name": t}}));
        ev.push(json!({"ph": "M", "name": "thread_sort_index", "pid": 1, "tid": i, "args": {"sort_index": i}}));
    }
    for s in spans {
        let cycles = s.end + 1 - s.start;
        ev.push(json!({
            "ph": "X", "pid": 1, "tid": s.track, "name": s.name,
            "ts": s.start as f64 / clock_mhz,
            "dur": cycles as f64 / clock_mhz,
            "args": {"insn": s.insn, "start_cycle": s.start, "cycles": cycles},
        }));
    }
    json!({"traceEvents": ev, "displayTimeUnit": "ns"})
}
