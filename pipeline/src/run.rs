//! What a run of the pipeline is: its options ([`TestOptions`], with the [`CommitSource`] a commit comes
//! from), what it returns per tree and arch ([`TreeArchRun`], [`Timings`]), and the two decisions made
//! from suites: the exit code ([`verdict`]) and whether to publish ([`gate`]).

use crate::signing::SigningSpec;
use fedostree_harness::qemu::{Accel, BootPath};
use fedostree_harness::results::SuiteResult;
use fedostree_images::{Backend, ImageState};
use fedostree_util::cancel::Cancel;
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::{Arch, Checksum, Exit};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TestOptions {
    pub tree: String,
    /// Where the treefiles and the dev repository's sources are.
    pub sources: Sources,
    pub arches: Vec<Arch>,
    pub accel: Option<Accel>,
    pub backend: Backend,
    /// Move the public ref when the tests pass (off for nextest runs).
    pub publish: bool,
    /// Whole-VM deadline (the guest applies per-test timeouts itself).
    pub vm_timeout: Duration,
    pub run_id: String,
    /// The key that signs what is published (the project's own unless given).
    pub signing: SigningSpec,
    /// Published commits kept per ref in the public repo.
    pub retain: usize,
    /// Give a ref's first published commit a static delta from scratch (see `publish`).
    pub scratch_delta: bool,
    /// Run the upgrade gate (see [`crate::upgrade`]); off with `--no-upgrade`.
    pub upgrade: bool,
    /// How single-boot runs boot (a scenario picks its own).
    pub boot: BootPath,
    /// Where the commit under test comes from.
    pub source: CommitSource,
    /// Tripped by SIGINT/SIGTERM: VMs stop, nothing more is composed or published.
    pub cancel: Cancel,
}

/// Where the commit a run tests comes from. One of these per run, so the options cannot say two
/// contradictory things (a pulled candidate with a packager's RPMs, say).
#[derive(Debug, Clone, Default)]
pub enum CommitSource {
    /// Compose the tree here from its treefile and repositories.
    #[default]
    Compose,
    /// A compose server's candidate, pulled over HTTP (a CI worker, `--from URL`); never published here.
    Pulled(Candidate),
    /// A packager's RPMs over the tree, on a scratch ref (`--add-rpm`, `--add-repo`).
    Scratch(ScratchOptions),
    /// A multi-boot scenario that composes and publishes its own commits (`--scenario`).
    Scenario(Scenario),
}

/// The multi-boot scenarios (`fedostree test --scenario NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Upgrade, roll back and switch trees from inside the VM over HTTP (see [`crate::lifecycle`]).
    Lifecycle,
}

impl Scenario {
    /// How `--scenario` and the guest (fw_cfg `scenario`) name it.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Lifecycle => "lifecycle",
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lifecycle" => Ok(Scenario::Lifecycle),
            other => Err(format!(
                "unknown scenario {other:?} (known: {})",
                Scenario::Lifecycle.name()
            )),
        }
    }
}

/// What overrides the tree, where the result goes, and whether it is published.
#[derive(Debug, Clone, Default)]
pub struct ScratchOptions {
    /// RPM files or directories of them (`--add-rpm`).
    pub rpms: Vec<PathBuf>,
    /// rpm-md repositories, directories or URLs (`--add-repo`).
    pub repos: Vec<String>,
    /// The scratch ref (`--ref`); by default `<tree ref>-scratch/<first package's name>`.
    pub ref_: Option<String>,
    /// Publish a passing commit under this public ref (`--publish-to`).
    pub publish_to: Option<String>,
}

/// Where a worker's candidate comes from: a compose server's candidate repository and the ref in it
/// (by default the tree's own ref for the arch).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub url: String,
    pub ref_: Option<String>,
}

/// Seconds spent in each stage of one tree/arch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub compose_s: f64,
    pub image_s: f64,
    pub boot_s: f64,
    /// QEMU start → the guest's runner started the tests (kernel, initramfs, systemd up to
    /// multi-user.target): the boot's share of `qemu_to_results_s`.
    pub qemu_to_tests_s: Option<f64>,
    pub qemu_to_results_s: Option<f64>,
    /// Signing, static delta, pruning and summary of a passing commit.
    pub publish_s: Option<f64>,
    /// `direct-kernel` or `firmware`.
    pub boot_path: String,
    /// Boots of the one VM run (more than one when the guest rebooted).
    pub boots: usize,
    /// The upgrade gate: what it upgraded, or why it did not run.
    pub upgrade: String,
    /// The upgrade gate's publish, image copy and VM, side by side with the main boot.
    pub upgrade_s: Option<f64>,
}

impl Timings {
    /// The guest's share of a run: when its tests started and ended, how it booted, how many times.
    pub fn record_guest(&mut self, t: &GuestTimes) {
        self.qemu_to_tests_s = t.to_tests.map(|d| d.as_secs_f64());
        self.qemu_to_results_s = t.to_results.map(|d| d.as_secs_f64());
        self.boot_path = t.boot_path.to_string();
        self.boots = t.boots;
    }
}

/// When the guest's results began and ended, counted from QEMU's start.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestTimes {
    pub to_tests: Option<Duration>,
    pub to_results: Option<Duration>,
    pub boots: usize,
    pub boot_path: BootPath,
}

/// One tree on one architecture, start to verdict.
#[derive(Debug, Clone)]
pub struct TreeArchRun {
    pub ref_: String,
    pub commit: Checksum,
    pub run_dir: PathBuf,
    pub suite: SuiteResult,
    pub published: bool,
    pub image: ImageState,
    pub timings: Timings,
    /// A scratch run's package changes against the tree's commit (`db diff` rendering).
    pub package_diff: Option<String>,
}

/// The exit code of `fedostree test` from its suites: infrastructure broke anywhere → 2 (nothing can be
/// said about the tree), else a test failed anywhere → 1, else 0.
pub fn verdict(suites: &[SuiteResult]) -> Exit {
    if suites.iter().any(|s| s.infra_error.is_some()) {
        Exit::Infra
    } else if suites.iter().any(|s| !s.passed()) {
        Exit::Failed
    } else {
        Exit::Ok
    }
}

/// The gate: a tree/arch is published only when publishing was asked for and its own suite passed
/// (each architecture on its own: a failure on aarch64 does not hold back x86_64's ref).
pub fn gate(publish: bool, suite: &SuiteResult) -> bool {
    publish && suite.passed()
}

/// A fresh run id: sortable time plus pid, unique on this machine.
pub fn new_run_id() -> String {
    format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), std::process::id())
}

/// The directory of one tree/arch in a run.
pub fn run_dir(state: &StateDir, run_id: &str, tree: &str, arch: Arch) -> PathBuf {
    state.runs().join(run_id).join(tree).join(arch.as_str())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fedostree_harness::results::{Status, TestCaseResult};

    pub(crate) fn suite(arch: Arch, statuses: &[Status], infra: Option<&str>) -> SuiteResult {
        SuiteResult {
            tree: "dev/minimal".into(),
            arch,
            commit: "c0ffee".into(),
            cases: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| TestCaseResult {
                    name: format!("fedostree/t{i}"),
                    status: *s,
                    duration: Duration::from_millis(1),
                    output: String::new(),
                    exit_code: Some(0),
                    subtests: vec![],
                })
                .collect(),
            infra_error: infra.map(Into::into),
            console_tail: String::new(),
        }
    }

    #[test]
    fn verdict_from_suites() {
        use Status::*;
        let pass = suite(Arch::X86_64, &[Pass, Skip], None);
        let fail = suite(Arch::Aarch64, &[Pass, Fail], None);
        let timeout = suite(Arch::Aarch64, &[Timeout], None);
        let infra = suite(Arch::Aarch64, &[Pass], Some("no end marker"));
        assert_eq!(verdict(std::slice::from_ref(&pass)), Exit::Ok);
        assert_eq!(verdict(&[pass.clone(), fail.clone()]), Exit::Failed);
        assert_eq!(verdict(&[timeout]), Exit::Failed);
        // Infrastructure wins: nothing can be said about a tree whose VM broke.
        assert_eq!(verdict(&[fail, infra.clone()]), Exit::Infra);
        assert_eq!(verdict(&[infra, pass]), Exit::Infra);
    }

    #[test]
    fn the_gate_is_per_arch_and_obeys_no_publish() {
        use Status::*;
        let pass = suite(Arch::X86_64, &[Pass], None);
        let fail = suite(Arch::Aarch64, &[Fail], None);
        let infra = suite(Arch::Aarch64, &[Pass], Some("badness"));
        assert!(gate(true, &pass));
        assert!(!gate(true, &fail));
        assert!(!gate(true, &infra));
        assert!(!gate(false, &pass), "--no-publish");
    }
}
