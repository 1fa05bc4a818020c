//! The `strom` binary.

mod serve;
mod verify;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: strom_broker::alloc_guard::GuardedAllocator =
    strom_broker::alloc_guard::GuardedAllocator;

/// Strom: an event streaming platform that speaks the Kafka protocol.
///
/// Every Kafka client and tool works with it unchanged. One binary, no JVM,
/// no ZooKeeper, durable by default.
#[derive(Parser)]
#[command(name = "strom", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Verify(verify::VerifyArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("strom: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
