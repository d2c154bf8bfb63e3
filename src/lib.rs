//! The `fedostree` command line as a library: the clap definitions ([`args`]), what each command does
//! with them ([`commands`], and `ci_cmd` for `fedostree ci …`) and how results are written for people
//! (`render`). `main.rs` only sets up tracing and signals, parses, calls [`run`] and maps the outcome
//! to an exit code.

pub mod args;
mod ci_cmd;
mod commands;
mod render;

pub use args::Cli;
pub use commands::run;
