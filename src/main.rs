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
#[command(
    name = "fedostree",
    version,
    about = "Compose OSTree trees from RPMs and prove them in VMs"
)]
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
    /// Compose, update the cached image, boot it, run the installed-tests, publish on pass.
    /// Exit 0: tested and published; 1: tests failed, nothing published; 2: infrastructure error.
    Test {
        /// A tree name under trees/ (e.g. dev/minimal) or a path to a treefile.
        #[arg(long)]
        tree: String,
        /// x86_64, aarch64 or all (default: the host's).
        #[arg(long)]
        arch: Option<String>,
        /// kvm or tcg (default: KVM only when a probe VM proves it works).
        #[arg(long)]
        accel: Option<String>,
        /// Image access: qsd (qemu-storage-daemon + loop, needs root) or guestfs (libguestfs).
        #[arg(long)]
        backend: Option<String>,
        /// Emit the guest events as JSON lines on stdout instead of the terminal report.
        #[arg(long)]
        json: bool,
        /// Do not publish even when the tests pass.
        #[arg(long)]
        no_publish: bool,
        /// Whole-VM timeout in seconds.
        #[arg(long, default_value_t = 600)]
        vm_timeout: u64,
    },
    /// Compose the tree and deploy its commit offline into the cached image, without booting;
    /// prints the image state and update statistics as JSON.
    Image {
        #[arg(long)]
        tree: String,
        /// x86_64 or aarch64 (default: the host's).
        #[arg(long)]
        arch: Option<String>,
        /// qsd (qemu-storage-daemon + loop, needs root) or guestfs (libguestfs).
        #[arg(long)]
        backend: Option<String>,
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
            let opts = devrepo::DevRepoOptions {
                arches,
                bump,
                source_dir: fedostree_compose::state::source_dir(),
            };
            devrepo::build(&state, &opts)?;
        }
        Command::Compose {
            tree,
            arch,
            dry_run,
            force,
            write_compose_json,
        } => {
            let mut results = Vec::new();
            for arch in compose_tree::arches(arch.as_deref())? {
                let opts = compose_tree::ComposeOptions {
                    tree: tree.clone(),
                    arch,
                    dry_run,
                    force,
                };
                let r = compose_tree::compose(&state, &opts)?;
                if dry_run {
                    println!("{} ({}): {} packages", r.ref_, r.arch, r.packages);
                    for p in &r.package_list {
                        println!("  {p}");
                    }
                } else {
                    let what = if r.changed { "committed" } else { "unchanged" };
                    println!(
                        "{} {what} {} {}",
                        r.ref_,
                        r.commit.as_deref().unwrap_or("-"),
                        r.version.as_deref().unwrap_or("")
                    );
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
        Command::Test {
            tree,
            arch,
            accel,
            backend,
            json,
            no_publish,
            vm_timeout,
        } => {
            let opts = fedostree_ci::TestOptions {
                tree,
                arches: compose_tree::arches(arch.as_deref())?,
                accel: accel
                    .map(|a| a.parse())
                    .transpose()
                    .map_err(fedostree_compose::InputError::new)?,
                backend: parse_backend(backend.as_deref())?,
                publish: !no_publish,
                vm_timeout: std::time::Duration::from_secs(vm_timeout),
                run_id: fedostree_ci::pipeline::new_run_id(),
            };
            return run_tests(&state, &opts, json);
        }
        Command::Image { tree, arch, backend } => {
            let backend = parse_backend(backend.as_deref())?;
            for arch in compose_tree::arches(arch.as_deref())? {
                let (_, image, _) = fedostree_ci::pipeline::prepare(&state, &tree, &arch, backend)?;
                let report = serde_json::json!({
                    "arch": arch,
                    "disk": image.disk,
                    "commit": image.commit,
                    "created": image.created,
                    "updated": image.updated,
                    "backend": image.backend.to_string(),
                    "boot-checksum": image.boot.boot_checksum,
                    "stats": image.stats,
                });
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
        Command::Db {
            command: DbCommand::Diff { json, from, to },
        } => {
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

/// `--backend`, or the best backend this machine allows.
fn parse_backend(arg: Option<&str>) -> Result<fedostree_images::Backend> {
    match arg {
        Some(b) => b.parse().map_err(fedostree_compose::InputError::wrap),
        None => Ok(fedostree_images::default_backend()),
    }
}

fn run_tests(state: &StateDir, opts: &fedostree_ci::TestOptions, json: bool) -> Result<u8> {
    use fedostree_harness::report::{JsonReporter, Reporter, TerminalReporter};
    let mut reporter: Box<dyn Reporter + Send> = if json {
        Box::new(JsonReporter::stdout())
    } else {
        Box::new(TerminalReporter::stderr())
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let runs = rt.block_on(fedostree_ci::test_tree(state, opts, reporter.as_mut()))?;
    reporter.finish();
    for r in &runs {
        let verdict = if r.published {
            "published"
        } else if r.suite.passed() {
            "passed (not published)"
        } else {
            "NOT published"
        };
        eprintln!(
            "{} {}: {verdict}; artifacts in {}",
            r.ref_,
            &r.commit[..12],
            r.run_dir.display()
        );
        if let Some(e) = &r.suite.infra_error {
            eprintln!(
                "infrastructure error: {e}\n--- console tail ---\n{}",
                r.suite.console_tail
            );
        }
    }
    eprintln!("run directory: {}", state.runs().join(&opts.run_id).display());
    Ok(fedostree_ci::ExitVerdict::of(&runs) as u8)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FEDOSTREE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version exit 0; a usage error is bad input, exit 1 as documented.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::INPUT);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = if fedostree_compose::is_input_error(&e) {
                exit::INPUT
            } else {
                exit::INFRA
            };
            ExitCode::from(code)
        }
    }
}
