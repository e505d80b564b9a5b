//! Work spread over every core, its results kept in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::sync::MutexExt;

/// `f(i)` for every `i` in `0..n`, on as many threads as there are cores
/// (one at a time per thread, handed out in order), the results by `i`.
/// A panic in `f` is a bug and propagates.
pub(crate) fn map<U: Send>(n: usize, f: impl Fn(usize) -> U + Sync) -> Vec<U> {
    let out: Vec<Mutex<Option<U>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n.max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let u = f(i);
                *out[i].locked() = Some(u);
            });
        }
    });
    out.into_iter()
        .map(|o| {
            o.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| unreachable!("every index ran"))
        })
        .collect()
}
