//! `braid`: start a node, or talk to one (topics, produce, consume).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = braid_node::cli::Cli::parse();
    match braid_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            if braid_node::process::json_logs() {
                // Still one JSON object per line for the log shipper.
                tracing::error!(error = %format!("{err:#}"), "braid stopped");
            } else {
                eprintln!("braid: {err:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
