//! The `distrisocks` binary: parse configuration, run a pod until SIGINT/SIGTERM.

// `--features system-alloc` swaps mimalloc for the C allocator so heap profilers that hook
// malloc (heaptrack, see perf/README.md) see every allocation.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = match distrisocks::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("distrisocks: {e}");
            std::process::exit(2);
        }
    };
    #[cfg(feature = "failpoints")]
    let _failpoints = distrisocks::failpoints::arm_from_env();
    let unknown = distrisocks::Config::unknown_env_variables();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DISTRISOCKS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    for var in unknown {
        tracing::warn!(
            var,
            "DISTRISOCKS_ variable not read by this pod (a typo?); see --help"
        );
    }
    let result = distrisocks::Shutdown::on_signals()
        .map_err(|e| e.to_string())
        .and_then(|s| distrisocks::run(config, s).map_err(|e| e.to_string()));
    if let Err(e) = result {
        eprintln!("distrisocks: {e}");
        std::process::exit(1);
    }
}
