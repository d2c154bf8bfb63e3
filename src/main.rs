//! The `fedostree` binary: parses arguments, sets up tracing, calls the library crates and maps
//! errors to the documented exit codes (`fedostree_util::Exit`).

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use fedostree_compose::{compose_tree, dbdiff};
use fedostree_devrepo as devrepo;
use fedostree_harness::qemu::Accel;
use fedostree_images::Backend;
use fedostree_util::state::{Sources, StateDir, ARCHES};
use fedostree_util::{Exit, InputError};
use std::path::PathBuf;
use std::process::ExitCode;

mod ci_cmd;

#[derive(Clone, Copy, ValueEnum)]
enum ArchArg {
    #[value(name = "x86_64")]
    X86_64,
    Aarch64,
    All,
}

/// `--arch`: one architecture, both for `all`, the host's by default.
fn arches(a: Option<ArchArg>) -> Vec<String> {
    match a {
        None => vec![fedostree_util::state::host_arch().to_string()],
        Some(ArchArg::X86_64) => vec!["x86_64".into()],
        Some(ArchArg::Aarch64) => vec!["aarch64".into()],
        Some(ArchArg::All) => ARCHES.iter().map(|s| s.to_string()).collect(),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelArg {
    Kvm,
    Tcg,
}

fn accel(a: AccelArg) -> Accel {
    match a {
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum BootArg {
    Direct,
    Firmware,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// qemu-storage-daemon FUSE export + loop device (root).
    Qsd,
    /// libguestfs guestmount.
    Guestfs,
}

/// `--backend`, or the best backend this machine allows.
fn backend(b: Option<BackendArg>) -> Backend {
    match b {
        Some(BackendArg::Qsd) => Backend::Qsd,
        Some(BackendArg::Guestfs) => Backend::Guestfs,
        None => fedostree_images::default_backend(),
    }
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
    /// Treefiles directory (default: trees/ of the checkout this binary sits in, or the current one).
    #[arg(long, global = true, env = "FEDOSTREE_TREES")]
    trees_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the offline dev rpm-md repository from Debian binaries and the project's packages.
    Devrepo {
        /// Architecture (default: the host's).
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
        /// Rebuild these packages with their release incremented (an "update" to compose).
        #[arg(long)]
        bump: Vec<String>,
        /// Also build the Debian repository ($STATE/devrepo/debian/<arch>/): the closure of
        /// devrepo/sets/*.yaml converted to RPMs, what base/minimal and server/docker-io compose from.
        #[arg(long)]
        debian: bool,
    },
    /// Compose a treefile into an OSTree commit on its ref in $STATE/repo.
    Compose {
        /// A tree name under trees/ (e.g. dev/minimal) or a path to a treefile.
        #[arg(long)]
        tree: String,
        /// Architecture (default: the host's).
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
        /// Print the resolved package set; commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Expand includes, variables and conditional includes and print the merged treefile as JSON
        /// (as `rpm-ostree compose tree --print-only`); reads no repository, commits nothing.
        #[arg(long, conflicts_with_all = ["dry_run", "force", "write_compose_json"])]
        print_only: bool,
        /// Commit even if the inputs are unchanged.
        #[arg(long)]
        force: bool,
        /// Write the compose result as JSON (an array when composing several arches).
        #[arg(long)]
        write_compose_json: Option<PathBuf>,
        /// Read a lockfile (JSON or YAML; repeatable, later ones win), after the
        /// manifest-lock.<basearch>.json and manifest-lock.overrides[.<basearch>].yaml beside the treefile.
        #[arg(long = "ex-lockfile", value_name = "FILE")]
        lockfiles: Vec<PathBuf>,
        /// Only allow locked packages.
        #[arg(long = "ex-lockfile-strict")]
        lockfile_strict: bool,
        /// Write the solved package set as a lockfile (one --arch).
        #[arg(long = "ex-write-lockfile-to", value_name = "FILE")]
        write_lockfile_to: Option<PathBuf>,
    },
    /// Compose, update the cached image, boot it, run the installed-tests, publish on pass.
    /// Exit 0: tested and published; 1: tests failed, nothing published; 2: infrastructure error.
    Test {
        /// A tree name under trees/ (e.g. dev/minimal) or a path to a treefile.
        #[arg(long)]
        tree: String,
        /// Architecture (default: the host's).
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
        /// Accelerator (default: KVM only when a probe VM proves it works).
        #[arg(long, value_enum)]
        accel: Option<AccelArg>,
        /// Image access (default: qsd as root, else guestfs).
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Emit the guest events as JSON lines on stdout instead of the terminal report.
        #[arg(long)]
        json: bool,
        /// Do not publish even when the tests pass.
        #[arg(long)]
        no_publish: bool,
        /// Whole-VM timeout in seconds.
        #[arg(long, default_value_t = 600)]
        vm_timeout: u64,
        /// GPG key (id or fingerprint) that signs published commits and the summary (default: the
        /// project's key, generated once into $STATE/keys).
        #[arg(long)]
        gpg_key: Option<String>,
        /// GnuPG home directory holding --gpg-key's secret key.
        #[arg(long, requires = "gpg_key")]
        gpg_homedir: Option<PathBuf>,
        /// Published commits kept per ref in the public repo; older ones are pruned with their deltas.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        retain: u64,
        /// No static delta from scratch for a ref's first published commit (xz-compressing a large
        /// tree takes minutes; deltas between commits are still made).
        #[arg(long)]
        no_scratch_delta: bool,
        /// How the VM boots: QEMU loads the deployment's kernel (direct, fastest), or U-Boot boots
        /// what the disk's ostree configuration says (firmware, as a real machine does).
        #[arg(long, value_enum, default_value_t = BootArg::Direct)]
        boot: BootArg,
        /// Run a multi-boot scenario instead of the tree's installed-tests: `lifecycle` (on
        /// base/minimal) upgrades, rolls back and switches trees from inside the VM over HTTP,
        /// rebooting through firmware, and publishes nothing.
        #[arg(long)]
        scenario: Option<String>,
        /// A CI worker: instead of composing, pull the candidate commit from a compose server's
        /// candidate repository (`fedostree serve --candidates`) at this URL, test it, publish nothing.
        #[arg(long, value_name = "URL", conflicts_with = "scenario")]
        from: Option<String>,
        /// With --from: the ref to pull (default: the tree's ref for the arch). With --add-rpm or
        /// --add-repo: the scratch ref to commit on (default: `<tree ref>-scratch/<first package>`).
        #[arg(long = "ref", value_name = "REF")]
        from_ref: Option<String>,
        /// The packager fast path: these RPM files (or directories of them) override the tree's
        /// packages, same names replaced whatever their version, new names added. The commit goes
        /// on a scratch ref, is tested in a throwaway copy of the tree's image, and is not published.
        #[arg(long = "add-rpm", value_name = "PATH", num_args = 1.., conflicts_with_all = ["from", "scenario"])]
        add_rpm: Vec<PathBuf>,
        /// Like --add-rpm, with an rpm-md repository (a directory or URL) of the build's packages.
        #[arg(long = "add-repo", value_name = "DIR|URL", conflicts_with_all = ["from", "scenario"])]
        add_repo: Vec<String>,
        /// Publish a passing scratch commit (--add-rpm/--add-repo) to the public repository under REF.
        #[arg(long, value_name = "REF")]
        publish_to: Option<String>,
    },
    /// Compose the tree and deploy its commit offline into the cached image, without booting;
    /// prints the image state and update statistics as JSON.
    Image {
        #[arg(long)]
        tree: String,
        /// Architecture (default: the host's).
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
        /// Image access (default: qsd as root, else guestfs).
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Serve the public repository ($STATE/public: signed commits, deltas, summary, fedostree.gpg)
    /// over HTTP.
    Serve {
        /// Address to listen on (port 0: any free port, printed on stderr).
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: std::net::SocketAddr,
        /// Serve the candidate repository ($STATE/repo: every compose, unsigned) for CI workers
        /// (`fedostree test --from URL`) instead of the public one.
        #[arg(long)]
        candidates: bool,
    },
    /// The CI service: test every tree whose inputs changed, keep the history (SQLite), write the
    /// status page.
    Ci {
        #[command(subcommand)]
        command: ci_cmd::CiCommand,
    },
    /// Find the first bad commit of a tree's history: binary search between a good and a bad commit,
    /// each step deployed into a throwaway copy of the cached image and booted. Exit 0: found;
    /// 2: skipped commits (or broken VMs) leave it open.
    Bisect {
        #[arg(long)]
        tree: String,
        /// Architecture (default: the host's).
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
        /// A commit (checksum) or ref known to be good.
        #[arg(long)]
        good: String,
        /// A commit (checksum) or ref known to be bad; the search runs along its parent chain.
        #[arg(long)]
        bad: String,
        /// An installed test (`suite/name`) that decides (repeatable; default: all of them).
        #[arg(long = "test", value_name = "NAME", conflicts_with = "script")]
        tests: Vec<String>,
        /// A program to run in the guest instead: exit 0 good, 125 skip this commit, else bad.
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Take the tree's history from this published repository (`fedostree serve`) instead of
        /// the candidate repository.
        #[arg(long, value_name = "URL")]
        repo: Option<String>,
        /// Accelerator (default: KVM only when a probe VM proves it works).
        #[arg(long, value_enum)]
        accel: Option<AccelArg>,
        /// Image access (default: qsd as root, else guestfs).
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Whole-VM timeout of each step in seconds.
        #[arg(long, default_value_t = 600)]
        vm_timeout: u64,
        /// The report as JSON on stdout.
        #[arg(long)]
        json: bool,
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

fn run(cli: Cli) -> Result<Exit> {
    let state = StateDir::new(&cli.state_dir);
    let sources = || Sources::discover(cli.trees_dir.clone()).map_err(InputError::new);
    match cli.command {
        Command::Devrepo { arch, bump, debian } => cmd_devrepo(&state, sources()?, arches(arch), bump, debian),
        Command::Compose {
            tree,
            arch,
            dry_run,
            print_only,
            force,
            write_compose_json,
            lockfiles,
            lockfile_strict,
            write_lockfile_to,
        } => {
            if print_only {
                let trees = sources()?.trees;
                return cmd_print_treefile(&tree, &trees, &arches(arch));
            }
            if write_lockfile_to.is_some() && arches(arch).len() > 1 {
                fedostree_util::bail_input!(
                    "--ex-write-lockfile-to writes one architecture's lockfile: give one --arch"
                );
            }
            let opts = |arch| compose_tree::ComposeOptions {
                tree: tree.clone(),
                arch,
                dry_run,
                force,
                lockfiles: lockfiles.clone(),
                lockfile_strict,
                write_lockfile_to: write_lockfile_to.clone(),
                overrides: None,
            };
            let sources = sources()?;
            let opts: Vec<_> = arches(arch).into_iter().map(opts).collect();
            cmd_compose(&state, &sources, &opts, write_compose_json)
        }
        Command::Test {
            tree,
            arch,
            accel,
            backend: b,
            json,
            no_publish,
            vm_timeout,
            gpg_key,
            gpg_homedir,
            retain,
            no_scratch_delta,
            boot,
            scenario,
            from,
            from_ref,
            add_rpm,
            add_repo,
            publish_to,
        } => {
            let scratch = !add_rpm.is_empty() || !add_repo.is_empty();
            if from_ref.is_some() && from.is_none() && !scratch {
                fedostree_util::bail_input!("--ref goes with --from, --add-rpm or --add-repo");
            }
            if publish_to.is_some() && !scratch {
                fedostree_util::bail_input!("--publish-to publishes a scratch build: give --add-rpm or --add-repo");
            }
            if from_ref.is_some() && arches(arch).len() > 1 {
                fedostree_util::bail_input!("--ref names one architecture's ref: give one --arch");
            }
            let opts = fedostree_ci::TestOptions {
                tree,
                sources: sources()?,
                arches: arches(arch),
                accel: accel.map(self::accel),
                backend: backend(b),
                // A worker reports; publishing is the compose server's, which holds the key. A scratch
                // build is published only where --publish-to says.
                publish: !no_publish && from.is_none() && !scratch,
                vm_timeout: std::time::Duration::from_secs(vm_timeout),
                run_id: fedostree_ci::pipeline::new_run_id(),
                signing: fedostree_ci::signing::SigningSpec {
                    key_id: gpg_key,
                    homedir: gpg_homedir,
                },
                retain: retain as usize,
                scratch_delta: !no_scratch_delta,
                boot: match boot {
                    BootArg::Direct => fedostree_harness::qemu::BootPath::DirectKernel,
                    BootArg::Firmware => fedostree_harness::qemu::BootPath::Firmware,
                },
                scenario,
                scratch: scratch.then(|| fedostree_ci::scratch::ScratchOptions {
                    rpms: add_rpm,
                    repos: add_repo,
                    ref_: from_ref.clone(),
                    publish_to: publish_to.filter(|_| !no_publish),
                }),
                from: from.map(|url| fedostree_ci::pipeline::Candidate { url, ref_: from_ref }),
            };
            cmd_test(&state, &opts, json)
        }
        Command::Image { tree, arch, backend: b } => cmd_image(&state, &sources()?, &tree, arches(arch), backend(b)),
        Command::Serve { addr, candidates } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let dir = if candidates { state.repo() } else { state.public() };
            rt.block_on(fedostree_ci::serve::serve(dir, addr))?;
            Ok(Exit::Ok)
        }
        Command::Ci { command } => ci_cmd::run(&state, sources, command),
        Command::Bisect {
            tree,
            arch,
            good,
            bad,
            tests,
            script,
            repo,
            accel: a,
            backend: b,
            vm_timeout,
            json,
        } => {
            let arch = match arches(arch).as_slice() {
                [one] => one.clone(),
                _ => fedostree_util::bail_input!("bisect runs on one architecture: give one --arch"),
            };
            let opts = fedostree_ci::bisect::BisectOptions {
                tree,
                arch,
                sources: sources()?,
                good,
                bad,
                tests,
                script,
                repo_url: repo,
                accel: a.map(accel),
                backend: backend(b),
                vm_timeout: std::time::Duration::from_secs(vm_timeout),
                run_id: fedostree_ci::pipeline::new_run_id(),
            };
            cmd_bisect(&state, &opts, json)
        }
        Command::Db {
            command: DbCommand::Diff { json, from, to },
        } => cmd_db_diff(&state, &from, &to, json),
    }
}

fn cmd_devrepo(
    state: &StateDir,
    sources: Sources,
    arches: Vec<String>,
    bump: Vec<String>,
    debian: bool,
) -> Result<Exit> {
    if debian {
        for a in &arches {
            devrepo::debian_repo::build(state, a, &sources.checkout)?;
        }
    }
    let opts = devrepo::DevRepoOptions {
        arches,
        bump,
        source_dir: sources.checkout,
    };
    devrepo::build(state, &opts)?;
    Ok(Exit::Ok)
}

/// Pretty JSON of one arch's result, or an array of them for several arches.
fn one_or_array<T: serde::Serialize>(items: &[T]) -> Result<String> {
    Ok(match items {
        [one] => serde_json::to_string_pretty(one)?,
        all => serde_json::to_string_pretty(all)?,
    })
}

/// The merged treefile of `tree` for each arch, as JSON: one object, or an array for several arches.
fn cmd_print_treefile(tree: &str, trees: &std::path::Path, arches: &[String]) -> Result<Exit> {
    use fedostree_compose::treefile;
    let (path, name) = treefile::locate(tree, trees).map_err(InputError::wrap)?;
    let mut merged = Vec::new();
    for arch in arches {
        let tf = treefile::Treefile::load(&path, &name, arch).map_err(InputError::wrap)?;
        merged.push(serde_json::to_value(&tf)?);
    }
    say(one_or_array(&merged)?)?;
    Ok(Exit::Ok)
}

fn cmd_compose(
    state: &StateDir,
    sources: &Sources,
    opts: &[compose_tree::ComposeOptions],
    write_compose_json: Option<PathBuf>,
) -> Result<Exit> {
    let mut results = Vec::new();
    for o in opts {
        devrepo::ensure_for_tree(state, sources, &o.tree, &o.arch)?;
        let r = compose_tree::compose(state, sources, o)?;
        if o.dry_run {
            say(format_args!("{} ({}): {} packages", r.ref_, r.arch, r.packages))?;
            for p in &r.package_list {
                say(format_args!("  {p}"))?;
            }
        } else {
            let what = if r.changed { "committed" } else { "unchanged" };
            say(format_args!(
                "{} {what} {} {}",
                r.ref_,
                r.commit.as_deref().unwrap_or("-"),
                r.version.as_deref().unwrap_or("")
            ))?;
        }
        results.push(r);
    }
    if let Some(path) = write_compose_json {
        fs_err::write(&path, one_or_array(&results)? + "\n")?;
    }
    Ok(Exit::Ok)
}

fn cmd_image(state: &StateDir, sources: &Sources, tree: &str, arches: Vec<String>, backend: Backend) -> Result<Exit> {
    for arch in arches {
        let (_, image, _) = fedostree_ci::pipeline::prepare(state, sources, tree, &arch, backend)?;
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
        say(serde_json::to_string_pretty(&report)?)?;
    }
    Ok(Exit::Ok)
}

fn cmd_db_diff(state: &StateDir, from: &str, to: &str, json: bool) -> Result<Exit> {
    let repo = fedostree_compose::commit::open_or_create_repo(&state.repo())?;
    let d = dbdiff::diff(&repo, from, to)?;
    if json {
        say(serde_json::to_string_pretty(&d)?)?;
    } else {
        say(d.render().trim_end_matches('\n'))?;
    }
    Ok(Exit::Ok)
}

fn cmd_bisect(state: &StateDir, opts: &fedostree_ci::bisect::BisectOptions, json: bool) -> Result<Exit> {
    use fedostree_harness::report::Reporter;
    // The steps' own test lines would drown the bisection's (they are in each step's artifacts): no
    // reporter, only the step lines.
    let mut none: Vec<Box<dyn Reporter + Send>> = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(fedostree_ci::bisect::bisect(state, opts, &mut none))?;
    if json {
        say(serde_json::to_string_pretty(&report)?)?;
    } else {
        say(report.render().trim_end())?;
    }
    Ok(match report.first_bad {
        Some(_) => Exit::Ok,
        None => Exit::Infra,
    })
}

fn cmd_test(state: &StateDir, opts: &fedostree_ci::TestOptions, json: bool) -> Result<Exit> {
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
        let boots = match r.timings.boots {
            0 | 1 => String::new(),
            n => format!(", {n} boots"),
        };
        eprintln!(
            "{} {}: {verdict} ({} boot{boots}); artifacts in {}",
            r.ref_,
            &r.commit[..12],
            r.timings.boot_path,
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
    let suites: Vec<_> = runs.iter().map(|r| r.suite.clone()).collect();
    Ok(fedostree_ci::pipeline::verdict(&suites))
}

/// A line on stdout. A reader that went away (`| head`) ends the output, not the command: Rust
/// ignores SIGPIPE, and `println!` would panic on the broken pipe.
fn say(line: impl std::fmt::Display) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
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
            return Exit::Failed.into();
        }
    };
    // Every command may create OS resources or scratch dirs: Ctrl-C must find the cleanup registry.
    fedostree_util::cleanup::install_signal_handler();
    match run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::of_error(&e).into()
        }
    }
}
