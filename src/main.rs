//! The `polyport` binary: parses the command line and hands over to [`polyport::cli`].

fn main() -> std::process::ExitCode {
    polyport::cli::main()
}
