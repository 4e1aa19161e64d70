//! A bounded on-disk FIFO of records (one JSON event per line) for sinks whose server
//! is down: events are appended and fsync'd, so they are durable before the sink reports
//! them written, and replayed oldest first when the server returns.
//!
//! Layout: `DIR/NNNNNNNNNNNN.seg` segment files (newline-separated records, rolled at
//! `SEGMENT_BYTES`) plus `DIR/cursor` (`segment offset`, replaced atomically) that says
//! how far replay got. A crash between a replayed write and the cursor update replays
//! those records again, which is harmless: event ids are deterministic and every sink
//! upserts by id. A torn last line (crash mid-append) is cut off on open.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const SEGMENT_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {op}: {source}")]
    Io { dir: String, op: String, source: std::io::Error },
    #[error("spool {dir} is full ({used} of {max} bytes); events wait in memory until the server returns")]
    Full { dir: String, used: u64, max: u64 },
    #[error("spool {dir}: a record contains a newline")]
    BadRecord { dir: String },
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
        let mut spool = Self { dir: dir.to_path_buf(), max_bytes, segments, read, pending_bytes: 0, pending_records: 0 };
        spool.recount().map_err(io("scan"))?;
        if spool.segments.first().is_some_and(|s| *s > spool.read.0) {
            spool.read = (spool.segments[0], 0);
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
        let seg = match self.segments.last() {
            Some(s) if std::fs::metadata(segment_path(&self.dir, *s)).map(|m| m.len()).unwrap_or(0) < SEGMENT_BYTES => *s,
            Some(s) => s + 1,
            None => self.read.0.max(1),
        };
        let path = segment_path(&self.dir, seg);
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(self.err("open segment"))?;
        f.write_all(&buf).map_err(self.err("append"))?;
        f.sync_data().map_err(self.err("fsync"))?;
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
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                offset += n as u64;
                line.pop();
                out.push(line.clone());
                pos = SpoolPos { at: (seg, offset), records: pos.records + 1, bytes: pos.bytes + n as u64 };
            }
            if out.len() < max {
                seg_idx += 1;
                offset = 0;
            }
        }
        Ok((out, pos))
    }

    /// Marks everything before `pos` (from `peek`) as replayed, durably.
    pub fn ack(&mut self, pos: SpoolPos) -> Result<(), SpoolError> {
        let (seg, offset) = pos.at;
        self.write_cursor(seg, offset)?;
        let before: Vec<u64> = self.segments.iter().copied().filter(|s| *s < seg).collect();
        for s in before {
            std::fs::remove_file(segment_path(&self.dir, s)).map_err(self.err("remove segment"))?;
        }
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
            self.read = (seg + 1, 0);
            self.pending_bytes = 0;
            self.write_cursor(seg + 1, 0)?;
        }
        Ok(())
    }

    /// Replaces `cursor` atomically and durably.
    fn write_cursor(&self, seg: u64, offset: u64) -> Result<(), SpoolError> {
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
}
