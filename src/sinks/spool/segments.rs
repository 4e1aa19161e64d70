//! A bounded on-disk FIFO of records (one JSON event per line) for sinks whose server
//! is down: events are appended and fsync'd, so they are durable before the sink reports
//! them written, and replayed oldest first when the server returns.
//!
//! Layout: `DIR/NNNNNNNNNNNN.seg` segment files (newline-separated records, rolled at
//! `SEGMENT_BYTES`) plus `DIR/cursor` (`segment offset`, replaced atomically) that says
//! how far replay got. A crash between a replayed write and the cursor update replays
//! those records again, which is harmless: event ids are deterministic and every sink
//! upserts by id. A torn last line (crash mid-append) is cut off on open; a failed
//! append (disk full, I/O or fsync error) is rolled back at once, so the next record is
//! never glued onto a partial one. A segment is deleted only once replay has read it to
//! its end, and a cursor left pointing into a segment that a crash inside `ack` already
//! deleted never makes a new segment reuse that number (which would skip its first
//! records). `DIR/lock` is held (flock) while the spool is open: a second process, or a
//! second sink configured with the same directory, is refused.
//!
//! A full disk must not wedge the spool: replaying frees space only once `ack` has
//! written the cursor, and writing the cursor needs a little space. `DIR/reserve`
//! (`RESERVE_BYTES` of real blocks) is kept for that: appends happen only while it
//! exists (one that cannot be recreated fails like a full disk, and the pipeline
//! waits), and a cursor write that fails deletes it and tries again.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const SEGMENT_BYTES: u64 = 8 << 20;

/// Space kept back for cursor writes on a full disk (each takes a block or two).
const RESERVE_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {op}: {source}")]
    Io { dir: String, op: String, source: std::io::Error },
    #[error("spool {dir} is full ({used} of {max} bytes); events wait in memory until the server returns")]
    Full { dir: String, used: u64, max: u64 },
    #[error("spool {dir}: a record contains a newline")]
    BadRecord { dir: String },
    #[error("spool {dir} is in use by another Argus process or another sink (lock {dir}/lock is held): give each sink its own spool_dir")]
    Locked { dir: String },
    #[cfg(test)]
    #[error("injected crash")]
    Crash,
}

/// Test-only faults: a failing append, a crash at a step of `ack`.
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
struct Faults {
    /// The append writes this many bytes, then fails.
    append_fails_after: Option<usize>,
    /// The fsync after an append fails.
    fsync_fails: bool,
    /// `ack` stops (the process died) right after this step.
    crash_after: Option<AckStep>,
    /// Cursor writes fail (no space) while the reserve exists.
    cursor_needs_reserve: bool,
}

/// The steps of `ack`, where a test can crash it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckStep {
    Cursor,
    RemovedOlder,
    RemovedAll,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Segment numbers on disk, oldest first.
    segments: Vec<u64>,
    /// Replay position: (segment, byte offset) of the oldest unread record.
    read: (u64, u64),
    /// Bytes not yet replayed.
    pending_bytes: u64,
    /// Records not yet replayed.
    pending_records: u64,
    /// Held open (and flock'ed) while the spool is.
    _lock: File,
    /// `DIR/reserve` exists.
    reserve: bool,
    #[cfg(test)]
    faults: Faults,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, at most `max_bytes` of unreplayed records.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let d = dir.display().to_string();
        let io = |op: &str| {
            let d = d.clone();
            let op = op.to_string();
            move |source| SpoolError::Io { dir: d, op, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create"))?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock")).map_err(io("open lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked { dir: d }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
        }
        let mut segments: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io("list"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse().ok()))
            .collect();
        segments.sort_unstable();
        let read = match std::fs::read_to_string(dir.join("cursor")) {
            Ok(s) => parse_cursor(&s).unwrap_or((segments.first().copied().unwrap_or(0), 0)),
            Err(_) => (segments.first().copied().unwrap_or(0), 0),
        };
        // Segments wholly before the cursor were replayed; remove leftovers.
        for s in segments.iter().filter(|s| **s < read.0) {
            let _ = std::fs::remove_file(segment_path(dir, *s));
        }
        segments.retain(|s| *s >= read.0);
        if let Some(last) = segments.last() {
            truncate_torn_tail(&segment_path(dir, *last)).map_err(io("repair"))?;
        }
        let read = match segments.first() {
            // The cursor's own segment: replay continues inside it.
            Some(first) if *first == read.0 => read,
            // It was deleted (replayed to its end): the next one from its start.
            Some(first) => (*first, 0),
            // None left (a crash inside `ack` after the deletions): never append to a
            // segment number the stale cursor points into at an offset.
            None if read.1 > 0 => (read.0 + 1, 0),
            None => read,
        };
        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segments,
            read,
            pending_bytes: 0,
            pending_records: 0,
            _lock: lock,
            reserve: dir.join("reserve").metadata().is_ok_and(|m| m.len() == RESERVE_BYTES as u64),
            #[cfg(test)]
            faults: Faults::default(),
        };
        spool.recount().map_err(io("scan"))?;
        if let Err(e) = spool.keep_reserve() {
            tracing::warn!(spool = %d, error = %e, "spool: no room for its reserve; events are spooled again once the disk has room");
        }
        Ok(spool)
    }

    fn recount(&mut self) -> std::io::Result<()> {
        let (mut bytes, mut records) = (0, 0);
        for s in &self.segments {
            let mut f = File::open(segment_path(&self.dir, *s))?;
            if *s == self.read.0 {
                f.seek(SeekFrom::Start(self.read.1))?;
            }
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            bytes += buf.len() as u64;
            records += buf.iter().filter(|b| **b == b'\n').count() as u64;
        }
        self.pending_bytes = bytes;
        self.pending_records = records;
        Ok(())
    }

    fn err(&self, op: &str) -> impl FnOnce(std::io::Error) -> SpoolError + use<> {
        let (dir, op) = (self.dir.display().to_string(), op.to_string());
        move |source| SpoolError::Io { dir, op, source }
    }

    pub fn is_empty(&self) -> bool {
        self.pending_records == 0
    }

    /// Records waiting for replay.
    pub fn len(&self) -> u64 {
        self.pending_records
    }

    /// Bytes waiting for replay.
    pub fn bytes(&self) -> u64 {
        self.pending_bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Appends records (each one line, without the newline) and fsyncs them: all or
    /// none. `Full` when they do not fit; nothing is written then.
    pub fn push<R: AsRef<[u8]>>(&mut self, records: &[R]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        for r in records {
            let r = r.as_ref();
            if r.contains(&b'\n') {
                return Err(SpoolError::BadRecord { dir: self.dir.display().to_string() });
            }
            buf.extend_from_slice(r);
            buf.push(b'\n');
        }
        if self.pending_bytes + buf.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full { dir: self.dir.display().to_string(), used: self.pending_bytes, max: self.max_bytes });
        }
        // Never fill the disk past the reserve: the cursor writes that free it need it.
        self.keep_reserve()?;
        let seg = match self.segments.last() {
            Some(s) if std::fs::metadata(segment_path(&self.dir, *s)).map(|m| m.len()).unwrap_or(0) < SEGMENT_BYTES => *s,
            Some(s) => s + 1,
            None => self.read.0.max(1),
        };
        let path = segment_path(&self.dir, seg);
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(self.err("open segment"))?;
        let before = f.metadata().map_err(self.err("append"))?.len();
        if let Err(e) = self.append(&mut f, &buf) {
            // Roll the partial record back, or the next one would be glued onto it and
            // both lost as unreadable.
            if let Err(cut) = f.set_len(before).and_then(|_| f.sync_data()) {
                tracing::error!(segment = %path.display(), error = %cut, "spool: cannot roll back a failed append; the torn record is cut when the spool is next opened");
            }
            return Err(e);
        }
        if self.segments.last() != Some(&seg) {
            self.segments.push(seg);
            // A new file: its directory entry must be durable too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            if self.pending_records == 0 {
                self.read = (seg, 0);
            }
        }
        self.pending_bytes += buf.len() as u64;
        self.pending_records += records.len() as u64;
        Ok(())
    }

    fn append(&self, f: &mut File, buf: &[u8]) -> Result<(), SpoolError> {
        #[cfg(test)]
        if let Some(n) = self.faults.append_fails_after {
            f.write_all(&buf[..n.min(buf.len())]).map_err(self.err("append"))?;
            return Err(self.err("append")(std::io::Error::other("injected: no space left on device")));
        }
        f.write_all(buf).map_err(self.err("append"))?;
        #[cfg(test)]
        if self.faults.fsync_fails {
            return Err(self.err("fsync")(std::io::Error::other("injected: fsync failed")));
        }
        f.sync_data().map_err(self.err("fsync"))
    }

    /// Up to `max` of the oldest records, without consuming them; pass the returned
    /// position to `ack` once they are written elsewhere.
    pub fn peek(&self, max: usize) -> Result<(Vec<Vec<u8>>, SpoolPos), SpoolError> {
        let mut out = Vec::new();
        let (mut seg_idx, mut offset) = (self.segments.iter().position(|s| *s == self.read.0).unwrap_or(0), self.read.1);
        let mut pos = SpoolPos { at: self.read, records: 0, bytes: 0 };
        while out.len() < max && seg_idx < self.segments.len() {
            let seg = self.segments[seg_idx];
            let mut f = File::open(segment_path(&self.dir, seg)).map_err(self.err("read"))?;
            f.seek(SeekFrom::Start(offset)).map_err(self.err("seek"))?;
            let mut reader = BufReader::new(f);
            let mut line = Vec::new();
            while out.len() < max {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(self.err("read"))?;
                if n == 0 {
                    break; // this segment's end: the next one may follow
                }
                if line.last() != Some(&b'\n') {
                    if seg_idx + 1 == self.segments.len() {
                        // The newest segment's tail: not a whole record (yet).
                        return Ok((out, pos));
                    }
                    // Mid-spool torn record (the last of a crashed run, before a roll):
                    // unreadable, skipped past so it does not block what follows.
                    tracing::error!(segment = seg, offset, bytes = n, "spool: skipping a torn record");
                    offset += n as u64;
                    pos = SpoolPos { at: (seg, offset), records: pos.records, bytes: pos.bytes + n as u64 };
                    continue;
                }
                offset += n as u64;
                line.pop();
                out.push(line.clone());
                pos = SpoolPos { at: (seg, offset), records: pos.records + 1, bytes: pos.bytes + n as u64 };
            }
            if out.len() < max {
                // Read to its end: only now may an `ack` at the next one delete it.
                seg_idx += 1;
                offset = 0;
                if let Some(next) = self.segments.get(seg_idx) {
                    pos.at = (*next, 0);
                }
            }
        }
        Ok((out, pos))
    }

    /// Marks everything before `pos` (from `peek`) as replayed, durably.
    pub fn ack(&mut self, pos: SpoolPos) -> Result<(), SpoolError> {
        let (seg, offset) = pos.at;
        self.write_cursor(seg, offset)?;
        self.crash_point(AckStep::Cursor)?;
        let before: Vec<u64> = self.segments.iter().copied().filter(|s| *s < seg).collect();
        for s in before {
            std::fs::remove_file(segment_path(&self.dir, s)).map_err(self.err("remove segment"))?;
        }
        self.crash_point(AckStep::RemovedOlder)?;
        self.segments.retain(|s| *s >= seg);
        self.read = (seg, offset);
        // What `peek` read is exactly what leaves: no need to rescan the files.
        self.pending_records = self.pending_records.saturating_sub(pos.records);
        self.pending_bytes = self.pending_bytes.saturating_sub(pos.bytes);
        if self.pending_records == 0 {
            // Everything replayed: start over with empty files.
            for s in std::mem::take(&mut self.segments) {
                std::fs::remove_file(segment_path(&self.dir, s)).map_err(self.err("remove segment"))?;
            }
            self.crash_point(AckStep::RemovedAll)?;
            self.read = (seg + 1, 0);
            self.pending_bytes = 0;
            self.write_cursor(seg + 1, 0)?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn crash_point(&self, at: AckStep) -> Result<(), SpoolError> {
        if self.faults.crash_after == Some(at) { Err(SpoolError::Crash) } else { Ok(()) }
    }

    #[cfg(not(test))]
    fn crash_point(&self, _: AckStep) -> Result<(), SpoolError> {
        Ok(())
    }

    /// Creates `DIR/reserve` when it is missing (real blocks, not a sparse file).
    fn keep_reserve(&mut self) -> Result<(), SpoolError> {
        if self.reserve {
            return Ok(());
        }
        let path = self.dir.join("reserve");
        let made = File::create(&path).and_then(|mut f| {
            f.write_all(&[0u8; RESERVE_BYTES])?;
            f.sync_all()
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(self.err("keep the reserve (the disk is full)")(e));
        }
        self.reserve = true;
        Ok(())
    }

    /// Replaces `cursor` atomically and durably; on a full disk, with the reserve's room.
    fn write_cursor(&mut self, seg: u64, offset: u64) -> Result<(), SpoolError> {
        match self.try_write_cursor(seg, offset) {
            Err(e) if self.reserve => {
                let _ = std::fs::remove_file(self.dir.join("cursor.tmp"));
                std::fs::remove_file(self.dir.join("reserve")).map_err(self.err("remove the reserve"))?;
                self.reserve = false;
                tracing::warn!(spool = %self.dir.display(), error = %e, "spool: the disk is full; writing the cursor in the reserve's room (appends wait until it is back)");
                self.try_write_cursor(seg, offset)
            }
            other => other,
        }
    }

    fn try_write_cursor(&self, seg: u64, offset: u64) -> Result<(), SpoolError> {
        #[cfg(test)]
        if self.faults.cursor_needs_reserve && self.reserve {
            return Err(self.err("write cursor")(std::io::Error::other("injected: no space left on device")));
        }
        let tmp = self.dir.join("cursor.tmp");
        {
            let mut f = File::create(&tmp).map_err(self.err("write cursor"))?;
            write!(f, "{seg} {offset}").map_err(self.err("write cursor"))?;
            f.sync_all().map_err(self.err("fsync cursor"))?;
        }
        std::fs::rename(&tmp, self.dir.join("cursor")).map_err(self.err("replace cursor"))
    }
}

/// Where a `peek` stopped, and what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolPos {
    at: (u64, u64),
    records: u64,
    bytes: u64,
}

fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("{seg:012}.seg"))
}

fn parse_cursor(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Cuts a partial last line left by a crash mid-append.
fn truncate_torn_tail(path: &Path) -> std::io::Result<()> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let keep = data.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    if keep < data.len() {
        tracing::warn!(segment = %path.display(), torn_bytes = data.len() - keep, "spool: cutting a torn last record");
        OpenOptions::new().write(true).open(path)?.set_len(keep as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(r: std::ops::Range<u32>) -> Vec<String> {
        r.map(|i| format!("{{\"n\":{i}}}")).collect()
    }

    #[test]
    fn fifo_across_reopen_and_partial_acks() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(s.is_empty());
        s.push(&recs(0..5)).unwrap();
        s.push(&recs(5..8)).unwrap();
        let (got, pos) = s.peek(3).unwrap();
        assert_eq!(got, recs(0..3).into_iter().map(String::into_bytes).collect::<Vec<_>>());
        s.ack(pos).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s.bytes(), 5 * 8, "bytes follow the acks without a rescan");
        drop(s);
        // Reopened: the cursor survives, nothing is replayed twice.
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 5);
        let (got, pos) = s.peek(100).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], b"{\"n\":3}");
        s.ack(pos).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        // Usable again after draining, and from a fresh open.
        s.push(&recs(8..9)).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.peek(10).unwrap().0, vec![b"{\"n\":8}".to_vec()]);
    }

    #[test]
    fn full_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 30).unwrap();
        s.push(&recs(0..3)).unwrap(); // 3 × 8 bytes
        let e = s.push(&recs(3..4)).unwrap_err();
        assert!(matches!(e, SpoolError::Full { .. }), "{e}");
        assert!(e.to_string().contains("full"));
        assert_eq!(s.len(), 3);
        let (_, pos) = s.peek(1).unwrap();
        s.ack(pos).unwrap();
        s.push(&recs(3..4)).unwrap();
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(&recs(0..2)).unwrap();
        drop(s);
        let seg = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).find(|e| e.path().extension().is_some_and(|x| x == "seg")).unwrap();
        OpenOptions::new().append(true).open(seg.path()).unwrap().write_all(b"{\"n\":2").unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.peek(10).unwrap().0.len(), 2);
    }

    #[test]
    fn rolls_segments_and_removes_replayed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 << 20).unwrap();
        let big = vec!["x".repeat(1 << 20); 9]; // 9 MiB → two segments
        s.push(&big).unwrap();
        s.push(&big[..1]).unwrap();
        assert_eq!(s.segments.len(), 2);
        let (got, pos) = s.peek(9).unwrap();
        assert_eq!(got.len(), 9);
        s.ack(pos).unwrap();
        let (got, pos) = s.peek(9).unwrap();
        assert_eq!(got.len(), 1);
        s.ack(pos).unwrap();
        let left = std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg")).count();
        assert_eq!(left, 0);
    }

    #[test]
    fn records_with_newlines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(matches!(s.push(&["a\nb"]), Err(SpoolError::BadRecord { .. })));
        assert!(s.is_empty());
    }
    fn all(s: &Spool) -> Vec<String> {
        s.peek(1000).unwrap().0.into_iter().map(|r| String::from_utf8(r).unwrap()).collect()
    }

    #[test]
    fn a_failed_append_is_rolled_back_and_the_next_record_reads_whole() {
        for faults in [Faults { append_fails_after: Some(5), ..Faults::default() }, Faults { fsync_fails: true, ..Faults::default() }] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.push(&recs(0..2)).unwrap();
            s.faults = faults;
            assert!(matches!(s.push(&recs(2..4)), Err(SpoolError::Io { .. })));
            s.faults = Faults::default();
            assert_eq!(s.len(), 2, "{faults:?}: nothing of the failed push counts");
            s.push(&recs(4..5)).unwrap();
            let want: Vec<String> = recs(0..2).into_iter().chain(recs(4..5)).collect();
            assert_eq!(all(&s), want, "{faults:?}");
            drop(s);
            assert_eq!(all(&Spool::open(dir.path(), 1 << 20).unwrap()), want, "{faults:?}: after a reopen");
        }
    }

    #[test]
    fn a_full_disk_frees_the_reserve_for_the_cursor_and_appends_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(dir.path().join("reserve").metadata().unwrap().len() == RESERVE_BYTES as u64);
        s.push(&recs(0..10)).unwrap();
        s.faults.cursor_needs_reserve = true;
        let (got, pos) = s.peek(4).unwrap();
        assert_eq!(got.len(), 4);
        s.ack(pos).expect("the cursor is written in the reserve's room");
        assert!(!dir.path().join("reserve").exists());
        // The disk is still full: no append without the reserve back.
        let no_room = dir.path().join("reserve");
        std::fs::create_dir(&no_room).unwrap(); // makes creating the file fail
        assert!(matches!(s.push(&recs(10..11)), Err(SpoolError::Io { .. })));
        std::fs::remove_dir(&no_room).unwrap();
        s.push(&recs(10..11)).unwrap();
        assert!(s.reserve);
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all(&s), recs(4..11), "nothing lost or skipped across the full disk");
    }

    #[test]
    fn a_crash_at_each_step_of_ack_loses_and_skips_nothing() {
        for step in [AckStep::Cursor, AckStep::RemovedOlder, AckStep::RemovedAll] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.push(&recs(0..3)).unwrap();
            let (got, pos) = s.peek(3).unwrap();
            assert_eq!(got.len(), 3);
            s.faults.crash_after = Some(step);
            assert!(matches!(s.ack(pos), Err(SpoolError::Crash)), "{step:?}");
            drop(s); // the process died here
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            assert!(s.is_empty(), "{step:?}: what was acked before the crash is not pending again");
            s.push(&recs(3..6)).unwrap();
            assert_eq!(all(&s), recs(3..6), "{step:?}: the records after the crash, all of them");
            drop(s);
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(all(&s), recs(3..6), "{step:?}: and again after another restart");
        }
    }

    #[test]
    fn a_crash_while_removing_a_replayed_segment_keeps_the_next_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 << 20).unwrap();
        let big = vec!["x".repeat(1 << 20); 9];
        s.push(&big).unwrap();
        s.push(&recs(0..2)).unwrap(); // a second segment
        let (got, pos) = s.peek(10).unwrap();
        assert_eq!(got.len(), 10);
        s.faults.crash_after = Some(AckStep::RemovedOlder);
        assert!(matches!(s.ack(pos), Err(SpoolError::Crash)));
        drop(s);
        let mut s = Spool::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(all(&s), recs(1..2));
        s.push(&recs(2..3)).unwrap();
        assert_eq!(all(&s), recs(1..3));
    }

    #[test]
    fn a_torn_record_inside_the_spool_is_skipped_not_the_segment_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 << 20).unwrap();
        let big = vec!["x".repeat(1 << 20); 9];
        s.push(&big).unwrap();
        let first = segment_path(dir.path(), s.segments[0]);
        OpenOptions::new().append(true).open(&first).unwrap().write_all(b"{\"torn").unwrap();
        s.push(&recs(0..2)).unwrap(); // rolls to a second segment
        assert_eq!(s.segments.len(), 2);
        let (got, pos) = s.peek(100).unwrap();
        assert_eq!(got.len(), 11, "9 + the 2 after the torn record");
        assert_eq!(got[9], b"{\"n\":0}");
        s.ack(pos).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn a_peek_that_stops_at_a_segments_end_lets_ack_delete_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 << 20).unwrap();
        let big = vec!["x".repeat(1 << 20); 9];
        s.push(&big).unwrap();
        s.push(&recs(0..1)).unwrap();
        // Stops with the first segment read up to, not past, its end.
        let (got, pos) = s.peek(9).unwrap();
        assert_eq!(got.len(), 9);
        s.ack(pos).unwrap();
        assert_eq!(all(&s), recs(0..1), "the second segment is still there");
    }

    #[test]
    fn one_directory_serves_one_spool_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        let e = Spool::open(dir.path(), 1 << 20).err().expect("a second open is refused");
        assert!(matches!(e, SpoolError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("own spool_dir"), "{e}");
        drop(s);
        Spool::open(dir.path(), 1 << 20).expect("free again once the first is closed");
    }
}
