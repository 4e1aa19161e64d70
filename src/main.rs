//! The `argus` command line: parse, dispatch (each subcommand lives in `cli/`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    argus::telemetry::memory::tune_allocator();
    let cli = cli::Cli::parse();
    match cli::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("argus: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
