//! The `planrt` binary.

fn main() -> std::process::ExitCode {
    planrt::cli::main()
}
