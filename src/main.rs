fn main() {
    few_malloc_arenas();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = bramble::cli::main() {
        eprintln!("bramble: error: {e}");
        std::process::exit(1);
    }
}

/// glibc gives each thread that allocates under contention an arena of its
/// own (up to 8 per core), and memory freed in one is not reused by the
/// others: with the API's connection threads that cost 8 MiB of RSS with
/// 2,000 pods stored. Two arenas keep the executor and the helpers' threads
/// apart and the daemon small. (musl has no arenas.)
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}
