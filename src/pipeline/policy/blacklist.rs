//! Numbers that never receive messages, from local files (`[policy] blacklist_files`) and
//! objects in S3-compatible buckets (`[[policy.blacklist_s3]]`, [`s3`]).
//!
//! A number is kept as its E.164 digits read as a `u64` (at most 15 digits, never a leading
//! 0, so the mapping is one to one): about 9.4 bytes a number in an open-addressing table, O(1)
//! lookups, files streamed line by line.
//! The set is immutable; one side thread (`policy-blacklist`) polls the files' modification
//! times and the objects' ETags (`HEAD`) and, when one changed or the admin API asks
//! ([`ReloadHandle`]), loads every source into a new set and swaps it into an [`ArcSwap`]
//! shared by all shards. A shard's lookup is an `ArcSwap::load` (no lock). A source that
//! cannot be read or has a bad line keeps the previous set (logged, counted).

pub mod s3;

use super::config::PolicyConfig;
use arc_swap::ArcSwap;
use s3::S3Object;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

    /// Reads one local file; the error names the file and the first bad line.
    pub fn add_file(&mut self, f: &std::path::Path) -> Result<(), String> {
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        self.add_reader(std::io::BufReader::with_capacity(1 << 16, file)).map_err(|e| format!("{}: {e}", f.display()))
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
            c.add_file(f)?;
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

    /// Bytes the table takes (8 a slot): about 9.4 a number.
    pub fn table_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The blacklist in force, shared by every shard; the watcher swaps it.
pub type SharedBlacklist = Arc<ArcSwap<Blacklist>>;

/// Every place numbers come from: local files and S3 objects.
pub struct Sources {
    files: Vec<PathBuf>,
    objects: Vec<S3Object>,
    agent: ureq::Agent,
}

/// What the sources looked like at the last load: files' modification times, objects' ETags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    mtimes: Vec<Option<SystemTime>>,
    etags: Vec<Option<String>>,
}

/// The answer of an on-demand reload.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Loaded {
    pub numbers: usize,
    pub files: usize,
    pub objects: usize,
}

impl Sources {
    /// `timeout`: the longest one S3 request may take (connect, and the whole body of a GET).
    pub fn new(files: Vec<PathBuf>, objects: Vec<S3Object>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5).min(timeout)))
            .timeout_global(Some(timeout))
            .build()
            .into();
        Sources { files, objects, agent }
    }

    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.objects.is_empty()
    }

    /// Every file and object into one new set; the first failure is the error.
    fn load(&self) -> Result<(Blacklist, Seen), String> {
        let mtimes = mtimes(&self.files);
        let mut c = Collector::default();
        for f in &self.files {
            c.add_file(f)?;
        }
        let mut etags = Vec::with_capacity(self.objects.len());
        for o in &self.objects {
            let (etag, ()) =
                o.get(&self.agent, |body| c.add_reader(std::io::BufReader::with_capacity(1 << 16, body)))?;
            etags.push(Some(etag));
        }
        Ok((c.build(), Seen { mtimes, etags }))
    }

    /// What the sources look like now. An object whose `HEAD` fails keeps its last ETag
    /// (logged): an S3 outage keeps the list in force, it never empties it.
    fn look(&self, last: &Seen) -> Seen {
        let etags = self
            .objects
            .iter()
            .enumerate()
            .map(|(i, o)| match o.etag(&self.agent) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(object = %o.name, error = %e, "blacklist object not checked; the list in force stays");
                    last.etags.get(i).cloned().flatten()
                }
            })
            .collect();
        Seen { mtimes: mtimes(&self.files), etags }
    }
}

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files.iter().map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok()).collect()
}

/// Counters of the blacklist thread, for `/metrics` (atomics: written by that thread only).
#[derive(Debug, Default)]
pub struct BlacklistStats {
    /// Numbers in the list in force.
    pub numbers: AtomicU64,
    /// Loads that replaced the list (the first one included).
    pub loads: AtomicU64,
    /// Reloads that failed (the previous list stayed).
    pub failures: AtomicU64,
    /// Unix ms of the last successful load.
    pub loaded_at_ms: AtomicU64,
}

impl BlacklistStats {
    fn loaded(&self, numbers: usize) {
        self.numbers.store(numbers as u64, Ordering::Relaxed);
        self.loads.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        self.loaded_at_ms.store(u64::try_from(now.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// Why an on-demand reload changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadError {
    /// Neither `blacklist_files` nor `blacklist_s3` is configured.
    NotConfigured,
    /// Another reload is queued or running.
    Busy,
    /// A source could not be read or has a bad line; the previous list stays.
    Failed(String),
}

/// A reload asked for by the admin API; the answer comes back on `reply`.
type Reply = futures_channel::oneshot::Sender<Result<Loaded, ReloadError>>;

/// Asks the blacklist thread to reload now (`POST /api/v1/admin/blacklist/reload`). Cheap to
/// clone; one per shard.
#[derive(Clone)]
pub struct ReloadHandle {
    requests: crossbeam_channel::Sender<Reply>,
}

impl ReloadHandle {
    /// Loads every source now, whatever changed. `Err`: why nothing changed.
    pub async fn reload(&self) -> Result<Loaded, ReloadError> {
        let (tx, rx) = futures_channel::oneshot::channel();
        match self.requests.try_send(tx) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => return Err(ReloadError::Busy),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(ReloadError::NotConfigured),
        }
        rx.await.unwrap_or_else(|_| Err(ReloadError::Failed("the blacklist thread stopped".into())))
    }
}

/// Keeps the `policy-blacklist` thread alive; dropping it stops the thread (at its next tick).
pub struct Watcher {
    _stop: crossbeam_channel::Sender<()>,
}

/// The running blacklist: the set in force, its thread and how to ask it for a reload.
pub struct Started {
    pub shared: SharedBlacklist,
    pub watcher: Option<Watcher>,
    pub reload: ReloadHandle,
}

/// Loads every source (an error here is a start-up error: smsgate does not start without the
/// list it was told to enforce) and starts the thread that reloads them when a file's
/// modification time or an object's ETag changes, checked every `every`, or when asked.
pub fn start(sources: Sources, every: Duration, stats: Arc<BlacklistStats>) -> Result<Started, String> {
    let (first, seen) = sources.load()?;
    stats.loaded(first.len());
    if !sources.is_empty() {
        tracing::info!(
            files = sources.files.len(),
            objects = sources.objects.len(),
            numbers = first.len(),
            "blacklist loaded"
        );
    }
    let shared: SharedBlacklist = Arc::new(ArcSwap::from_pointee(first));
    // One reload waits at most; a second request while one is queued is answered at once.
    let (requests, asked) = crossbeam_channel::bounded::<Reply>(1);
    if sources.is_empty() {
        return Ok(Started { shared, watcher: None, reload: ReloadHandle { requests } });
    }
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let target = shared.clone();
    // The thread's own sender: `asked` stays connected however many handles are dropped.
    let keep_asking = requests.clone();
    std::thread::Builder::new()
        .name("policy-blacklist".into())
        .spawn(move || {
            let _keep_asking = keep_asking;
            watch(&sources, seen, &target, &stopped, &asked, every, &stats)
        })
        .map_err(|e| format!("starting the blacklist thread: {e}"))?;
    Ok(Started { shared, watcher: Some(Watcher { _stop: stop }), reload: ReloadHandle { requests } })
}

/// [`start`] with the sources of `[policy]`; its counters go to `/metrics`.
pub fn start_configured(cfg: &PolicyConfig) -> Result<Started, String> {
    let objects = cfg.blacklist_s3.iter().map(|s| S3Object::new(s, s.credentials())).collect::<Result<Vec<_>, _>>()?;
    let timeout = Duration::from_millis(cfg.blacklist_s3_timeout_ms);
    let sources = Sources::new(cfg.blacklist_files.clone(), objects, timeout);
    let stats = Arc::new(BlacklistStats::default());
    crate::observe::metrics::set_blacklist(stats.clone());
    start(sources, cfg.blacklist_reload(), stats)
}

/// Runs until the [`Watcher`] is dropped. A side thread: blocking reads are its job.
fn watch(
    sources: &Sources,
    mut seen: Seen,
    target: &SharedBlacklist,
    stopped: &crossbeam_channel::Receiver<()>,
    asked: &crossbeam_channel::Receiver<Reply>,
    every: Duration,
    stats: &BlacklistStats,
) {
    loop {
        let reply = crossbeam_channel::select! {
            recv(stopped) -> _ => return,
            recv(asked) -> r => match r {
                Ok(reply) => Some(reply),
                Err(_) => return,
            },
            default(every) => None,
        };
        if reply.is_none() {
            let now = sources.look(&seen);
            if now == seen {
                continue;
            }
            // Try again only when a source changes again, whatever this load gives.
            seen = now;
        }
        let result = match sources.load() {
            Ok((b, now)) => {
                let loaded = Loaded { numbers: b.len(), files: sources.files.len(), objects: sources.objects.len() };
                tracing::info!(numbers = b.len(), "blacklist reloaded");
                stats.loaded(b.len());
                target.store(Arc::new(b));
                seen = now;
                Ok(loaded)
            }
            Err(e) => {
                tracing::warn!(error = %e, "blacklist not reloaded; the previous one stays");
                stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(ReloadError::Failed(e))
            }
        };
        if let Some(reply) = reply {
            // The asker may have gone (client disconnected): nothing to tell then.
            reply.send(result).ok();
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

    #[test]
    fn on_demand_reload_answers_why_not() {
        use crate::ingress::reply::{ErrorReply, HttpError};
        let none = Sources::new(Vec::new(), Vec::new(), Duration::from_secs(5));
        let started = start(none, Duration::from_secs(1), Arc::new(BlacklistStats::default())).unwrap();
        assert!(started.watcher.is_none());
        let answer = futures_lite::future::block_on(started.reload.reload());
        assert_eq!(answer, Err(ReloadError::NotConfigured));
        let codes = [
            (ReloadError::NotConfigured, 404, "no_blacklist"),
            (ReloadError::Busy, 409, "reload_in_progress"),
            (ReloadError::Failed("x".into()), 502, "blacklist_not_reloaded"),
        ];
        for (e, status, code) in codes {
            let r = ErrorReply::from(HttpError::BlacklistReload(e));
            assert_eq!((r.status.as_u16(), r.code), (status, code));
        }
    }

    #[test]
    fn reloads_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bl.txt");
        std::fs::write(&f, "+4911111111\n").unwrap();
        let sources = Sources::new(vec![f.clone()], Vec::new(), Duration::from_secs(5));
        let stats = Arc::new(BlacklistStats::default());
        let Started { shared, watcher, .. } = start(sources, Duration::from_millis(10), stats.clone()).unwrap();
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
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stats.failures.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "bad file not tried");
            let _ = crossbeam_channel::after(Duration::from_millis(5)).recv();
        }
        assert!(shared.load().contains("4933333333"));
        assert_eq!(stats.numbers.load(Ordering::Relaxed), 2);
        let missing = Sources::new(vec![dir.path().join("missing")], Vec::new(), Duration::from_secs(5));
        assert!(start(missing, Duration::from_millis(10), stats).is_err());
    }
}
