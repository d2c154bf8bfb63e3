//! The command line: clap definitions only. Options several commands share are declared once
//! ([`VmArgs`], [`PublishArgs`]) and flattened in; `--arch` is parsed straight into [`Arch`].

use anyhow::Result;
use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fedostree_harness::qemu::Accel;
use fedostree_images::Backend;
use fedostree_pipeline::run::Scenario;
use fedostree_pipeline::signing::SigningSpec;
use fedostree_util::Arch;
use std::path::PathBuf;
use std::time::Duration;

/// `--arch`: one architecture, or `all` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchArg {
    One(Arch),
    All,
}

impl ValueEnum for ArchArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[ArchArg::One(Arch::X86_64), ArchArg::One(Arch::Aarch64), ArchArg::All]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            ArchArg::One(a) => a.as_str(),
            ArchArg::All => "all",
        }))
    }
}

/// The architectures `--arch` names, or `default` when it was not given.
pub fn arches(a: Option<ArchArg>, default: &[Arch]) -> Vec<Arch> {
    match a {
        None => default.to_vec(),
        Some(ArchArg::One(a)) => vec![a],
        Some(ArchArg::All) => Arch::ALL.to_vec(),
    }
}

/// The architectures `--arch` names, or the host's when it was not given (single-tree commands): a
/// host fedostree does not build for needs `--arch`.
pub fn arches_or_host(a: Option<ArchArg>) -> Result<Vec<Arch>> {
    match (a, Arch::host()) {
        (Some(a), _) => Ok(arches(Some(a), &[])),
        (None, Some(host)) => Ok(vec![host]),
        (None, None) => fedostree_util::bail_input!(
            "this host ({}) is not an architecture fedostree builds for: give --arch",
            std::env::consts::ARCH
        ),
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AccelArg {
    Kvm,
    Tcg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BootArg {
    Direct,
    Firmware,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// qemu-storage-daemon FUSE export + loop device (root).
    Qsd,
    /// libguestfs guestmount.
    Guestfs,
}

/// `--backend`, or the best backend this machine allows.
pub fn backend(b: Option<BackendArg>) -> Backend {
    match b {
        Some(BackendArg::Qsd) => Backend::Qsd,
        Some(BackendArg::Guestfs) => Backend::Guestfs,
        None => fedostree_images::default_backend(),
    }
}

/// How test VMs run and how images are reached: `fedostree test`, `bisect`, `ci run` and `ci watch`.
#[derive(Args, Clone)]
pub struct VmArgs {
    /// Accelerator (default: KVM only when a probe VM proves it works).
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
    /// Image access (default: qsd as root, else guestfs).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Whole-VM timeout in seconds.
    #[arg(long, default_value_t = 600)]
    pub vm_timeout: u64,
}

impl VmArgs {
    pub fn accel(&self) -> Option<Accel> {
        self.accel.map(|a| match a {
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        })
    }

    pub fn backend(&self) -> Backend {
        backend(self.backend)
    }

    pub fn vm_timeout(&self) -> Duration {
        Duration::from_secs(self.vm_timeout)
    }
}

/// How a passing commit is published: `fedostree test`, `ci run` and `ci watch`.
#[derive(Args, Clone)]
pub struct PublishArgs {
    /// GPG key (id or fingerprint) that signs published commits and the summary (default: the
    /// project's key, generated once into $STATE/keys).
    #[arg(long)]
    pub gpg_key: Option<String>,
    /// GnuPG home directory holding --gpg-key's secret key.
    #[arg(long, requires = "gpg_key")]
    pub gpg_homedir: Option<PathBuf>,
    /// Published commits kept per ref in the public repo; older ones are pruned with their deltas.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub retain: u64,
    /// No static delta from scratch for a ref's first published commit (xz-compressing a large
    /// tree takes minutes; deltas between commits are still made).
    #[arg(long)]
    pub no_scratch_delta: bool,
    /// Do not publish even when the tests pass.
    #[arg(long)]
    pub no_publish: bool,
    /// Skip the upgrade gate: booting the tree's published commit and upgrading it to the candidate
    /// over HTTP (the report and the history say it was skipped).
    #[arg(long)]
    pub no_upgrade: bool,
}

impl PublishArgs {
    pub fn signing(&self) -> SigningSpec {
        SigningSpec {
            key_id: self.gpg_key.clone(),
            homedir: self.gpg_homedir.clone(),
        }
    }
}

#[derive(Parser)]
#[command(
    name = "fedostree",
    version,
    about = "Compose OSTree trees from RPMs and prove them in VMs"
)]
pub struct Cli {
    /// State directory (repo, caches, images, runs).
    #[arg(long, global = true, env = "FEDOSTREE_STATE_DIR", default_value = ".fedostree")]
    pub state_dir: PathBuf,
    /// Treefiles directory (default: trees/ of the checkout this binary sits in, or the current one).
    #[arg(long, global = true, env = "FEDOSTREE_TREES")]
    pub trees_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    Compose(ComposeArgs),
    /// Compose, update the cached image, boot it, run the installed-tests, publish on pass.
    /// Exit 0: tested and published; 1: tests failed, nothing published; 2: infrastructure error.
    Test(TestArgs),
    /// Compose the tree and deploy its commit offline into the cached image, without booting;
    /// prints the image state and update statistics as JSON.
    Image(ImageArgs),
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
        /// Connections served at once; more wait in the kernel's backlog until one ends.
        #[arg(long, default_value_t = fedostree_pipeline::serve::Limits::default().max_connections)]
        max_connections: usize,
        /// How long a client may take to send a request, stay idle on a kept-alive connection, or leave
        /// a response unread before its connection is closed (seconds, or 30s, 2m).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        client_timeout: std::time::Duration,
    },
    /// The CI service: test every tree whose inputs changed, keep the history (SQLite), write the
    /// status page.
    Ci {
        #[command(subcommand)]
        command: CiCommand,
    },
    /// Find the first bad commit of a tree's history: binary search between a good and a bad commit,
    /// each step deployed into a throwaway copy of the cached image and booted. Exit 0: found;
    /// 2: skipped commits (or broken VMs) leave it open.
    Bisect(BisectArgs),
    /// Package database queries on commits.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand)]
pub enum DbCommand {
    /// Packages added, removed, upgraded and downgraded between two refs or commits.
    Diff {
        #[arg(long)]
        json: bool,
        from: String,
        to: String,
    },
}

/// `--scenario NAME`: a name that is not a scenario is a usage error naming the known ones.
fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
}

#[derive(Args)]
pub struct ComposeArgs {
    /// A tree name under trees/ (e.g. dev/minimal) or a path to a treefile.
    #[arg(long)]
    pub tree: String,
    /// Architecture (default: the host's).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Print the resolved package set; commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Expand includes, variables and conditional includes and print the merged treefile as JSON
    /// (as `rpm-ostree compose tree --print-only`); reads no repository, commits nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "force", "write_compose_json"])]
    pub print_only: bool,
    /// Commit even if the inputs are unchanged.
    #[arg(long)]
    pub force: bool,
    /// Write the compose result as JSON (an array when composing several arches).
    #[arg(long)]
    pub write_compose_json: Option<PathBuf>,
    /// Read a lockfile (JSON or YAML; repeatable, later ones win), after the
    /// manifest-lock.<basearch>.json and manifest-lock.overrides[.<basearch>].yaml beside the treefile.
    #[arg(long = "ex-lockfile", value_name = "FILE")]
    pub lockfiles: Vec<PathBuf>,
    /// Only allow locked packages.
    #[arg(long = "ex-lockfile-strict")]
    pub lockfile_strict: bool,
    /// Write the solved package set as a lockfile (one --arch).
    #[arg(long = "ex-write-lockfile-to", value_name = "FILE")]
    pub write_lockfile_to: Option<PathBuf>,
}

#[derive(Args)]
pub struct TestArgs {
    /// A tree name under trees/ (e.g. dev/minimal) or a path to a treefile.
    #[arg(long)]
    pub tree: String,
    /// Architecture (default: the host's).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    #[command(flatten)]
    pub vm: VmArgs,
    #[command(flatten)]
    pub publishing: PublishArgs,
    /// Emit the guest events as JSON lines on stdout instead of the terminal report.
    #[arg(long)]
    pub json: bool,
    /// How the VM boots: QEMU loads the deployment's kernel (direct, fastest), or U-Boot boots
    /// what the disk's ostree configuration says (firmware, as a real machine does).
    #[arg(long, value_enum, default_value_t = BootArg::Direct)]
    pub boot: BootArg,
    /// Run a multi-boot scenario instead of the tree's installed-tests: `lifecycle` (on
    /// base/minimal) upgrades, rolls back and switches trees from inside the VM over HTTP,
    /// rebooting through firmware, and publishes nothing.
    #[arg(long, value_parser = parse_scenario)]
    pub scenario: Option<Scenario>,
    /// A CI worker: instead of composing, pull the candidate commit from a compose server's
    /// candidate repository (`fedostree serve --candidates`) at this URL, test it, publish nothing.
    #[arg(long, value_name = "URL", conflicts_with = "scenario")]
    pub from: Option<String>,
    /// With --from: the ref to pull (default: the tree's ref for the arch). With --add-rpm or
    /// --add-repo: the scratch ref to commit on (default: `<tree ref>-scratch/<first package>`).
    #[arg(long = "ref", value_name = "REF")]
    pub from_ref: Option<String>,
    /// The packager fast path: these RPM files (or directories of them) override the tree's
    /// packages, same names replaced whatever their version, new names added. The commit goes
    /// on a scratch ref, is tested in a throwaway copy of the tree's image, and is not published.
    #[arg(long = "add-rpm", value_name = "PATH", num_args = 1.., conflicts_with_all = ["from", "scenario"])]
    pub add_rpm: Vec<PathBuf>,
    /// Like --add-rpm, with an rpm-md repository (a directory or URL) of the build's packages.
    #[arg(long = "add-repo", value_name = "DIR|URL", conflicts_with_all = ["from", "scenario"])]
    pub add_repo: Vec<String>,
    /// Publish a passing scratch commit (--add-rpm/--add-repo) to the public repository under REF.
    #[arg(long, value_name = "REF")]
    pub publish_to: Option<String>,
}

#[derive(Args)]
pub struct BisectArgs {
    #[arg(long)]
    pub tree: String,
    /// Architecture (default: the host's).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// A commit (checksum) or ref known to be good.
    #[arg(long)]
    pub good: String,
    /// A commit (checksum) or ref known to be bad; the search runs along its parent chain.
    #[arg(long)]
    pub bad: String,
    /// An installed test (`suite/name`) that decides (repeatable; default: all of them).
    #[arg(long = "test", value_name = "NAME", conflicts_with = "script")]
    pub tests: Vec<String>,
    /// A program to run in the guest instead: exit 0 good, 125 skip this commit, else bad.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Take the tree's history from this published repository (`fedostree serve`) instead of
    /// the candidate repository.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub vm: VmArgs,
    /// The report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ImageArgs {
    #[arg(long)]
    pub tree: String,
    /// Architecture (default: the host's).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Image access (default: qsd as root, else guestfs).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
}

#[derive(Subcommand)]
pub enum CiCommand {
    /// One pass: every tree whose inputs changed since it was last tested is composed, booted,
    /// tested, gated and published; the others are reported up to date. Then the status page.
    /// Exit 0: every selected tree passes; 1: one fails; 2: infrastructure error.
    Run(PassArgs),
    /// `ci run` again and again, every --interval, until SIGINT or SIGTERM (which stop the VMs and
    /// publish nothing from the interrupted pass).
    Watch {
        #[command(flatten)]
        pass: PassArgs,
        /// Pause between passes: seconds, or with a unit (90s, 5m, 1h).
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        interval: Duration,
        /// Stop after this many passes (default: never).
        #[arg(long)]
        passes: Option<u64>,
    },
    /// Results, newest first.
    History {
        /// Only this tree.
        #[arg(long)]
        tree: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One run: its trees, their tests and attempts.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// The latest verdict of every tree and arch, and the disk the state uses.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Keep the newest N runs (artifacts, pages, history) and the candidate commits something needs.
    Prune {
        #[arg(long, default_value_t = 50)]
        keep: usize,
    },
    /// Write the status page again from the history (a finished run's page is written once).
    Page,
    /// A run's results as ResultsDB results, one JSON object a line (default: the newest run).
    Export {
        #[arg(long)]
        run: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FlakyArg {
    Pass,
    Fail,
}

#[derive(Args)]
pub struct PassArgs {
    /// Tree name glob (e.g. 'dev/*'); every tree under trees/ by default.
    #[arg(long)]
    pub trees: Option<String>,
    /// Architectures (default: both).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// VMs at once (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Reruns of a failed test, each in a fresh VM.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// A test that passed only on a rerun: the tree passes (and is published) or fails.
    #[arg(long, value_enum, default_value_t = FlakyArg::Pass)]
    pub flaky: FlakyArg,
    #[command(flatten)]
    pub vm: VmArgs,
    #[command(flatten)]
    pub publishing: PublishArgs,
    /// Runs kept after the pass (`ci prune --keep`).
    #[arg(long, default_value_t = 50)]
    pub keep: usize,
}

/// `90` (seconds) or what humantime reads: `90s`, `5m`, `1h 30m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (a number of seconds, or 90s, 5m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        // humantime reads what people write ("5 minutes", "1h 30m"); what is not a duration is refused.
        assert_eq!(parse_duration("5 minutes").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        let e = parse_duration("5 parsecs").unwrap_err();
        assert!(e.contains("5 parsecs"), "{e}");
        assert!(parse_duration("m").is_err());
    }
}
