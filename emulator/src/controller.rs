//! The controller: fetches one instruction per cycle from instruction memory, decodes it and
//! pushes it into the command queue of its unit; it stalls while that queue is full. The
//! dependency-token queues between neighbouring units live here too.
//!
//! All decisions in a cycle use the state at the start of that cycle (registered FIFO flags):
//! a queue entry dispatched in cycle t is visible to its unit in t + 1, a token pushed at the end
//! of cycle t can be popped in t + 1, and a slot freed in cycle t can be refilled in t + 1.

use std::collections::VecDeque;
use systole_arch::isa::{Deps, Unit};

/// Token queues, indexed by `TokenQueue as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenQueue {
    LoadToCompute = 0,
    ComputeToLoad = 1,
    ComputeToStore = 2,
    StoreToCompute = 3,
}

impl TokenQueue {
    pub fn describe(self) -> &'static str {
        match self {
            TokenQueue::LoadToCompute => "load->compute",
            TokenQueue::ComputeToLoad => "compute->load",
            TokenQueue::ComputeToStore => "compute->store",
            TokenQueue::StoreToCompute => "store->compute",
        }
    }
}

/// The token queues an instruction pops before it starts and pushes when it completes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUse {
    pub pops: Vec<TokenQueue>,
    pub pushes: Vec<TokenQueue>,
}

/// Maps dependency flags to token queues for `unit`; the error names an illegal flag.
pub fn token_use(unit: Unit, deps: Deps) -> Result<TokenUse, String> {
    use TokenQueue::*;
    type Side = Option<(TokenQueue, TokenQueue)>;
    let (prev, next): (Side, Side) = match unit {
        // (queue popped, queue pushed)
        Unit::Load => (None, Some((ComputeToLoad, LoadToCompute))),
        Unit::Compute => (
            Some((LoadToCompute, ComputeToLoad)),
            Some((StoreToCompute, ComputeToStore)),
        ),
        Unit::Store => (Some((ComputeToStore, StoreToCompute)), None),
        Unit::Controller => (None, None),
    };
    let mut u = TokenUse::default();
    let flags = [
        ("pop_prev", deps.pop_prev, prev.map(|p| p.0), true),
        ("pop_next", deps.pop_next, next.map(|p| p.0), true),
        ("push_prev", deps.push_prev, prev.map(|p| p.1), false),
        ("push_next", deps.push_next, next.map(|p| p.1), false),
    ];
    for (name, on, q, pop) in flags {
        if !on {
            continue;
        }
        match q {
            Some(q) if pop => u.pops.push(q),
            Some(q) => u.pushes.push(q),
            None => {
                let side = if name.ends_with("prev") {
                    "previous"
                } else {
                    "next"
                };
                return Err(format!(
                    "`{name}` is illegal: the {unit} unit has no {side} unit"
                ));
            }
        }
    }
    Ok(u)
}

pub struct Controller {
    pub pc: usize,
    pub queue_depth: usize,
    /// Per unit (load, compute, store): (instruction index, cycle it became visible).
    pub queues: [VecDeque<(usize, u64)>; 3],
    pub token_depth: u32,
    pub tokens: [u32; 4],
    /// Cycles fetch waited for a full queue, per unit.
    pub dispatch_stalls: [u64; 3],
    pub dispatched: u64,
    pub halted: bool,
}

impl Controller {
    pub fn new(queue_depth: u32, token_depth: u32) -> Controller {
        Controller {
            pc: 0,
            queue_depth: queue_depth as usize,
            queues: Default::default(),
            token_depth,
            tokens: [0; 4],
            dispatch_stalls: [0; 3],
            dispatched: 0,
            halted: false,
        }
    }

    /// Queue index of a unit (None for the controller itself).
    pub fn queue_of(unit: Unit) -> Option<usize> {
        match unit {
            Unit::Load => Some(0),
            Unit::Compute => Some(1),
            Unit::Store => Some(2),
            Unit::Controller => None,
        }
    }

    /// The head of a unit's queue, if it was visible at the start of `cycle`.
    pub fn head(&self, q: usize, cycle: u64) -> Option<usize> {
        self.queues[q]
            .front()
            .filter(|&&(_, vis)| vis <= cycle)
            .map(|&(i, _)| i)
    }
}
