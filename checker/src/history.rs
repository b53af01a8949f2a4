//! One lock's history as the checker sees it, and the sequential lock model.

use shared::{Op, RequestId};

/// How a call ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The client got `ok` at `complete_us`.
    Answered { ok: bool, complete_us: u64 },
    /// The client gave up, crashed or was reset: the call returns "at infinity" and its result
    /// is not checked. It may take effect at any moment after its invocation, or never.
    Unknown,
}

/// One client call on one lock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Call {
    pub req: RequestId,
    pub op: Op,
    pub invoke_us: u64,
    pub outcome: Outcome,
}

impl Call {
    /// An answered call.
    pub fn answered(req: RequestId, op: Op, invoke_us: u64, complete_us: u64, ok: bool) -> Self {
        Self {
            req,
            op,
            invoke_us,
            outcome: Outcome::Answered { ok, complete_us },
        }
    }

    /// A call of unknown outcome.
    pub fn unknown(req: RequestId, op: Op, invoke_us: u64) -> Self {
        Self {
            req,
            op,
            invoke_us,
            outcome: Outcome::Unknown,
        }
    }

    /// The completion time, `u64::MAX` (infinity) for an unknown outcome.
    pub fn complete_us(&self) -> u64 {
        match self.outcome {
            Outcome::Answered { complete_us, .. } => complete_us,
            Outcome::Unknown => u64::MAX,
        }
    }

    /// True if `self` certainly happened before `other` in real time: it was answered strictly
    /// before `other` was invoked. Equal times count as overlapping (the lenient reading).
    pub fn precedes(&self, other: &Call) -> bool {
        self.complete_us() < other.invoke_us
    }
}

/// The sequential lock model: applies `op` to a lock that is `held`, and returns
/// `(result, held afterwards)`. `Lock` answers true iff the lock was free; `Unlock` answers true
/// iff it was held. Either way a `Lock` leaves it held and an `Unlock` leaves it free.
pub fn apply(held: bool, op: Op) -> (bool, bool) {
    match op {
        Op::Lock => (!held, true),
        Op::Unlock => (held, false),
    }
}

/// Whether a call may take effect on a lock that is `held`, and the state afterwards. An unknown
/// outcome is never checked, so such a call can always take effect.
pub fn step(held: bool, call: &Call) -> Option<bool> {
    let (result, after) = apply(held, call.op);
    match call.outcome {
        Outcome::Answered { ok, .. } if ok != result => None,
        _ => Some(after),
    }
}

/// The answer of a search.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Some order explains every answer.
    Linearizable,
    /// No order does.
    NotLinearizable,
    /// The search ran out of budget.
    Undecided,
}
