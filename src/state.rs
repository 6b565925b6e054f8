//! Lifecycle state: the record, the backend contract, the group-commit writer.
pub mod embedded;
pub mod record;
pub mod store;
#[cfg(test)]
pub mod test_util;
pub mod writer;
