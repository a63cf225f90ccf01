//! The `meridian` binary's allocator, and the one call that hands memory it has freed back to the system.
//!
//! Owns: the only unsafe code of Meridian (one foreign call). Must not depend on: any other Meridian crate.

/// The allocator, for `#[global_allocator]`. Why not the system's: the proxy allocates and frees per
/// request (pingora's headers and buffers) and glibc's malloc/free took about a tenth of its CPU in
/// `perf`; mimalloc's thread-local free lists make those cheap.
pub use mimalloc::MiMalloc as Allocator;

/// Returns the memory this thread freed, and every arena's free pages, to the system now. Called after a
/// GeoIP database is loaded. Why: loading a city database walks 100 MB and builds its indexes through
/// temporary tables several times their final size (a peak near 400 MB); mimalloc keeps freed pages for
/// reuse and purges them only on later frees, which a DNS server answering from reused buffers barely
/// makes: its resident memory stayed at the load's peak (440 MB against gdnsd's 130 MB, bench/RESULTS.md).
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` takes no pointer and only returns free memory of mimalloc's own; it is safe to
    // call from any thread at any time (mimalloc's documentation).
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
