fn main() -> std::process::ExitCode {
    distrisocks_chaos::main()
}
