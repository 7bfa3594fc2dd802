//! `mailguard replay`: a capture in, the capture the box would have emitted out, and a report.

use super::CliError;

/// Options of this subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), CliError> {
    let _ = args;
    Err(CliError::new("not implemented yet"))
}
