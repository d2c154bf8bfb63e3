//! The `fedostree` binary: parses arguments, sets up tracing, calls the library crates and maps
//! errors to documented exit codes.

use anyhow::Result;
use clap::{Parser, Subcommand};
use fedostree_compose::{compose_tree, dbdiff, devrepo, state::StateDir};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, documented in README.md.
mod exit {
    pub const OK: u8 = 0;
    /// Bad input: treefile, repository, package set, arguments; or tests failed.
    pub const INPUT: u8 = 1;
    /// The machine failed: I/O, network, libostree, QEMU.
    pub const INFRA: u8 = 2;
}

#[derive(Parser)]
#[command(name = "fedostree", version, about = "Compose OSTree trees from RPMs and prove them in VMs")]
struct Cli {
    /// State directory (repo, caches, images, runs).
    #[arg(long, global = true, env = "FEDOSTREE_STATE_DIR", default_value = ".fedostree")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the offline dev rpm-md repository from Debian binaries and the project's packages.
    Devrepo {
        /// x86_64, aarch64 or all (default: the host's).
        #[arg(long)]
        arch: Option<String>,
        /// Rebuild these packages with their release incremented (an "update" to compose).
        #[arg(long)]
        bump: Vec<String>,
    },
    /// Compose a treefile into an OSTree commit on its ref in $STATE/repo.
    Compose {
        /// A tree name under trees/ (e.g. dev/minimal) or a path to a treefile.
        #[arg(long)]
        tree: String,
        /// x86_64, aarch64 or all (default: the host's).
        #[arg(long)]
        arch: Option<String>,
        /// Print the resolved package set; commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Commit even if the inputs are unchanged.
        #[arg(long)]
        force: bool,
        /// Write the compose result as JSON (an array when composing several arches).
        #[arg(long)]
        write_compose_json: Option<PathBuf>,
    },
    /// Package database queries on commits.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Packages added, removed, upgraded and downgraded between two refs or commits.
    Diff {
        #[arg(long)]
        json: bool,
        from: String,
        to: String,
    },
}

fn run(cli: Cli) -> Result<u8> {
    let state = StateDir::new(&cli.state_dir);
    match cli.command {
        Command::Devrepo { arch, bump } => {
            let arches = compose_tree::arches(arch.as_deref())?;
            let opts = devrepo::DevRepoOptions { arches, bump, source_dir: fedostree_compose::state::source_dir() };
            devrepo::build(&state, &opts)?;
        }
        Command::Compose { tree, arch, dry_run, force, write_compose_json } => {
            let mut results = Vec::new();
            for arch in compose_tree::arches(arch.as_deref())? {
                let opts = compose_tree::ComposeOptions { tree: tree.clone(), arch, dry_run, force };
                let r = compose_tree::compose(&state, &opts)?;
                if dry_run {
                    println!("{} ({}): {} packages", r.ref_, r.arch, r.packages);
                    for p in &r.package_list {
                        println!("  {p}");
                    }
                } else {
                    let what = if r.changed { "committed" } else { "unchanged" };
                    println!("{} {what} {} {}", r.ref_, r.commit.as_deref().unwrap_or("-"), r.version.as_deref().unwrap_or(""));
                }
                results.push(r);
            }
            if let Some(path) = write_compose_json {
                let json = if results.len() == 1 {
                    serde_json::to_string_pretty(&results[0])?
                } else {
                    serde_json::to_string_pretty(&results)?
                };
                std::fs::write(&path, json + "\n")?;
            }
        }
        Command::Db { command: DbCommand::Diff { json, from, to } } => {
            let repo = fedostree_compose::commit::open_or_create_repo(&state.repo())?;
            let d = dbdiff::diff(&repo, &from, &to)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", d.render());
            }
        }
    }
    Ok(exit::OK)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FEDOSTREE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = if fedostree_compose::is_input_error(&e) { exit::INPUT } else { exit::INFRA };
            ExitCode::from(code)
        }
    }
}
