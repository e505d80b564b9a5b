//! The background check of a viewed snapshot's vectors: started at open,
//! waited for by whoever needs its verdict.

use std::sync::{Condvar, Mutex};

use crate::sync::MutexExt;

/// The background check of a viewed snapshot's vectors.
pub(crate) struct Check {
    state: Mutex<CheckState>,
    done: Condvar,
}

/// Where a [`Check`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "usearch"), allow(dead_code))] // only the graph starts checks
pub(crate) enum CheckState {
    Pending,
    Passed,
    Failed,
}

// Only the HNSW graph views snapshots, so only it starts checks.
#[cfg_attr(not(feature = "usearch"), allow(dead_code))]
impl Check {
    pub(super) fn new(state: CheckState) -> Self {
        Check {
            state: Mutex::new(state),
            done: Condvar::new(),
        }
    }

    pub(crate) fn get(&self) -> CheckState {
        *self.state.locked()
    }

    /// Block until the check is over.
    pub(crate) fn wait(&self) -> CheckState {
        let mut s = self.state.locked();
        while *s == CheckState::Pending {
            s = crate::sync::wait(&self.done, s);
        }
        *s
    }

    pub(super) fn set(&self, state: CheckState) {
        *self.state.locked() = state;
        self.done.notify_all();
    }
}
