//! Giving freed memory back to the system after sessions come and go.
//!
//! Under churn (sessions connecting, pipelining, disconnecting) the daemon's live heap stays at a
//! few MiB, but glibc's allocator keeps the pages of freed chunks that sit below live ones, and
//! the resident set creeps up phase after phase with nothing leaked (`cargo xtask race router`
//! measures it). `malloc_trim` returns those pages; the hub calls it on its once-a-second tick
//! when a session left since the last call, so a daemon that serves a steady set of sessions
//! never pays for it, and before answering a `status` request, whose memory figure should be
//! what the daemon needs rather than what the allocator kept.

/// Return the allocator's free pages to the system (glibc); elsewhere there is nothing to do.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes a size and only walks the allocator's own free lists, under
    // its own locks; it is documented as safe to call at any time.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
