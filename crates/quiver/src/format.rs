//! The on-disk format's identifiers, which everything that reads or
//! reports on a store's version shares (a leaf: it depends on nothing).

/// `application_id` of a Quiver database: "QVR1" in ASCII.
pub(crate) const APPLICATION_ID: i32 = 0x5156_5231;

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i32 = 6;
