//! Threads for index work: parallel loops over short runs of items, the
//! semaphore that queues callers for usearch's thread slots, and a scoped
//! counter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::sync::MutexExt;

/// Run `work(i)` for every i in `0..n` on `threads` threads, handing out
/// short runs of indexes so that no thread idles while work is left.
pub(crate) fn par_each<E: Send>(
    n: usize,
    threads: usize,
    work: impl Fn(usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    const RUN: usize = 16;
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<(), E> {
                    loop {
                        let start = next.fetch_add(RUN, Ordering::Relaxed);
                        if start >= n {
                            return Ok(());
                        }
                        (start..(start + RUN).min(n)).try_for_each(&work)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

/// One unit of a counter for as long as it lives.
pub(super) struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    pub(super) fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A counting semaphore: usearch fails a call outright when all thread
/// slots are busy, so callers queue here instead.
pub(super) struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

pub(super) struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    pub(super) fn new(n: usize) -> Self {
        Semaphore {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    pub(super) fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.locked();
        while *free == 0 {
            free = crate::sync::wait(&self.freed, free);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.locked() += 1;
        self.0.freed.notify_one();
    }
}
