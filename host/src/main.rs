//! The `acdlink` binary: parses the command line, sets up logging, and maps the outcome to
//! an exit code (0 success, 1 failure, 2 usage error).

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Records are many small allocations (identifiers, names, extras) made and freed at high
/// rates; mimalloc handles this churn far better than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = acdlink::cli::Cli::parse();
    // The service logs what it reads and uploads; one-shot commands only what went wrong.
    let service = matches!(cli.command, acdlink::cli::Command::Run { once: false });
    let default_level = match cli.verbose {
        0 if service => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only at a terminal: journald and log files get plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match acdlink::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
