//! `braid`: start a node, or talk to one (topics, produce, consume).

use clap::Parser;

/// Shards allocate and free requests, transactions and replies by the hundred thousand a second,
/// each on its own thread: mimalloc measured 5-25% faster than glibc's malloc on the pipelined
/// loads and holds less memory (docs/decisions/0007-allocator.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = braid_node::cli::Cli::parse();
    match braid_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("braid: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
