//! The `mailguard` command line: see `mailguard --help`.

use clap::{Parser, Subcommand};
use mailguard::cli;
use std::process::ExitCode;

/// mailguard: the Cisco PIX/ASA Mailguard SMTP filter ("fixup protocol smtp",
/// "inspect esmtp") as a transparent bump in the wire, live or on captures.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay a capture through the filter: what would Mailguard do to it?
    Replay(cli::replay::Args),
    /// Run live between two interfaces (AF_PACKET or TAP).
    Bridge(cli::bridge::Args),
    /// Write synthetic SMTP captures (bundled examples, benchmark loads).
    Gen(cli::gen::Args),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Replay(args) => cli::replay::run(args),
        Command::Bridge(args) => cli::bridge::run(args),
        Command::Gen(args) => cli::gen::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailguard: error: {e}");
            ExitCode::from(e.code.max(1))
        }
    }
}
