//! Every lock in the crate is taken through here.
//!
//! A thread that panics while holding a lock poisons it. Nothing guarded
//! in this crate can be left half-updated by a panic in a way a later
//! reader could trust wrongly: the guarded values are caches, counters,
//! option slots and unit guards, each valid after any single assignment,
//! and the index and SQLite state they describe are checked or rebuilt by
//! the protocol anyway. So a poisoned lock is taken as if it were not,
//! instead of turning one panic into a panic in every later caller.

use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// Poison-ignoring access to a [`Mutex`].
pub(crate) trait MutexExt<T> {
    /// Lock, ignoring poison.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Poison-ignoring access to an [`RwLock`].
pub(crate) trait RwLockExt<T> {
    /// Shared access, ignoring poison.
    fn read_lock(&self) -> RwLockReadGuard<'_, T>;
    /// Exclusive access, ignoring poison.
    fn write_lock(&self) -> RwLockWriteGuard<'_, T>;
    /// The value of an unshared lock, ignoring poison.
    fn value_mut(&mut self) -> &mut T;
    /// The value, consuming the lock, ignoring poison.
    fn into_value(self) -> T;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_lock(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write_lock(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
    fn value_mut(&mut self) -> &mut T {
        self.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
    fn into_value(self) -> T {
        self.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Wait on `cv`, ignoring poison.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
}
