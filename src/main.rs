fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = bramble::cli::main() {
        eprintln!("bramble: error: {e}");
        std::process::exit(1);
    }
}
