//! `mailguard bridge`: the live bump in the wire between two interfaces.

use super::CliError;

/// Options of this subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<(), CliError> {
    let _ = args;
    Err(CliError::new("not implemented yet"))
}
