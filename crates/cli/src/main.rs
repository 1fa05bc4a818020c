//! The `strom` binary: the broker (`serve`), an offline log checker
//! (`verify`) and the everyday client commands, built on librdkafka so that
//! they work against any Kafka-compatible cluster.

mod bench;
mod client;
mod cluster;
mod consume;
mod group;
mod output;
mod produce;
mod raw;
mod schema_registry;
mod serve;
mod topic;
mod transaction;
mod verify;

use clap::{CommandFactory, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: strom_broker::alloc_guard::GuardedAllocator =
    strom_broker::alloc_guard::GuardedAllocator;

/// Strom: an event streaming platform that speaks the Kafka protocol.
///
/// Every Kafka client and tool works with it unchanged. One binary, no JVM,
/// no ZooKeeper, durable by default.
///
/// Examples:
///   strom serve                                  # a broker on 127.0.0.1:9092
///   strom topic create orders --partitions 6
///   echo 'k:v' | strom produce orders --key-separator :
///   strom consume orders --format json
///   strom group describe billing
///   strom transaction list --state Ongoing
///   strom cluster info --bootstrap kafka-1:9092  # works against any Kafka
#[derive(Parser)]
#[command(
    name = "strom",
    version,
    propagate_version = true,
    verbatim_doc_comment
)]
struct Cli {
    #[command(flatten)]
    client: client::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Verify(verify::VerifyArgs),
    Topic(topic::TopicArgs),
    Produce(produce::ProduceArgs),
    Consume(consume::ConsumeArgs),
    Group(group::GroupArgs),
    Cluster(cluster::ClusterArgs),
    Transaction(transaction::TransactionArgs),
    Bench(bench::BenchArgs),
    /// Print a shell completion script.
    ///
    /// Examples:
    ///   strom completions bash > /etc/bash_completion.d/strom
    ///   strom completions zsh > "${fpath[1]}/_strom"
    ///   strom completions fish > ~/.config/fish/completions/strom.fish
    #[command(verbatim_doc_comment)]
    Completions {
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let client = cli.client;
    let result = match cli.command {
        Command::Serve(args) => return exit(serve::run(args)),
        Command::Verify(args) => return exit(verify::run(args)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "strom", &mut std::io::stdout());
            Ok(())
        }
        Command::Topic(args) => topic::run(args, &client),
        Command::Produce(args) => produce::run(args, &client),
        Command::Consume(args) => consume::run(args, &client),
        Command::Group(args) => group::run(args, &client),
        Command::Cluster(args) => cluster::run(args, &client),
        Command::Transaction(args) => transaction::run(args, &client),
        Command::Bench(args) => bench::run(args, &client),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => error.exit(),
    }
}

fn exit(result: anyhow::Result<std::process::ExitCode>) -> std::process::ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks (unique flag names across global and
        // subcommand arguments, ...), which only debug builds run on use.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
