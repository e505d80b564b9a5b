//! Crash points for tests (cargo feature `failpoints`).
//!
//! `failpoint!("snapshot:before-rename")` ends the process on the spot when
//! the environment says `QUIVER_FAILPOINT=snapshot:before-rename` (or
//! `name@n` for its n-th hit): `_exit`, so no destructor, flush or close
//! runs, as with SIGKILL. Without the feature the macro is nothing.

/// Exit status of a process stopped at a failpoint.
pub const EXIT_CODE: i32 = 86;

#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some(want) = std::env::var_os("QUIVER_FAILPOINT") else {
        return;
    };
    let want = want.to_string_lossy();
    let (want_name, nth) = match want.split_once('@') {
        Some((n, k)) => (n, k.parse::<u64>().unwrap_or(1)),
        None => (&*want, 1),
    };
    if want_name == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        // SAFETY: _exit only ends the process; it touches no Rust state.
        unsafe { libc::_exit(EXIT_CODE) }
    }
}

/// Stop the process here if the test asked for it.
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name);
    };
}
pub(crate) use failpoint;
