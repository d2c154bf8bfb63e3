//! The dev trees' installed-tests as a list of VM test cases (`<tree>::<arch>::<test>`), and the VM
//! results behind them. Listing reads treefiles and `tests-suite/installed-tests/` only: it composes
//! and boots nothing. Running composes, updates the image and boots once per tree/arch and test run;
//! every case of that tree/arch reads the same results.

use anyhow::{Context, Result};
use fedostree_compose::treefile::Treefile;
use fedostree_harness::report::Reporter;
use fedostree_harness::results::SuiteResult;
use fedostree_util::lock::FileLock;
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::Arch;
use std::path::{Path, PathBuf};

/// Installed-tests packages are named `fedostree-installed-tests[-SUFFIX]` and built from
/// `tests-suite/installed-tests/fedostree[-SUFFIX]/`.
const TESTS_PACKAGE: &str = "fedostree-installed-tests";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmTestCase {
    pub tree: String,
    pub arch: Arch,
    /// `suite/test`, as the in-guest runner names it.
    pub test: String,
    /// Tests of `*-broken` suites exist to fail: the case passes when the guest reports a failure.
    pub expect_fail: bool,
}

impl VmTestCase {
    pub fn name(&self) -> String {
        format!("{}::{}::{}", self.tree, self.arch, self.test)
    }
}

/// Every installed test of every dev tree (those under `trees/dev/` that set a `ref`) and arch.
pub fn list(source_dir: &Path) -> Result<Vec<VmTestCase>> {
    let trees_dir = source_dir.join("trees");
    let mut files: Vec<PathBuf> = fs_err::read_dir(trees_dir.join("dev"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let base_checks = base_checks(source_dir)?;
    let mut cases = Vec::new();
    for file in files {
        let text = fs_err::read_to_string(&file)?;
        if !text.lines().any(|l| l.starts_with("ref:")) {
            continue; // an include fragment, not a tree
        }
        let name = format!("dev/{}", file.file_stem().unwrap().to_string_lossy());
        for &arch in Arch::ALL {
            // The runner's base checks, after the tree's tests on every boot.
            cases.extend(base_checks.iter().map(|check| VmTestCase {
                tree: name.clone(),
                arch,
                test: format!("base/{check}"),
                expect_fail: false,
            }));
            let tf = Treefile::load(&file, &name, arch)?;
            for pkg in &tf.packages {
                let Some(suffix) = pkg.strip_prefix(TESTS_PACKAGE) else {
                    continue;
                };
                let suite = format!("fedostree{suffix}");
                let dir = source_dir.join("tests-suite/installed-tests").join(&suite);
                let mut tests: Vec<String> = fs_err::read_dir(&dir)
                    .with_context(|| format!("{}: package {pkg} has no {}", file.display(), dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "test"))
                    .map(|p| format!("{suite}/{}", p.file_stem().unwrap().to_string_lossy()))
                    .collect();
                tests.sort();
                cases.extend(tests.into_iter().map(|test| VmTestCase {
                    tree: name.clone(),
                    arch,
                    test,
                    expect_fail: suite.ends_with("-broken"),
                }));
            }
        }
    }
    Ok(cases)
}

/// The checks `tests-suite/guest/base-checks.sh --list` names.
fn base_checks(source_dir: &Path) -> Result<Vec<String>> {
    let script = source_dir.join("tests-suite/guest/base-checks.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .arg("--list")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(out.status.success(), "{} --list failed", script.display());
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Prints nothing: the test runner reports each case.
struct Quiet;
impl Reporter for Quiet {
    fn event(&mut self, _: &str, _: Arch, _: &fedostree_harness::protocol::GuestEvent) {}
    fn suite_done(&mut self, _: &SuiteResult) {}
}

/// The results of booting `tree` on `arch` in this test run: the first case to ask composes, updates
/// the image and boots; the others wait on a lock and read the saved suite. A run is one nextest
/// invocation (`NEXTEST_RUN_ID`) or one test process.
pub fn vm_results(state: &StateDir, tree: &str, arch: Arch) -> Result<SuiteResult> {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| match std::env::var("NEXTEST_RUN_ID") {
        Ok(id) => id.chars().take(8).collect(),
        // cargo test: one process is one run; the start time keeps a reused pid from matching.
        Err(_) => format!("{}-{}", std::process::id(), unix_nanos()),
    });
    let dir = state.runs().join("vm-tests").join(run).join(tree).join(arch);
    let _lock = FileLock::acquire(&dir.with_extension("lock"))?;
    let saved = dir.join("suite.json");
    if let Ok(text) = fs_err::read_to_string(&saved) {
        return Ok(serde_json::from_str(&text)?);
    }
    let sources = Sources::discover(None).map_err(anyhow::Error::msg)?;
    let loaded = fedostree_compose::loaded_tree::LoadedTree::load(&sources.trees, tree, &[arch])?;
    let backend = fedostree_images::default_backend();
    let (_, image, _) = fedostree_pipeline::stages::prepare(state, &sources, &loaded, arch, backend)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (suite, _) = rt.block_on(fedostree_pipeline::guest::boot_and_test(
        tree,
        arch,
        &image,
        &dir,
        fedostree_pipeline::guest::GuestSettings {
            accel: None,
            timeout: std::time::Duration::from_secs(600),
            // nextest boots other arches and trees beside this one.
            vcpus: fedostree_harness::qemu::DEFAULT_SMP,
            boot: fedostree_harness::qemu::BootPath::DirectKernel,
            fw_cfg: Vec::new(),
            cancel: fedostree_util::cancel::Cancel::new(),
        },
        &mut Quiet,
    ))?;
    fs_err::write(&saved, serde_json::to_string(&suite)?)?;
    Ok(suite)
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// Judge one case from its tree/arch suite; `Err` carries what a developer needs to see.
pub fn verdict(case: &VmTestCase, suite: &SuiteResult) -> Result<String, String> {
    if let Some(e) = &suite.infra_error {
        return Err(format!(
            "infrastructure error: {e}\n--- console tail ---\n{}",
            suite.console_tail
        ));
    }
    let Some(c) = suite.cases.iter().find(|c| c.name == case.test) else {
        return Err(format!(
            "the guest never ran {} (ran: {})",
            case.test,
            suite
                .cases
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    use fedostree_harness::results::Status;
    let ok = matches!(
        (case.expect_fail, c.status),
        (false, Status::Pass | Status::Skip) | (true, Status::Fail)
    );
    let summary = format!(
        "{} {} in {:?} (commit {})",
        case.name(),
        c.status.label(),
        c.duration,
        suite.commit
    );
    if ok {
        Ok(summary)
    } else {
        let want = if case.expect_fail { " (expected to fail)" } else { "" };
        Err(format!("{summary}{want}\n--- output ---\n{}", c.output))
    }
}
