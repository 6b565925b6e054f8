//! The spool thread: takes events off the shards' queue, cuts them into batches and feeds the
//! writer one batch at a time. It never touches PostgreSQL, so it always keeps the queue
//! drained, however slow PostgreSQL is.
//!
//! While the writer keeps up, batches wait in memory (at most one flush interval). When the
//! writer falls behind by more than `memory_events`, new batches are appended to spill files
//! (JSON lines, `fdatasync` per batch) in `spill_dir`, and keep going there until the writer
//! has caught up, so events reach PostgreSQL in the order they came. The writer deletes a
//! spill file only after its rows are committed; a file left by a crash or a shutdown is
//! sent at the next start. Writes are idempotent on the event id, so a file sent twice
//! counts once.
#![allow(clippy::disallowed_methods)] // a side thread: blocking file I/O and waits are its job

use super::config::HistoryConfig;
use super::writer::{self, Done, Work};
use super::{HistoryEvent, HistoryStats};
use crossbeam_channel::{select, Receiver, Sender};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A spill file is closed (and can be handed to the writer) past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// At shutdown, the writer gets this long to take what is in memory before it is spilled.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

// === spill files ===

/// One closed spill file.
#[derive(Debug)]
pub struct Segment {
    pub path: PathBuf,
    pub events: u64,
    pub bytes: u64,
}

/// The spill directory: file names are increasing sequence numbers, so sorting them is
/// their age order.
pub struct SpillDir {
    dir: PathBuf,
    next: AtomicU64,
    stats: Arc<HistoryStats>,
}

impl SpillDir {
    /// Opens (creates) the directory and lists the spill files left by an earlier run.
    pub fn open(dir: &Path, stats: Arc<HistoryStats>) -> std::io::Result<(SpillDir, Vec<Segment>)> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                found.push((seq, path));
            }
        }
        found.sort();
        let next = found.last().map_or(0, |(s, _)| s + 1);
        let mut segments = Vec::new();
        for (_, path) in found {
            let bytes = std::fs::metadata(&path)?.len();
            let events = BufReader::new(File::open(&path)?).lines().count() as u64;
            stats.backlog_spilled.fetch_add(events, Ordering::Relaxed);
            stats.spill_bytes.fetch_add(bytes, Ordering::Relaxed);
            segments.push(Segment { path, events, bytes });
        }
        Ok((SpillDir { dir: dir.to_owned(), next: AtomicU64::new(next), stats }, segments))
    }

    fn create(&self) -> std::io::Result<OpenSegment> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{seq:016}.jsonl"));
        let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        // The new name must survive a crash too.
        File::open(&self.dir)?.sync_all()?;
        Ok(OpenSegment { file, segment: Segment { path, events: 0, bytes: 0 } })
    }

    /// Writes `events` to a new spill file of their own, durably.
    pub fn write_new(&self, events: &[HistoryEvent]) -> std::io::Result<Segment> {
        let mut open = self.create()?;
        open.append(events, &self.stats)?;
        Ok(open.segment)
    }

    /// Reads a spill file back. Lines that do not parse (a write torn by a crash) are
    /// skipped and counted.
    pub fn read(&self, segment: &Segment) -> std::io::Result<Vec<HistoryEvent>> {
        let mut events = Vec::with_capacity(segment.events as usize);
        for line in BufReader::new(File::open(&segment.path)?).lines() {
            match serde_json::from_str(&line?) {
                Ok(e) => events.push(e),
                Err(e) => {
                    self.stats.dropped_corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(file = %segment.path.display(), error = %e, "unreadable history spill line skipped");
                }
            }
        }
        Ok(events)
    }

    /// Deletes a spill file whose events are in PostgreSQL.
    pub fn remove(&self, segment: &Segment) {
        match std::fs::remove_file(&segment.path) {
            Ok(()) => {
                self.stats.backlog_spilled.fetch_sub(segment.events, Ordering::Relaxed);
                self.stats.spill_bytes.fetch_sub(segment.bytes, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(file = %segment.path.display(), error = %e, "history spill file written but not deleted; it will be written again (counted once)")
            }
        }
    }
}

/// The spill file being appended to.
struct OpenSegment {
    file: File,
    segment: Segment,
}

impl OpenSegment {
    fn append(&mut self, events: &[HistoryEvent], stats: &HistoryStats) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(events.len() * 256);
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        let (n, bytes) = (events.len() as u64, buf.len() as u64);
        self.segment.events += n;
        self.segment.bytes += bytes;
        stats.spilled.fetch_add(n, Ordering::Relaxed);
        stats.backlog_spilled.fetch_add(n, Ordering::Relaxed);
        stats.spill_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
}

// === the thread ===

/// The running spool thread (and, through it, the writer thread).
pub struct SpoolHandle {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl SpoolHandle {
    /// Opens the spill directory (an error stops the start) and starts the threads
    /// "history-spool" and "history-writer".
    pub fn start(
        cfg: &HistoryConfig,
        events: Receiver<HistoryEvent>,
        stats: Arc<HistoryStats>,
    ) -> Result<Self, String> {
        let (spill, segments) = SpillDir::open(&cfg.spill_dir, stats.clone())
            .map_err(|e| format!("history.spill_dir {}: {e}", cfg.spill_dir.display()))?;
        if !segments.is_empty() {
            tracing::info!(
                files = segments.len(),
                events = stats.backlog(),
                "history spill files from an earlier run will be written to PostgreSQL"
            );
        }
        let spill = Arc::new(spill);
        let (work_tx, work_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let abort = Arc::new(AtomicBool::new(false));
        let writer = writer::spawn(cfg, work_rx, done_tx, spill.clone(), stats.clone(), abort.clone())
            .map_err(|e| format!("starting the history writer: {e}"))?;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let spool = Spool {
            cfg: cfg.clone(),
            stats,
            spill,
            mem: VecDeque::new(),
            mem_events: 0,
            open: None,
            closed: segments.into(),
            in_flight: false,
            work: work_tx,
            done: done_rx,
            abort,
        };
        let thread = std::thread::Builder::new()
            .name("history-spool".into())
            .spawn(move || spool.run(events, stopped, writer))
            .map_err(|e| format!("starting the history spool: {e}"))?;
        Ok(SpoolHandle { stop, thread: Some(thread) })
    }

    /// Stops the spool after it has handed memory to the writer (up to 5 s) or to a spill file.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _already_stopping = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the history spool thread panicked");
            }
        }
    }
}

impl Drop for SpoolHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct Spool {
    cfg: HistoryConfig,
    stats: Arc<HistoryStats>,
    spill: Arc<SpillDir>,
    /// Batches waiting in memory, oldest first; `mem_events` events in all.
    mem: VecDeque<Vec<HistoryEvent>>,
    mem_events: usize,
    /// The spill file being appended to, and closed ones waiting for the writer (oldest first).
    open: Option<OpenSegment>,
    closed: VecDeque<Segment>,
    /// The writer has a batch or file and has not answered yet.
    in_flight: bool,
    work: Sender<Work>,
    done: Receiver<Done>,
    /// Tells the writer to give up retrying (shutdown).
    abort: Arc<AtomicBool>,
}

impl Spool {
    fn run(mut self, events: Receiver<HistoryEvent>, stopped: Receiver<()>, writer: JoinHandle<()>) {
        let flush = Duration::from_millis(self.cfg.flush_interval_ms);
        let mut current: Vec<HistoryEvent> = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut last_log = Instant::now();
        loop {
            let wait = deadline.map_or(flush, |d| d.saturating_duration_since(Instant::now()));
            select! {
                recv(events) -> e => match e {
                    Ok(e) => {
                        if current.is_empty() {
                            deadline = Some(Instant::now() + flush);
                        }
                        current.push(e);
                    }
                    Err(_) => break,
                },
                recv(self.done) -> d => {
                    if let Ok(d) = d {
                        self.finished(d);
                    }
                },
                recv(stopped) -> _ => break,
                default(wait) => {},
            }
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            if current.len() >= self.cfg.batch_max || (due && !current.is_empty()) {
                self.queue(std::mem::take(&mut current));
                deadline = None;
            }
            self.feed(true);
            self.stats.backlog_memory.store((self.mem_events + current.len()) as u64, Ordering::Relaxed);
            if self.stats.backlog() > self.cfg.batch_max as u64
                && last_log.elapsed() >= crate::observe::events::LOG_EVERY
            {
                last_log = Instant::now();
                tracing::warn!(
                    in_memory = self.stats.backlog_memory.load(Ordering::Relaxed),
                    spilled = self.stats.backlog_spilled.load(Ordering::Relaxed),
                    "history backlog: PostgreSQL is behind"
                );
            }
        }
        // Shutdown: everything queued so far, then memory to the writer while it takes it.
        current.extend(events.try_iter());
        if !current.is_empty() {
            self.queue(current);
        }
        let until = Instant::now() + SHUTDOWN_DRAIN;
        while (!self.mem.is_empty() || self.in_flight) && Instant::now() < until {
            self.feed(false);
            if let Ok(d) = self.done.recv_timeout(Duration::from_millis(50)) {
                self.finished(d);
            }
        }
        self.abort.store(true, Ordering::Relaxed);
        if self.in_flight {
            if let Ok(d) = self.done.recv() {
                self.finished(d);
            }
        }
        drop(self.work);
        if writer.join().is_err() {
            tracing::error!("the history writer thread panicked");
        }
        let rest: Vec<HistoryEvent> = self.mem.drain(..).flatten().collect();
        if !rest.is_empty() {
            match self.spill.write_new(&rest) {
                Ok(_) => tracing::info!(events = rest.len(), "history events not yet written kept in a spill file"),
                Err(e) => {
                    self.stats.dropped_spill_full.fetch_add(rest.len() as u64, Ordering::Relaxed);
                    tracing::error!(events = rest.len(), error = %e, "history events lost at shutdown: spill file not written");
                }
            }
        }
        self.stats.backlog_memory.store(0, Ordering::Relaxed);
    }

    /// The writer answered: a batch it could not write (shutdown) is spilled.
    fn finished(&mut self, done: Done) {
        self.in_flight = false;
        if let Done::Unwritten(batch) = done {
            self.mem.push_front(batch);
            self.mem_events += self.mem.front().map_or(0, Vec::len);
        }
    }

    /// A full batch: to memory while the writer keeps up, else to the spill file.
    fn queue(&mut self, batch: Vec<HistoryEvent>) {
        let spilling = self.open.is_some() || !self.closed.is_empty();
        if !spilling && self.mem_events + batch.len() <= self.cfg.memory_events {
            self.mem_events += batch.len();
            self.mem.push_back(batch);
            return;
        }
        if self.stats.spill_bytes.load(Ordering::Relaxed) >= self.cfg.spill_max_bytes {
            self.stats.dropped_spill_full.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Some(suppressed) = crate::observe::events::log_due("", "history_spill_full") {
                tracing::error!(
                    events = batch.len(),
                    suppressed,
                    "history spill files full (history.spill_max_bytes): events dropped"
                );
            }
            return;
        }
        let appended = match self.open.as_mut() {
            Some(open) => open.append(&batch, &self.stats),
            None => self.spill.create().and_then(|mut open| {
                tracing::warn!(in_memory = self.mem_events, "history: PostgreSQL is behind; spilling events to disk");
                let r = open.append(&batch, &self.stats);
                self.open = Some(open);
                r
            }),
        };
        if let Err(e) = appended {
            self.stats.dropped_spill_full.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Some(suppressed) = crate::observe::events::log_due("", "history_spill_error") {
                tracing::error!(events = batch.len(), error = %e, suppressed, "history spill file not written: events dropped");
            }
        }
        if self.open.as_ref().is_some_and(|o| o.segment.bytes >= SEGMENT_BYTES) {
            self.close_open();
        }
    }

    fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            self.closed.push_back(open.segment);
        }
    }

    /// Hands the writer its next piece when it is free: memory first (older), then spill
    /// files (`with_files` false at shutdown: files wait for the next start).
    fn feed(&mut self, with_files: bool) {
        if self.in_flight {
            return;
        }
        let work = if let Some(batch) = self.mem.pop_front() {
            self.mem_events -= batch.len();
            Work::Batch(batch)
        } else if with_files {
            if self.closed.is_empty() {
                self.close_open();
            }
            match self.closed.pop_front() {
                Some(segment) => Work::Segment(segment),
                None => return,
            }
        } else {
            return;
        };
        match self.work.try_send(work) {
            Ok(()) => self.in_flight = true,
            Err(e) => {
                // Cannot happen while in_flight is false (capacity 1, the writer took the
                // last one); keep the work rather than lose it.
                match e.into_inner() {
                    Work::Batch(b) => {
                        self.mem_events += b.len();
                        self.mem.push_front(b);
                    }
                    Work::Segment(s) => self.closed.push_front(s),
                }
            }
        }
    }
}
