//! How a store behaves ([`StoreOptions`]) and what long work reports
//! ([`Progress`]).

use std::fmt;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};

/// Progress of long work (index rebuilds, tail replays), for progress bars.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Collection being worked on.
    pub collection: String,
    /// `"rebuild"` or `"replay"`.
    pub phase: &'static str,
    /// Items done so far.
    pub done: u64,
    /// Items in all.
    pub total: u64,
}

/// Callback receiving [`Progress`].
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a store behaves. `StoreOptions::default()` gives the values below.
#[derive(Clone)]
pub struct StoreOptions {
    /// Snapshot a collection automatically once this many changes (or a
    /// quarter of the collection's size, whichever is larger) are not yet
    /// in its snapshot. Default 10,000. The write that crosses the line
    /// serialises the index; a background thread writes, hashes and
    /// fsyncs it, and a later write (or `flush`, or `close`) puts it in
    /// place.
    pub snapshot_every_changes: u64,
    /// Snapshot automatically on the next write once the oldest
    /// un-snapshotted change is this many seconds old. Default 300.
    pub snapshot_every_secs: u64,
    /// On close, snapshot only collections with at least this many
    /// un-snapshotted changes (or whose index was rebuilt): a small tail is
    /// cheaper to replay at the next open than a whole snapshot is to
    /// write. `flush` always snapshots. Default 1,000.
    pub close_snapshot_min_changes: u64,
    /// Called during rebuilds and replays.
    pub progress: Option<ProgressFn>,
    /// A filtered search whose filter matches at most this many records
    /// (or an eighth of the collection, if more) computes exact distances
    /// over just those; above, it runs a filtered HNSW search. Default
    /// 8,192 (measured, see `DEFAULT_EXACT_MAX`).
    pub filter_exact_max: usize,
    /// How long a write waits for another process (or another open store
    /// on the same directory) to let the writer lock go before it fails
    /// with [`crate::Error::Busy`]. Zero fails at once. Default 5 s.
    pub busy_timeout: std::time::Duration,
    /// The time record expiry is measured by. Default [`SystemClock`];
    /// tests give a [`crate::ManualClock`] to move time by hand.
    pub clock: Arc<dyn Clock>,
}

/// Default of [`crate::StoreOptions::filter_exact_max`]: at or below this
/// many matches, the exact plan runs.
///
/// Measured on pypi-minilm-20k (384-d, cos, f32; 1,000 queries, k = 10, p50):
/// usearch's `filtered_search` took 7.0 ms at 1% selectivity, 4.5 ms at 3%,
/// 2.9 ms at 10% and 1.3 ms at 30%; exact distances over the cached,
/// normalised matches cost about 0.085 µs per match (0.17 ms for 2,000).
/// They cross near 15,000 matches; 8,192 is well inside the region where
/// exact wins. Larger collections raise the bound to an eighth of their
/// size (see `filtered::match_set`). The cache of match vectors holds at
/// most 8 × this bound or one set of the largest size, whichever is more:
/// 100 MB at 384-d below 512k records, an eighth of the raw vectors above.
pub(crate) const DEFAULT_EXACT_MAX: usize = 8192;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            snapshot_every_changes: 10_000,
            snapshot_every_secs: 300,
            close_snapshot_min_changes: 1_000,
            progress: None,
            filter_exact_max: DEFAULT_EXACT_MAX,
            busy_timeout: std::time::Duration::from_secs(5),
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("snapshot_every_changes", &self.snapshot_every_changes)
            .field("snapshot_every_secs", &self.snapshot_every_secs)
            .field(
                "close_snapshot_min_changes",
                &self.close_snapshot_min_changes,
            )
            .field("progress", &self.progress.is_some())
            .field("filter_exact_max", &self.filter_exact_max)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}
