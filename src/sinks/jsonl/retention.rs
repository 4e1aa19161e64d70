//! Rotation and retention of the JSON-lines file: pure file operations, no sink state.
//!
//! A rotated file is `NAME.YYYYMMDDTHHMMSSZ` (a `-N` suffix when two rotations fall in
//! one second), so names sort by age and a reader can `cat NAME.* NAME`. The rename is
//! atomic and the directory is fsync'd after it: a crash leaves either the old name or
//! the new one, never a lost file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Age pruning runs at most this often.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Policy {
    /// Rotate before the file would pass this; 0: never.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep_files: usize,
    /// Rotated files older than this are deleted.
    pub max_age: Option<Duration>,
}

/// Renames `path` to its rotated name for `now`; returns the new name.
pub fn rotate(path: &Path, now: time::OffsetDateTime) -> std::io::Result<PathBuf> {
    let stamp = format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", now.year(), u8::from(now.month()), now.day(), now.hour(), now.minute(), now.second());
    // Within the newest rotation's second, or after the wall clock stepped back (a name
    // for `now` would sort before older files and be pruned first): the newest stamp
    // with the next suffix.
    let (stamp, mut n) = match rotated(path)?.last().map(|p| rotation_key(p)) {
        Some((newest, k)) if newest >= stamp => (newest, k + 1),
        _ => (stamp, 0),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let to = loop {
        let to = path.with_file_name(if n == 0 { format!("{name}.{stamp}") } else { format!("{name}.{stamp}-{n}") });
        if !to.exists() {
            break to;
        }
        n += 1;
    };
    std::fs::rename(path, &to)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(to)
}

/// The rotated files of `path`, oldest first (by name, which is by rotation time).
pub fn rotated(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Ok(Vec::new()) };
    let prefix = format!("{name}.");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            // NAME.YYYYMMDDTHHMMSSZ[-N]: only what rotation made, never a user's file.
            n.strip_prefix(&prefix).is_some_and(|rest| rest.len() >= 16 && rest.as_bytes()[8] == b'T' && rest[..8].bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect();
    out.sort_by_key(|p| rotation_key(p));
    Ok(out)
}

/// (stamp, N) of `NAME.STAMP[-N]`, so `-10` sorts after `-9`.
fn rotation_key(p: &Path) -> (String, u64) {
    let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tail = n.rsplit_once('.').map_or("", |(_, t)| t);
    match tail.split_once('-') {
        Some((stamp, k)) => (stamp.to_string(), k.parse().unwrap_or(0)),
        None => (tail.to_string(), 0),
    }
}

/// Deletes rotated files beyond `keep_files` (oldest first) and those last modified
/// more than `max_age` before `now`; returns how many were deleted.
pub fn prune(path: &Path, policy: &Policy, now: SystemTime) -> std::io::Result<u64> {
    let files = rotated(path)?;
    let excess = files.len().saturating_sub(policy.keep_files);
    let mut deleted = 0;
    for (i, f) in files.iter().enumerate() {
        let too_old =
            policy.max_age.is_some_and(|age| std::fs::metadata(f).and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d > age)));
        if i < excess || too_old {
            std::fs::remove_file(f)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_after_the_clock_stepped_back_still_sorts_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let at = |s: i64| time::OffsetDateTime::from_unix_timestamp(1_764_000_000 + s).unwrap();
        let mut made = Vec::new();
        for s in [100, 100, -3600, 50] {
            std::fs::write(&path, format!("{s}\n")).unwrap();
            made.push(rotate(&path, at(s)).unwrap());
        }
        assert_eq!(rotated(&path).unwrap(), made, "in rotation order whatever the clock said");
        assert!(made[3].to_string_lossy().ends_with("-3"), "{:?}", made[3]);
    }

    #[test]
    fn rotated_files_are_named_in_order_and_pruned_by_count_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let t0 = time::OffsetDateTime::from_unix_timestamp(1_796_292_000).unwrap(); // 2026-12-03 10:00:00 UTC
        let mut names = Vec::new();
        for i in 0..12 {
            std::fs::write(&path, format!("{i}\n")).unwrap();
            // Twelve rotations inside one second: suffixes -1 … -11.
            names.push(rotate(&path, t0).unwrap());
        }
        assert!(!path.exists());
        assert_eq!(names[0].file_name().unwrap(), "events.jsonl.20261203T100000Z");
        assert_eq!(names[11].file_name().unwrap(), "events.jsonl.20261203T100000Z-11");
        // A user's file beside it is never touched.
        std::fs::write(dir.path().join("events.jsonl.bak"), "mine").unwrap();
        assert_eq!(rotated(&path).unwrap(), names);
        let keep = Policy { max_bytes: 1, keep_files: 4, max_age: None };
        assert_eq!(prune(&path, &keep, SystemTime::now()).unwrap(), 8);
        let left = rotated(&path).unwrap();
        assert_eq!(left, names[8..].to_vec(), "the newest four stay");
        assert_eq!(std::fs::read_to_string(&left[0]).unwrap(), "8\n");
        // By age: a day later every one is older than an hour.
        let aged = Policy { max_bytes: 1, keep_files: 100, max_age: Some(Duration::from_secs(3600)) };
        assert_eq!(prune(&path, &aged, SystemTime::now()).unwrap(), 0);
        assert_eq!(prune(&path, &aged, SystemTime::now() + Duration::from_secs(86_400)).unwrap(), 4);
        assert!(dir.path().join("events.jsonl.bak").exists());
    }
}
