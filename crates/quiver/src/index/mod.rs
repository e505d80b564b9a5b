//! Vector indexes. Only this module touches usearch.
//!
//! - [`exact::FlatIndex`]: pure-Rust brute force, always available.
//! - `hnsw::HnswIndex` (feature `usearch`): the approximate HNSW index.

mod check;
pub(crate) mod exact;
#[cfg(feature = "usearch")]
pub(crate) mod hnsw;
mod set;
#[cfg(feature = "usearch")]
mod threads;

pub(crate) use check::CheckState;
pub(crate) use exact::FlatIndex;
pub use set::IndexInfo;
pub(crate) use set::{apply, forget, index_err, Indexes};

/// Version string of the index library, stamped on snapshots.
pub(crate) fn engine_version() -> &'static str {
    #[cfg(feature = "usearch")]
    {
        hnsw::version()
    }
    #[cfg(not(feature = "usearch"))]
    {
        "none"
    }
}
