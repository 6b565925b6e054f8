//! The embedded store's write-ahead log: what makes a batch durable, in one small sequential
//! write and one `fdatasync`, before redb applies it without a sync of its own.
//!
//! A redb commit that syncs rewrites the B-tree pages it touched (about twenty scattered 4 KiB
//! writes per batch here) and was the longest wait of a message (perf/RESULTS.md, "A
//! write-ahead log in front of redb"). An append to a file whose blocks already exist needs no
//! journal commit of the file system, so its sync is the cheapest durable write the disk has.
//!
//! Layout: two files, `wal-0` and `wal-1`, each [`FILE_BYTES`] long and filled with zeros when
//! made, so that appends never change a file's size or allocation. Records go one after another
//! from offset 0 of the current file:
//!
//! ```text
//! magic "SMSW" | payload length u32 LE | sequence u64 LE | CRC-32 of sequence and payload u32 LE | payload
//! ```
//!
//! The payload is the batch's ops (JSON). Sequences go up by one from record to record across
//! both files. The store writes into redb, in the same transaction as the ops, the sequence of
//! the last batch applied; a checkpoint (a durable redb commit) makes every record up to it
//! redundant, and only then does the log switch to the other file and write it again from the
//! start. Reading a file stops at the first record that is torn, fails its CRC, or does not
//! continue the sequence (an older round's leftovers behind the newest records); recovery replays,
//! in order, the records of both files above the sequence redb has durably applied.

use super::store::StoreError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Size of each of the two files. A checkpoint every 20 ms (the default) at 25,000 messages/s
/// leaves well under 1 MiB in a file; a full file checkpoints early.
pub const FILE_BYTES: u64 = 16 * 1024 * 1024;

const MAGIC: [u8; 4] = *b"SMSW";
const HEADER: usize = 20;

/// One record read back at recovery.
#[derive(Debug, PartialEq, Eq)]
pub struct Recovered {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// The log. Owned by the store's writer thread.
pub struct Wal {
    files: [File; 2],
    current: usize,
    offset: u64,
    next_seq: u64,
    /// Reused for each record.
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (making them if needed) the two files in `dir` and returns, in sequence order, the
    /// records above `applied`: those a crash left unapplied in redb. The log writes its next
    /// record only after [`Wal::restart`].
    pub fn open(dir: &Path, applied: u64) -> Result<(Wal, Vec<Recovered>), StoreError> {
        let files = [open_file(&path(dir, 0))?, open_file(&path(dir, 1))?];
        let mut pending: Vec<Recovered> = Vec::new();
        for f in &files {
            pending.extend(read_chain(f)?.into_iter().filter(|r| r.seq > applied));
        }
        pending.sort_by_key(|r| r.seq);
        // Only an unbroken run from `applied + 1` is a history that happened; anything after a
        // gap cannot be (each record is written only after the one before it is synced).
        let mut expect = applied + 1;
        pending.retain(|r| {
            let keep = r.seq == expect;
            if keep {
                expect += 1;
            }
            keep
        });
        let wal = Wal { files, current: 0, offset: 0, next_seq: expect, buf: Vec::new() };
        Ok((wal, pending))
    }

    /// Starts writing at the beginning of the other file, once everything logged so far is
    /// durable in redb (after a checkpoint, and after recovery's checkpoint).
    pub fn restart(&mut self) {
        self.current = 1 - self.current;
        self.offset = 0;
    }

    /// Whether a record of `payload_len` bytes still fits in the current file.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.offset + (HEADER + payload_len) as u64 <= FILE_BYTES
    }

    /// Appends one record and syncs it; returns its sequence. The caller checks
    /// [`Wal::fits`] first (and checkpoints and restarts if not); a payload larger than a whole
    /// file is refused.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        if !self.fits(payload.len()) {
            return Err(StoreError::Io(format!("write-ahead log: a batch of {} bytes does not fit", payload.len())));
        }
        let seq = self.next_seq;
        let len = u32::try_from(payload.len()).map_err(|_| StoreError::Io("write-ahead log: batch too big".into()))?;
        self.buf.clear();
        self.buf.extend_from_slice(&MAGIC);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.extend_from_slice(&crc(seq, payload).to_le_bytes());
        self.buf.extend_from_slice(payload);
        let file = &self.files[self.current];
        file.write_all_at(&self.buf, self.offset).map_err(|e| StoreError::Io(format!("write-ahead log write: {e}")))?;
        file.sync_data().map_err(|e| StoreError::Io(format!("write-ahead log sync: {e}")))?;
        self.offset += self.buf.len() as u64;
        self.next_seq += 1;
        Ok(seq)
    }
}

fn path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("wal-{n}"))
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Opens a log file, filling it with zeros to its full size first if it is shorter (a new file,
/// or one a crash interrupted while it was being made).
fn open_file(path: &Path) -> Result<File, StoreError> {
    let err = |what: &str, e: std::io::Error| StoreError::Io(format!("write-ahead log {what} {}: {e}", path.display()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| err("open", e))?;
    let len = file.metadata().map_err(|e| err("stat", e))?.len();
    if len < FILE_BYTES {
        let zeros = vec![0u8; 1024 * 1024];
        let mut at = len;
        while at < FILE_BYTES {
            let n = zeros.len().min((FILE_BYTES - at) as usize);
            file.write_all_at(&zeros[..n], at).map_err(|e| err("fill", e))?;
            at += n as u64;
        }
        file.sync_all().map_err(|e| err("sync", e))?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| err("sync directory of", e))?;
        }
    }
    Ok(file)
}

/// The records of one file from its start, as long as they are whole and continue the sequence.
fn read_chain(file: &File) -> Result<Vec<Recovered>, StoreError> {
    let mut out: Vec<Recovered> = Vec::new();
    let mut offset = 0u64;
    let mut header = [0u8; HEADER];
    loop {
        if offset + HEADER as u64 > FILE_BYTES || file.read_exact_at(&mut header, offset).is_err() {
            break;
        }
        if header[..4] != MAGIC {
            break;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as u64;
        let seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let sum = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        if offset + HEADER as u64 + len > FILE_BYTES || out.last().is_some_and(|r| r.seq + 1 != seq) {
            break;
        }
        let mut payload = vec![0u8; len as usize];
        if file.read_exact_at(&mut payload, offset + HEADER as u64).is_err() || crc(seq, &payload) != sum {
            break;
        }
        offset += HEADER as u64 + len;
        out.push(Recovered { seq, payload });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(r: &[Recovered]) -> Vec<u64> {
        r.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_above_the_applied_sequence_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, rec) = Wal::open(dir.path(), 0).unwrap();
        assert!(rec.is_empty());
        for i in 1..=5u64 {
            assert_eq!(wal.append(format!("batch {i}").as_bytes()).unwrap(), i);
        }
        drop(wal);
        let (_, rec) = Wal::open(dir.path(), 2).unwrap();
        assert_eq!(seqs(&rec), [3, 4, 5]);
        assert_eq!(rec[0].payload, b"batch 3");
    }

    #[test]
    fn a_torn_record_ends_the_log_and_older_rounds_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        for i in 1..=3u64 {
            wal.append(format!("old {i}").as_bytes()).unwrap();
        }
        // Checkpointed at 3: the other file takes 4 and 5; then the first file again, whose
        // round-one records 2 and 3 still lie behind the new record 6.
        wal.restart();
        wal.append(b"four").unwrap();
        wal.append(b"five").unwrap();
        wal.restart();
        wal.append(b"6").unwrap();
        let at = wal.offset;
        wal.append(b"seven").unwrap();
        drop(wal);
        // Record 7 torn by a crash: its last byte never reached the disk.
        let f = OpenOptions::new().write(true).open(path(dir.path(), 0)).unwrap();
        f.write_all_at(b"X", at + HEADER as u64 + 4).unwrap();
        let (mut wal, rec) = Wal::open(dir.path(), 5).unwrap();
        assert_eq!(seqs(&rec), [6]);
        assert_eq!(rec[0].payload, b"6");
        // The next record continues after what was recovered.
        wal.restart();
        assert_eq!(wal.append(b"again").unwrap(), 7);
    }

    #[test]
    fn a_gap_stops_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        wal.append(b"1").unwrap();
        wal.append(b"2").unwrap();
        drop(wal);
        // redb says 5 was applied: records 1 and 2 are old, nothing is replayed.
        let (_, rec) = Wal::open(dir.path(), 5).unwrap();
        assert!(rec.is_empty());
        // redb says 0: both.
        let (_, rec) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(seqs(&rec), [1, 2]);
    }

    #[test]
    fn a_full_file_refuses_rather_than_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
        let big = vec![7u8; (FILE_BYTES / 2) as usize];
        assert!(wal.fits(big.len()));
        wal.append(&big).unwrap();
        assert!(!wal.fits(big.len()));
        assert!(matches!(wal.append(&big), Err(StoreError::Io(_))));
        wal.restart();
        assert_eq!(wal.append(&big).unwrap(), 2);
    }
}
