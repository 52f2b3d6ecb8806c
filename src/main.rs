//! `appliance`: parse the command line, hand it to the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    appliance::cli::main(appliance::cli::Cli::parse())
}
