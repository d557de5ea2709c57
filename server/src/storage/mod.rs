//! The keyspace on the LSM: key encoding, metadata records, logical write commands, expiry.

use pinnacle_lsm::Engine;
use std::sync::Arc;

/// The node's keyspace.
pub struct Db {
    /// The storage engine holding every record.
    pub engine: Arc<dyn Engine>,
}
