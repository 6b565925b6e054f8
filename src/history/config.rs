//! `[history]` of smsgate.toml: message history on PostgreSQL. Absent: history is off and
//! `GET /api/v1/history/*` answers 404 `history_disabled`.

use serde::Deserialize;
use std::path::PathBuf;

/// How the destination number is kept in PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// As submitted (`+4915112345678`).
    #[default]
    Plain,
    /// HMAC-SHA256(`destination_key`, number), 32 hex digits: a query by `to` still finds the
    /// number's messages, but the table does not reveal it.
    Hashed,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// libpq-style connection string or URL, e.g. `host=/run/postgresql dbname=smsgate` or
    /// `postgres://smsgate@127.0.0.1:5432/smsgate`. Required.
    pub postgres_url: String,
    /// Events waiting for the spool thread; beyond, an event is dropped and counted. Default
    /// 262144 (about 13 s of 20,000 messages/s at one event each).
    pub queue_capacity: usize,
    /// Most events per batch (one COPY + INSERT). Default 5000.
    pub batch_max: usize,
    /// A batch is closed after this long even if not full, ms. Default 200.
    pub flush_interval_ms: u64,
    /// Events kept in memory while PostgreSQL is behind; beyond, batches go to spill files.
    /// Default 100000.
    pub memory_events: usize,
    /// Directory of the spill files. Default `data/history-spill`.
    pub spill_dir: PathBuf,
    /// Most bytes of spill files; beyond, new events are dropped and counted. Default 1 GiB.
    pub spill_max_bytes: u64,
    /// Day partitions older than this are dropped (checked at start and hourly). Default 30.
    pub retention_days: u32,
    /// `plain` or `hashed` (needs `destination_key`). Default `plain`.
    pub destination: Destination,
    /// Key of the destination hash, ≥16 characters; required with `destination = "hashed"`.
    pub destination_key: Option<String>,
    /// Connecting to PostgreSQL may take this long, ms. Default 2000.
    pub connect_timeout_ms: u64,
    /// One statement (a batch insert, a query) may take this long, ms. Default 10000.
    pub statement_timeout_ms: u64,
    /// First wait before retrying a failed batch, ms; doubles up to `retry_max_ms`. Default 500.
    pub retry_initial_ms: u64,
    /// Longest wait between retries, ms: how late a recovered PostgreSQL is noticed at worst.
    /// Default 10000.
    pub retry_max_ms: u64,
    /// Most rows one `GET /api/v1/history/messages` page returns (`limit` is capped here).
    /// Default 500.
    pub max_page: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            postgres_url: String::new(),
            queue_capacity: 262_144,
            batch_max: 5_000,
            flush_interval_ms: 200,
            memory_events: 100_000,
            spill_dir: PathBuf::from("data/history-spill"),
            spill_max_bytes: 1 << 30,
            retention_days: 30,
            destination: Destination::Plain,
            destination_key: None,
            connect_timeout_ms: 2_000,
            statement_timeout_ms: 10_000,
            retry_initial_ms: 500,
            retry_max_ms: 10_000,
            max_page: 500,
        }
    }
}

impl HistoryConfig {
    /// The first invalid key (relative to `[history]`) and why.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if self.postgres_url.trim().is_empty() {
            return Some(("postgres_url", "is required"));
        }
        if self.postgres_url.parse::<postgres::Config>().is_err() {
            return Some(("postgres_url", "is not a PostgreSQL connection string or URL"));
        }
        for (key, v) in [
            ("queue_capacity", self.queue_capacity as u64),
            ("batch_max", self.batch_max as u64),
            ("flush_interval_ms", self.flush_interval_ms),
            ("memory_events", self.memory_events as u64),
            ("spill_max_bytes", self.spill_max_bytes),
            ("retention_days", u64::from(self.retention_days)),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("statement_timeout_ms", self.statement_timeout_ms),
            ("retry_initial_ms", self.retry_initial_ms),
            ("retry_max_ms", self.retry_max_ms),
            ("max_page", u64::from(self.max_page)),
        ] {
            if v == 0 {
                return Some((key, "must be greater than 0"));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Some(("retry_max_ms", "must be at least retry_initial_ms"));
        }
        match (&self.destination, &self.destination_key) {
            (Destination::Hashed, None) => Some(("destination_key", "is required with destination = \"hashed\"")),
            (_, Some(k)) if k.len() < 16 => Some(("destination_key", "must be at least 16 characters")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_keys_are_named() {
        let ok = HistoryConfig { postgres_url: "host=/tmp dbname=x".into(), ..Default::default() };
        assert_eq!(ok.invalid(), None);
        assert_eq!(HistoryConfig::default().invalid().map(|k| k.0), Some("postgres_url"));
        let hashed = HistoryConfig { destination: Destination::Hashed, ..ok.clone() };
        assert_eq!(hashed.invalid().map(|k| k.0), Some("destination_key"));
        let zero = HistoryConfig { batch_max: 0, ..ok };
        assert_eq!(zero.invalid().map(|k| k.0), Some("batch_max"));
    }
}
