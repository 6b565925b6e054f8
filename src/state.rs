//! Lifecycle state: the record, the backend contract, the group-commit writer.
pub mod aerospike;
pub mod embedded;
pub mod ops;
pub mod record;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod wal;
pub mod writer;
