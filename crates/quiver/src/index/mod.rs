//! Vector indexes. Only this module touches usearch.
//!
//! - [`exact::FlatIndex`]: pure-Rust brute force, always available.
//! - `hnsw::HnswIndex` (feature `usearch`): the approximate HNSW index.

#[cfg(feature = "usearch")]
mod check;
pub(crate) mod exact;
#[cfg(feature = "usearch")]
pub(crate) mod hnsw;
#[cfg(feature = "usearch")]
mod threads;

pub(crate) use exact::FlatIndex;
#[cfg(feature = "usearch")]
pub(crate) use hnsw::{CheckState, HnswIndex};

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
