//! The `fedostree` binary: sets up tracing and signals, parses arguments, calls the command line
//! library ([`fedostree::run`]) and decides the exit code (the documented ones in
//! `fedostree_util::Exit`, or 128+signal when SIGINT/SIGTERM ended the command).

use clap::Parser;
use fedostree::args::Command;
use fedostree_util::cancel::{cancelled_by, Cancel};
use fedostree_util::Exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FEDOSTREE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = match fedostree::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version exit 0; a usage error is bad input, exit 1 as documented.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return Exit::Failed.into();
        }
    };
    // SIGINT/SIGTERM trip the token of a command that boots VMs: it stops them and unwinds, and the
    // cleanup registry is the backstop for a second signal or an unwind that does not end. Commands
    // that never look at the token (compose, image, serve, …) take the registry's path at once.
    let cancel = Cancel::new();
    if matches!(cli.command, Command::Test(_) | Command::Ci { .. } | Command::Bisect(_)) {
        fedostree_util::cleanup::cancel_on_signal(&cancel);
    } else {
        fedostree_util::cleanup::install_signal_handler();
    }
    let result = fedostree::run(cli, &cancel);
    if let Some(signal) = cancel.signal() {
        if let Err(e) = &result {
            if cancelled_by(e).is_none() {
                eprintln!("error: {e:#}");
            }
        }
        eprintln!("fedostree: {}", fedostree_util::cancel::Cancelled { signal });
        return ExitCode::from(128 + signal as u8);
    }
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::of_error(&e).into()
        }
    }
}
