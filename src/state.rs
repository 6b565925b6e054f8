//! Lifecycle state: the record, the backend contract, the group-commit writer.
pub mod embedded;
pub mod record;
pub mod store;
pub mod writer;
