//! The `polyport` binary: parses the command line and hands over to [`polyport::cli`].

/// With the `mimalloc` feature, every allocation goes to mimalloc instead of the system's
/// malloc (see BENCHMARKS.md, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    polyport::cli::main()
}
