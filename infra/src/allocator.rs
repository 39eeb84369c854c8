//! Process-wide settings of the C allocator, for gateways with little memory.

/// Blocks at least this large get pages of their own, given back to the system when freed
/// (glibc's initial value, held fixed).
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Holds glibc's mmap threshold at 128 KiB. By default it rises to the size of the largest
/// such block freed (up to 32 MiB); from then on large short-lived buffers (a decoded
/// 260 KB payload, a history batch) come from the per-thread heaps, which keep the pages
/// once they are freed. The host's resident memory under 1,000 forged 260 KB NDATA fell
/// from 128 to 63 MiB with it (debug build, `tests/tests/e2e_defences.rs`). An operator's
/// `MALLOC_MMAP_THRESHOLD_` in the environment wins. Call it first thing in `main`.
pub fn hold_mmap_threshold() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; glibc takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
