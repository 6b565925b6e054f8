//! Numbers that never receive messages, from local files (`[policy] blacklist_files`).
//!
//! A number is kept as its E.164 digits read as a `u64` (at most 15 digits, never a leading
//! 0, so the mapping is one to one): about 9.4 bytes a number in an open-addressing table, O(1)
//! lookups, files streamed line by line.
//! The set is immutable; one side thread (`policy-blacklist`) polls the files' modification
//! times and, when one changed, loads every file into a new set and swaps it into an
//! [`ArcSwap`] shared by all shards. A shard's lookup is an `ArcSwap::load` (no lock). A file
//! that cannot be read or has a bad line keeps the previous set (logged).

use arc_swap::ArcSwap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Slots per number: 1 / 0.85, so linear probes stay short (about 3.8 slots on a miss).
const LOAD_FACTOR: f64 = 0.85;

/// One loaded blacklist: every number of every file, in an open-addressing table of `u64`
/// (0 marks an empty slot: no E.164 number reads as 0). 10 million numbers take about 94 MB.
#[derive(Debug, Default)]
pub struct Blacklist {
    slots: Box<[u64]>,
    len: usize,
}

/// `+4915112345678` or `4915112345678` → its digits as a number; `None` if not E.164.
pub fn number_key(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let ok = (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    ok.then(|| digits.parse().ok()).flatten()
}

/// The first slot to probe for `n` in a table of `m` slots: a multiplicative hash mapped
/// onto `0..m` by its high bits (Lemire's multiply-shift), so `m` need not be a power of two.
fn home(n: u64, m: usize) -> usize {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(h) * m as u128) >> 64) as usize
}

/// Collects numbers line by line; [`Collector::build`] makes the table.
#[derive(Default)]
pub struct Collector {
    numbers: Vec<u64>,
}

impl Collector {
    /// Reads one file's lines; the error names the first bad line.
    pub fn add_reader(&mut self, mut r: impl BufRead) -> Result<(), String> {
        let mut line = String::new();
        let mut i = 0;
        loop {
            line.clear();
            i += 1;
            if r.read_line(&mut line).map_err(|e| format!("line {i}: {e}"))? == 0 {
                return Ok(());
            }
            let text = line.split('#').next().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            let n = number_key(text).ok_or_else(|| format!("line {i}: `{text}` is not an E.164 number"))?;
            self.numbers.push(n);
        }
    }

    pub fn build(mut self) -> Blacklist {
        self.numbers.sort_unstable();
        self.numbers.dedup();
        let m = ((self.numbers.len() as f64 / LOAD_FACTOR).ceil() as usize).max(16);
        let mut slots = vec![0u64; m].into_boxed_slice();
        for &n in &self.numbers {
            let mut i = home(n, m);
            while slots[i] != 0 {
                i = if i + 1 == m { 0 } else { i + 1 };
            }
            slots[i] = n;
        }
        Blacklist { slots, len: self.numbers.len() }
    }
}

impl Blacklist {
    /// One list from text (tests, and the format's reference).
    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut c = Collector::default();
        c.add_reader(text.as_bytes())?;
        Ok(c.build())
    }

    /// Loads every file; the first unreadable file or bad line is the error.
    pub fn load(files: &[PathBuf]) -> Result<Self, String> {
        let mut c = Collector::default();
        for f in files {
            let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
            c.add_reader(std::io::BufReader::with_capacity(1 << 16, file))
                .map_err(|e| format!("{}: {e}", f.display()))?;
        }
        Ok(c.build())
    }

    /// `digits`: E.164 without `+` (a `Msisdn`'s digits).
    pub fn contains(&self, digits: &str) -> bool {
        let Some(n) = number_key(digits) else {
            return false;
        };
        let m = self.slots.len();
        if m == 0 {
            return false;
        }
        let mut i = home(n, m);
        loop {
            match self.slots[i] {
                0 => return false,
                s if s == n => return true,
                _ => i = if i + 1 == m { 0 } else { i + 1 },
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The blacklist in force, shared by every shard; the watcher swaps it.
pub type SharedBlacklist = Arc<ArcSwap<Blacklist>>;

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files.iter().map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok()).collect()
}

/// Keeps the `policy-blacklist` thread alive; dropping it stops the thread (at its next tick).
pub struct Watcher {
    _stop: crossbeam_channel::Sender<()>,
}

/// Loads the files (an error here is a start-up error) and starts the thread that reloads
/// them when a modification time changes, checked every `every`.
pub fn start(files: Vec<PathBuf>, every: Duration) -> Result<(SharedBlacklist, Option<Watcher>), String> {
    let seen = mtimes(&files);
    let first = Blacklist::load(&files)?;
    if !files.is_empty() {
        tracing::info!(files = files.len(), numbers = first.len(), "blacklist loaded");
    }
    let shared: SharedBlacklist = Arc::new(ArcSwap::from_pointee(first));
    if files.is_empty() {
        return Ok((shared, None));
    }
    let (stop, ticks) = crossbeam_channel::bounded::<()>(0);
    let target = shared.clone();
    std::thread::Builder::new()
        .name("policy-blacklist".into())
        .spawn(move || watch(&files, seen, &target, &ticks, every))
        .map_err(|e| format!("starting the blacklist thread: {e}"))?;
    Ok((shared, Some(Watcher { _stop: stop })))
}

/// Runs until the [`Watcher`] is dropped. A side thread: blocking file reads are its job.
fn watch(
    files: &[PathBuf],
    mut seen: Vec<Option<SystemTime>>,
    target: &SharedBlacklist,
    ticks: &crossbeam_channel::Receiver<()>,
    every: Duration,
) {
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = ticks.recv_timeout(every) {
        let now = mtimes(files);
        if now == seen {
            continue;
        }
        match Blacklist::load(files) {
            Ok(b) => {
                tracing::info!(numbers = b.len(), "blacklist reloaded");
                target.store(Arc::new(b));
                seen = now;
            }
            Err(e) => {
                tracing::warn!(error = %e, "blacklist not reloaded; the previous one stays");
                // Try again only when a file changes again.
                seen = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_and_plus() {
        let b = Blacklist::from_text("# list\n+4915112345678\n\n4930123456 # office\n+4930123456\n").unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.contains("4915112345678"));
        assert!(b.contains("4930123456"));
        assert!(!b.contains("4930123457"));
        assert!(!b.contains("not a number"));
        assert!(Blacklist::from_text("+4930123456\n+49x\n").unwrap_err().contains("line 2"));
        assert!(Blacklist::from_text("0301234\n").is_err());
        assert!(!Blacklist::default().contains("4930123456"));
    }

    #[test]
    fn every_number_found_and_no_other() {
        let text: String = (0..50_000u64).map(|i| format!("+49151{:08}\n", i * 7)).collect();
        let b = Blacklist::from_text(&text).unwrap();
        assert_eq!(b.len(), 50_000);
        for i in 0..350_000u64 {
            assert_eq!(b.contains(&format!("49151{i:08}")), i % 7 == 0 && i / 7 < 50_000, "{i}");
        }
    }

    /// The size: `cargo test --release --lib load_10_million -- --ignored --nocapture`.
    #[test]
    #[ignore = "writes a 150 MB file; a measurement, run by hand"]
    fn load_10_million() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("10m.txt");
        {
            use std::io::Write;
            let mut w = std::io::BufWriter::new(std::fs::File::create(&f).unwrap());
            for i in 0..10_000_000u64 {
                writeln!(w, "+49{}", 1_500_000_000 + i * 13).unwrap();
            }
        }
        let t = std::time::Instant::now();
        let b = Blacklist::load(&[f]).unwrap();
        let took = t.elapsed();
        let bytes = b.slots.len() * 8;
        eprintln!("10M numbers loaded in {took:?}, table {} MB", bytes / 1_000_000);
        assert_eq!(b.len(), 10_000_000);
        assert!(b.contains("491500000013") && !b.contains("491500000014"));
        assert!(took < Duration::from_secs(10));
    }

    #[test]
    fn reloads_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bl.txt");
        std::fs::write(&f, "+4911111111\n").unwrap();
        let (shared, watcher) = start(vec![f.clone()], Duration::from_millis(10)).unwrap();
        assert!(watcher.is_some());
        assert!(shared.load().contains("4911111111"));
        // A different length changes the size even where mtime has a coarse resolution.
        std::fs::write(&f, "+4922222222\n+4933333333\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(later).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while shared.load().contains("4911111111") {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            let _ = crossbeam_channel::after(Duration::from_millis(5)).recv();
        }
        assert!(shared.load().contains("4933333333"));
        // A bad file keeps the previous set.
        std::fs::write(&f, "garbage\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(4);
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(later).unwrap();
        let _ = crossbeam_channel::after(Duration::from_millis(100)).recv();
        assert!(shared.load().contains("4933333333"));
        assert!(start(vec![dir.path().join("missing")], Duration::from_millis(10)).is_err());
    }
}
