//! Load generator for distriSocks pods: see the library docs (`distrisocks_bench`) and `--help`.

// The same allocator as the pod: the generator holds as many small buffers as the pod does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    distrisocks_bench::main()
}
