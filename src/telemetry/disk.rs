//! Free space where Argus writes. A spool is the last line of defence when a server
//! is down, and it fails the moment its disk is full; this watch raises the alarm
//! while there is still room: the free bytes per directory as a gauge, and below
//! `limits.min_free_disk_mb` a warning, `argus_disk_low_total` and a `/readyz` reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::health::Health;
use super::metrics::Metrics;

/// How often the directories are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Free bytes for unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points at writable memory the size
    // of `statvfs`, which the call fills on success (checked before reading it).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The directory to measure for a file or directory that may not exist yet: the
/// nearest existing ancestor.
fn existing_ancestor(p: &Path) -> PathBuf {
    let mut p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    loop {
        if p.exists() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => return PathBuf::from("."),
        }
    }
}

/// One check of every directory; `low` holds which are below the minimum (so the
/// alarm is counted when a directory falls below, not every check).
pub fn check(dirs: &[PathBuf], min_free: u64, low: &mut [bool], health: &Health, metrics: &Metrics) {
    for (i, dir) in dirs.iter().enumerate() {
        let label = dir.display().to_string();
        let free = match free_bytes(&existing_ancestor(dir)) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(dir = %label, error = %e, "cannot measure free space");
                continue;
            }
        };
        metrics.disk_free_bytes.with_label_values(&[&label]).set(i64::try_from(free).unwrap_or(i64::MAX));
        let is_low = free < min_free;
        if is_low && !low[i] {
            metrics.disk_low.with_label_values(&[&label]).inc();
            tracing::warn!(dir = %label, free_mib = free >> 20, min_mib = min_free >> 20, "disk space low: the spool and store fail when it is full");
        } else if !is_low && low[i] {
            tracing::info!(dir = %label, free_mib = free >> 20, "disk space back above the minimum");
        }
        low[i] = is_low;
        health.set_disk_low(
            &label,
            is_low.then(|| format!("disk low: {label} has {} MiB free, below limits.min_free_disk_mb = {} MiB", free >> 20, min_free >> 20)),
        );
    }
}

/// Watches `dirs` every [`CHECK_EVERY`] until `stop`.
pub fn spawn(
    dirs: Vec<PathBuf>,
    min_free_mb: u64,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut dirs = dirs;
    dirs.sort();
    dirs.dedup();
    std::thread::Builder::new().name("argus-disk".into()).spawn(move || {
        let mut low = vec![false; dirs.len()];
        while !stop.load(Ordering::Relaxed) {
            check(&dirs, min_free_mb << 20, &mut low, &health, &metrics);
            let mut slept = Duration::ZERO;
            while slept < CHECK_EVERY && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                slept += Duration::from_millis(200);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_measured_and_a_low_disk_is_an_alarm_once() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert!(free_bytes(Path::new("/no/such/dir")).is_err());
        assert_eq!(existing_ancestor(&dir.path().join("a/b/c.db")), dir.path());
        let (health, metrics) = (Health::default(), Metrics::new());
        let dirs = vec![dir.path().join("spool/kafka")];
        let mut low = vec![false];
        // A minimum above what is free: low, counted once over two checks.
        check(&dirs, u64::MAX, &mut low, &health, &metrics);
        check(&dirs, u64::MAX, &mut low, &health, &metrics);
        let label = dirs[0].display().to_string();
        assert_eq!(metrics.disk_low.with_label_values(&[&label]).get(), 1);
        let r = health.readiness();
        assert!(r.reasons.iter().any(|x| x.contains("disk low") && x.contains("limits.min_free_disk_mb")), "{:?}", r.reasons);
        assert!(metrics.disk_free_bytes.with_label_values(&[&label]).get() > 0);
        // Back above: the reason goes.
        check(&dirs, 1, &mut low, &health, &metrics);
        assert!(!health.readiness().reasons.iter().any(|x| x.contains("disk low")));
        assert_eq!(metrics.disk_low.with_label_values(&[&label]).get(), 1);
    }
}
