//! External DRAM: storage plus the timing of its two AXI-style channels.
//!
//! Read channel: accepts one request (one row of a 2-D transfer) per cycle; the first beat of
//! a request accepted in cycle t can be delivered in cycle t + latency; beats of a request are
//! delivered in order after all beats of the previous request, at most one beat of
//! `bytes_per_cycle` bytes per cycle, and only when the consumer is ready (backpressure).
//! Write channel: takes one beat per cycle, never stalls; the write of a transfer is
//! acknowledged `latency` cycles after its last beat.

use std::collections::VecDeque;

pub struct Dram {
    pub bytes: Vec<u8>,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Dram {
    pub fn new(size: usize) -> Dram {
        Dram {
            bytes: vec![0; size],
            bytes_read: 0,
            bytes_written: 0,
        }
    }
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The read channel's request queue.
#[derive(Default)]
pub struct ReadChannel {
    /// (cycle the first beat may be delivered, beats still to deliver) per accepted request.
    pending: VecDeque<(u64, u32)>,
}

impl ReadChannel {
    pub fn request(&mut self, cycle: u64, latency: u32, beats: u32) {
        self.pending.push_back((cycle + latency as u64, beats));
    }
    /// Whether a beat can be delivered in `cycle`.
    pub fn beat_ready(&self, cycle: u64) -> bool {
        self.pending
            .front()
            .is_some_and(|&(ready, _)| ready <= cycle)
    }
    /// Consume the beat offered in this cycle (caller checked `beat_ready`).
    pub fn take_beat(&mut self) {
        let front = self.pending.front_mut().expect("beat offered");
        front.1 -= 1;
        if front.1 == 0 {
            self.pending.pop_front();
        }
    }
}
