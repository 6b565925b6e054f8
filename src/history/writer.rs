//! The PostgreSQL writer: thread "history-writer", the one writer of `history_events`.
//!
//! On its first connection it applies the migrations ([`super::schema`]). Each batch is one
//! transaction: COPY (text format) into a temporary staging table, then
//! `INSERT INTO history_events SELECT … ON CONFLICT DO NOTHING`, so a batch written again
//! (after a commit whose acknowledgement was lost, or a spill file sent again after a crash)
//! inserts nothing twice. A day's partition is created when its first event comes; partitions
//! wholly older than `retention_days` are dropped at start and hourly, and events older than
//! that are not written (counted as expired). A failed batch is retried with backoff until it
//! is written or the spool aborts it at shutdown.
#![allow(clippy::disallowed_methods)] // a side thread: blocking I/O and waits are its job

use super::config::{Destination, HistoryConfig};
use super::schema::{self, MS_PER_DAY};
use super::spool::{Segment, SpillDir};
use super::{HistoryEvent, HistoryStats};
use crate::clock::{Clock, SystemClock};
use crate::digest::{hex, hmac_sha256};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use postgres::{Client, NoTls};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often old partitions are looked for.
const RETENTION_EVERY: Duration = Duration::from_secs(3_600);

/// What the spool hands the writer.
pub enum Work {
    Batch(Vec<HistoryEvent>),
    /// A spill file: read, written, then deleted.
    Segment(Segment),
}

/// What the writer answers.
pub enum Done {
    /// Written (or, for a spill file the spool aborted, left on disk for the next start).
    Written,
    /// Aborted at shutdown before PostgreSQL took it: the spool spills it.
    Unwritten(Vec<HistoryEvent>),
}

/// Errors of one attempt.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}", describe(.0))]
    Pg(#[from] postgres::Error),
    #[error("COPY: {0}")]
    Io(#[from] std::io::Error),
}

/// A PostgreSQL error with the server's message when there is one (its `Display` says only
/// "db error").
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// The connection settings from `history.postgres_url` with smsgate's timeouts.
pub fn pg_config(cfg: &HistoryConfig) -> Result<postgres::Config, postgres::Error> {
    let mut pg: postgres::Config = cfg.postgres_url.parse()?;
    pg.connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .application_name("smsgate")
        .options(&format!("-c statement_timeout={}", cfg.statement_timeout_ms));
    Ok(pg)
}

/// The `dest` column for a number: as given, or its keyed hash.
pub fn dest_value(cfg: &HistoryConfig, to: &str) -> String {
    match (cfg.destination, &cfg.destination_key) {
        (Destination::Hashed, Some(key)) => {
            let mac = hmac_sha256(key.as_bytes(), &[to.as_bytes()]);
            hex(&mac[..16])
        }
        _ => to.to_owned(),
    }
}

/// Applies every migration not applied yet, under an advisory lock; returns the versions it
/// applied.
pub fn migrate(client: &mut Client) -> Result<Vec<i32>, postgres::Error> {
    client.execute("SELECT pg_advisory_lock($1)", &[&schema::MIGRATION_LOCK])?;
    let result = (|| {
        client.batch_execute(schema::CREATE_MIGRATIONS_TABLE)?;
        let applied: HashSet<i32> =
            client.query("SELECT version FROM smsgate_history_migrations", &[])?.iter().map(|r| r.get(0)).collect();
        let mut newly = Vec::new();
        for (version, description, sql) in schema::MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO smsgate_history_migrations (version, description) VALUES ($1, $2)",
                &[version, description],
            )?;
            tx.commit()?;
            tracing::info!(version, description, "history migration applied");
            newly.push(*version);
        }
        Ok(newly)
    })();
    client.execute("SELECT pg_advisory_unlock($1)", &[&schema::MIGRATION_LOCK])?;
    result
}

/// One connection that writes batches: what the writer thread uses, and what tests drive
/// directly with their own clock.
pub struct PgWriter {
    cfg: HistoryConfig,
    client: Client,
    /// Days whose partition exists (created by us or found).
    partitions: HashSet<u64>,
}

/// What one batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub inserted: u64,
    /// Already in the table (same event id): not inserted again.
    pub duplicates: u64,
    /// Older than the retention: not written.
    pub expired: u64,
}

impl PgWriter {
    /// Connects, applies the migrations and prepares the staging table.
    pub fn connect(cfg: &HistoryConfig) -> Result<PgWriter, DbError> {
        let mut client = pg_config(cfg)?.connect(NoTls)?;
        migrate(&mut client)?;
        client.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS history_stage AS SELECT {} FROM history_events WITH NO DATA",
            schema::COLUMNS
        ))?;
        Ok(PgWriter { cfg: cfg.clone(), client, partitions: HashSet::new() })
    }

    fn expired(&self, day: u64, now_ms: u64) -> bool {
        (day + 1) * MS_PER_DAY <= now_ms.saturating_sub(u64::from(self.cfg.retention_days) * MS_PER_DAY)
    }

    /// Writes one batch in one transaction.
    pub fn write(&mut self, events: &[HistoryEvent], now_ms: u64) -> Result<Written, DbError> {
        let mut done = Written::default();
        let mut rows = String::with_capacity(events.len() * 160);
        let mut days = HashSet::new();
        let mut staged = 0u64;
        for e in events {
            let day = e.at_ms / MS_PER_DAY;
            if self.expired(day, now_ms) {
                done.expired += 1;
                continue;
            }
            days.insert(day);
            self.copy_row(&mut rows, e);
            staged += 1;
        }
        for day in days {
            if self.partitions.insert(day) {
                if let Err(e) = self.client.batch_execute(&schema::create_partition(day)) {
                    self.partitions.remove(&day);
                    return Err(e.into());
                }
            }
        }
        if staged == 0 {
            return Ok(done);
        }
        let mut tx = self.client.transaction()?;
        tx.batch_execute("TRUNCATE history_stage")?;
        let mut copy = tx.copy_in(&format!("COPY history_stage ({}) FROM STDIN", schema::COLUMNS))?;
        copy.write_all(rows.as_bytes())?;
        copy.finish()?;
        let inserted = tx.execute(
            &format!(
                "INSERT INTO history_events ({cols}) SELECT {cols} FROM history_stage ON CONFLICT DO NOTHING",
                cols = schema::COLUMNS
            ),
            &[],
        )?;
        tx.commit()?;
        done.inserted = inserted;
        done.duplicates = staged - inserted;
        Ok(done)
    }

    /// One line of COPY text format (tab-separated, `\N` for null).
    fn copy_row(&self, out: &mut String, e: &HistoryEvent) {
        let _ = write!(out, "{}\t{}\t{}\t", e.id, e.at_ms, e.kind.as_str());
        field(out, e.client.as_ref().map(|c| c.as_str()));
        match e.message_id {
            Some(id) => {
                // The id's 64 bits as PostgreSQL's signed bigint.
                let _ = write!(out, "{}\t", id.0 as i64);
            }
            None => out.push_str("\\N\t"),
        }
        let dest = e.to.as_deref().map(|to| dest_value(&self.cfg, to));
        field(out, dest.as_deref());
        field(out, e.link.as_ref().map(|l| l.as_str()));
        field(out, e.status.as_deref());
        field(out, e.layer.as_deref());
        field(out, e.reason.as_deref());
        let _ = write!(out, "{}\t", e.segments);
        field(out, e.detail.as_deref());
        out.pop();
        out.push('\n');
    }

    /// Drops the partitions wholly older than the retention; returns their names.
    pub fn drop_expired(&mut self, now_ms: u64) -> Result<Vec<String>, DbError> {
        let children = self.client.query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'history_events'",
            &[],
        )?;
        let mut dropped = Vec::new();
        for row in children {
            let name: String = row.get(0);
            let Some(day) = schema::partition_day(&name) else { continue };
            if self.expired(day, now_ms) {
                self.client.batch_execute(&format!("DROP TABLE IF EXISTS {name}"))?;
                self.partitions.remove(&day);
                tracing::info!(partition = %name, "history partition past retention dropped");
                dropped.push(name);
            }
        }
        Ok(dropped)
    }
}

/// A COPY text field and its tab: `\N` for none; backslash, tab, newline, CR escaped.
fn field(out: &mut String, v: Option<&str>) {
    match v {
        None => out.push_str("\\N"),
        Some(s) => {
            for ch in s.chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
    out.push('\t');
}

/// Starts the thread "history-writer".
pub fn spawn(
    cfg: &HistoryConfig,
    work: Receiver<Work>,
    done: Sender<Done>,
    spill: Arc<SpillDir>,
    stats: Arc<HistoryStats>,
    abort: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let thread =
        WriterThread { cfg: cfg.clone(), pg: None, spill, stats, abort, last_retention: None, down_since: None };
    std::thread::Builder::new().name("history-writer".into()).spawn(move || thread.run(work, done))
}

struct WriterThread {
    cfg: HistoryConfig,
    pg: Option<PgWriter>,
    spill: Arc<SpillDir>,
    stats: Arc<HistoryStats>,
    abort: Arc<AtomicBool>,
    last_retention: Option<Instant>,
    /// Since when writes fail (for the log line when PostgreSQL is back).
    down_since: Option<Instant>,
}

impl WriterThread {
    fn run(mut self, work: Receiver<Work>, done: Sender<Done>) {
        self.maintain();
        loop {
            let answer = match work.recv_timeout(Duration::from_secs(1)) {
                Ok(Work::Batch(batch)) => match self.write_retrying(&batch) {
                    true => Done::Written,
                    false => Done::Unwritten(batch),
                },
                Ok(Work::Segment(segment)) => {
                    match self.spill.read(&segment) {
                        Ok(events) => {
                            if self.write_retrying(&events) {
                                self.spill.remove(&segment);
                            }
                        }
                        Err(e) => {
                            tracing::error!(file = %segment.path.display(), error = %e, "history spill file unreadable; left in place")
                        }
                    }
                    Done::Written
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.maintain();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if done.send(answer).is_err() {
                break;
            }
        }
    }

    /// Connects if needed; drops expired partitions at start and hourly.
    fn maintain(&mut self) {
        if self.pg.is_none() {
            if let Err(e) = self.connect() {
                self.failed(&e);
                return;
            }
        }
        if self.last_retention.is_some_and(|t| t.elapsed() < RETENTION_EVERY) {
            return;
        }
        if let Some(pg) = self.pg.as_mut() {
            match pg.drop_expired(SystemClock.now_ms()) {
                Ok(_) => self.last_retention = Some(Instant::now()),
                Err(e) => {
                    tracing::warn!(error = %e, "history retention check failed");
                    self.pg = None;
                }
            }
        }
    }

    /// Connects (and migrates); the caller reports a failure with [`Self::failed`].
    fn connect(&mut self) -> Result<(), DbError> {
        match PgWriter::connect(&self.cfg) {
            Ok(pg) => {
                self.pg = Some(pg);
                self.stats.up.store(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn failed(&mut self, e: &DbError) {
        self.pg = None;
        self.stats.up.store(0, Ordering::Relaxed);
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(error = %e, "history: PostgreSQL write failed; events wait in memory, then in spill files");
        } else if let Some(suppressed) = crate::observe::events::log_due("", "history_write_failed") {
            tracing::warn!(error = %e, suppressed, backlog = self.stats.backlog(), "history: PostgreSQL still failing");
        }
    }

    /// Writes until PostgreSQL takes the batch (true) or the spool aborts (false).
    fn write_retrying(&mut self, events: &[HistoryEvent]) -> bool {
        let mut delay = Duration::from_millis(self.cfg.retry_initial_ms);
        loop {
            let attempt = match self.pg.as_mut() {
                Some(pg) => pg.write(events, SystemClock.now_ms()),
                None => self.connect().and_then(|()| match self.pg.as_mut() {
                    Some(pg) => pg.write(events, SystemClock.now_ms()),
                    None => Ok(Written::default()),
                }),
            };
            match attempt {
                Ok(w) => {
                    self.stats.up.store(1, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    self.stats.written.fetch_add(w.inserted, Ordering::Relaxed);
                    self.stats.duplicates.fetch_add(w.duplicates, Ordering::Relaxed);
                    self.stats.dropped_expired.fetch_add(w.expired, Ordering::Relaxed);
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(
                            down_ms = since.elapsed().as_millis() as u64,
                            backlog = self.stats.backlog(),
                            "history: PostgreSQL takes writes again; draining the backlog"
                        );
                    }
                    return true;
                }
                Err(e) => self.failed(&e),
            }
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if self.abort.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.abort.load(Ordering::Relaxed) {
                return false;
            }
            delay = (delay * 2).min(Duration::from_millis(self.cfg.retry_max_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_are_escaped() {
        let mut s = String::new();
        field(&mut s, Some("a\tb\\c\nd"));
        field(&mut s, None);
        assert_eq!(s, "a\\tb\\\\c\\nd\t\\N\t");
    }

    #[test]
    fn hashed_destinations_are_keyed_and_stable() {
        let plain = HistoryConfig::default();
        assert_eq!(dest_value(&plain, "+4915112345678"), "+4915112345678");
        let hashed = HistoryConfig {
            destination: Destination::Hashed,
            destination_key: Some("k".repeat(16)),
            ..HistoryConfig::default()
        };
        let h = dest_value(&hashed, "+4915112345678");
        assert_eq!(h.len(), 32);
        assert_eq!(h, dest_value(&hashed, "+4915112345678"));
        let other = HistoryConfig { destination_key: Some("x".repeat(16)), ..hashed };
        assert_ne!(h, dest_value(&other, "+4915112345678"));
    }
}
