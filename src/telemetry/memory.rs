//! Process memory: the allocator's settings and what the kernel says we hold.
//!
//! glibc's malloc, left at its defaults, made Argus hold ~60 MB it no longer used on the
//! demo (355 → 293 MB peak when changed, same run): one arena per thread that ever
//! allocated (up to 8 per core), and a mmap threshold that grows to 32 MB after the
//! first large free, so every later frame buffer (1.3 MB at 768x576) comes from an arena
//! and stays there once freed. Frames are the large, short-lived allocations of a video
//! pipeline; they should go straight back to the kernel.

/// Sets malloc's arenas and thresholds for a pipeline of large, short-lived frame
/// buffers. Call first thing in `main`, before any thread starts. A `GLIBC_TUNABLES`
/// that sets malloc options wins (operators can still tune it without a rebuild).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc")) {
            return;
        }
        // SAFETY: mallopt only sets allocator parameters; it is called before any other
        // thread exists, and an unsupported parameter returns 0 and changes nothing.
        unsafe {
            // Two arenas: the stages hand buffers between threads anyway, and a few
            // contended locks cost less than a heap per thread.
            libc::mallopt(libc::M_ARENA_MAX, 2);
            // A fixed threshold (setting it turns the dynamic one off): anything from
            // 256 KiB up is its own mapping and is unmapped when freed.
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
            // Give freed memory at the top of the heap back once 1 MiB of it is free.
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
        }
    }
}

/// Resident and peak resident memory of this process, in bytes (`/proc/self/status`:
/// VmRSS, VmHWM). `None` where the kernel does not say.
pub fn resident_bytes() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_kernel() {
        let (rss, peak) = resident_bytes().expect("linux reports VmRSS and VmHWM");
        assert!(rss > 1024 * 1024, "a test process holds more than 1 MiB: {rss}");
        assert!(peak >= rss, "the peak {peak} is at least the current {rss}");
    }
}
