//! Process memory: the allocator's settings and what the kernel says we hold.
//!
//! glibc's malloc, left at its defaults, made Argus hold ~30 MB it no longer used on the
//! demo: one arena per thread that ever allocated (up to 8 per core), and a mmap
//! threshold that grows to 32 MB after the first large free, so every later frame buffer
//! (1.3 MB at 768x576) comes from an arena and stays there once freed. Frames are the
//! large, short-lived allocations of a video pipeline; they should go straight back to
//! the kernel.

/// Whether the operator tuned malloc through `GLIBC_TUNABLES` (then Argus leaves it be).
fn tuned_by_operator() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc"))
}

/// Sets malloc's arenas and thresholds for a pipeline of large, short-lived frame
/// buffers. Call first thing in `main`, before any thread starts. A `GLIBC_TUNABLES`
/// that sets malloc options wins (operators can still tune it without a rebuild).
///
/// Measured on the demo (peak RSS, end-to-end fps, alternating runs): glibc's defaults
/// 190 MB; two arenas 178 MB; two arenas and a fixed 1 MiB mmap threshold 160 MB at the
/// same speed. A 256 KiB threshold with a 1 MiB trim threshold reached 154 MB but cost
/// ~9 % of the frame rate: every frame then mapped, faulted in and unmapped its buffers
/// and the heap top was given back and grown again.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if tuned_by_operator() {
            return;
        }
        // SAFETY: mallopt only sets allocator parameters; it is called before any other
        // thread exists, and an unsupported parameter returns 0 and changes nothing.
        unsafe {
            // Two arenas: the stages hand buffers between threads anyway, and a few
            // contended locks cost less than a heap per thread.
            libc::mallopt(libc::M_ARENA_MAX, 2);
            // A fixed threshold (setting it turns the dynamic one off, which otherwise
            // rises to 32 MiB after the first large free): frames (1.3 MB at 768x576) are
            // their own mappings, unmapped when freed; smaller buffers reuse the heap.
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
            // Give the heap top back only when much of it is free (no shrink/grow churn).
            libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024 * 1024);
        }
    }
}

/// libtorch allocates every intermediate tensor with malloc, many of them above 1 MiB:
/// with the frame-pipeline threshold each would be mapped and faulted in per call
/// (NanoDet took 92 ms a call instead of 38). Called when the libtorch plugin is opened.
pub fn tune_allocator_for_libtorch() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if tuned_by_operator() {
            return;
        }
        // SAFETY: as above; mallopt may be called at any time and takes the allocator's lock.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024 * 1024);
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
