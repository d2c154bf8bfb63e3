//! The boot stage: one VM on a throwaway overlay of the cached image, its guest events folded into a
//! suite.

use crate::run::GuestTimes;
use anyhow::{Context, Result};
use fedostree_harness::qemu::{Accel, BootPath, FwCfgValue, VmConfig};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{suite_from_outcome, Status, SuiteResult};
use fedostree_images::ImageState;
use fedostree_util::cancel::Cancel;
use fedostree_util::events::{Scope, Stage};
use fedostree_util::Arch;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a test VM is run: accelerator (None = probe), time limit, vCPUs, how it boots, what the host
/// hands the guest through fw_cfg.
#[derive(Debug, Clone)]
pub struct GuestSettings {
    pub accel: Option<Accel>,
    pub timeout: Duration,
    pub vcpus: u32,
    pub boot: BootPath,
    pub fw_cfg: Vec<(String, FwCfgValue)>,
    /// Tripped by SIGINT/SIGTERM: the VM is stopped and the boot returns `Cancelled`.
    pub cancel: Cancel,
}

/// Boot `image` once on a throwaway overlay in `run_dir` and fold the guest's events into a suite.
pub async fn boot_and_test(
    tree: &str,
    arch: Arch,
    image: &ImageState,
    run_dir: &Path,
    guest: GuestSettings,
    reporter: &mut (dyn Reporter + Send),
) -> Result<(SuiteResult, GuestTimes)> {
    fs_err::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let overlay = PinnedOverlay::create(image, run_dir)?;
    let accel = fedostree_harness::accel::choose_accel(arch, guest.accel).await;
    let cfg = vm_config(arch, accel, image, &overlay.path, run_dir, guest.clone());
    tracing::info!(tree, %arch, boot = %cfg.boot, "booting");
    let what = format!("booting {} ({}, {accel})", image.commit.short(), cfg.boot);
    let running = Scope::new(tree, arch).stage(Stage::Boot, what);
    let mut on_event = |e: &fedostree_harness::protocol::GuestEvent| reporter.event(tree, arch, e);
    let outcome = fedostree_harness::run::run_vm(&cfg, guest.timeout, &guest.cancel, &mut on_event).await;
    // The overlay and the pinned image links are throwaway; the logs stay.
    drop(overlay);
    let outcome = outcome?;
    let suite = suite_from_outcome(tree, arch, &image.commit, &outcome);
    fedostree_harness::junit::write_junit(std::slice::from_ref(&suite), &run_dir.join("junit.xml"))?;
    keep_journal_summary(&suite, run_dir)?;
    if outcome.boots.len() > 1 {
        fedostree_harness::junit::write_junit_per_boot(&suite, &run_dir.join("junit-boots.xml"))?;
    }
    running.finish(format!(
        "{} passed, {} failed, {} skipped{}",
        suite.count(Status::Pass),
        suite.count(Status::Fail) + suite.count(Status::Timeout) + suite.count(Status::Error),
        suite.count(Status::Skip),
        if suite.infra_error.is_some() {
            "; the boot broke"
        } else {
            ""
        }
    ));
    let times = GuestTimes {
        to_tests: outcome.time_to_tests,
        to_results: outcome.time_to_results,
        boots: outcome.boots.len(),
        boot_path: cfg.boot,
    };
    Ok((suite, times))
}

/// The base checks' summary of the journal's errors, kept as an artifact beside the console log.
fn keep_journal_summary(suite: &SuiteResult, run_dir: &Path) -> Result<()> {
    if let Some(c) = suite.cases.iter().find(|c| c.name == JOURNAL_CHECK) {
        fs_err::write(run_dir.join("journal-errors.txt"), &c.output)?;
    }
    Ok(())
}

/// The base check whose output is the journal's errors (tests-suite/guest/base-checks.sh).
pub const JOURNAL_CHECK: &str = "base/journal-errors";

/// The VM that boots `image` from `overlay`: the deployment's kernel and options, plus what the tests
/// compare against.
fn vm_config(
    arch: Arch,
    accel: Accel,
    image: &ImageState,
    overlay: &Path,
    run_dir: &Path,
    guest: GuestSettings,
) -> VmConfig {
    let cmdline = format!(
        "{} fedostree.commit={} fedostree.image_id={}",
        image.boot.options, image.commit, image.image_id
    );
    let mut cfg = VmConfig::new(
        arch,
        accel,
        image.boot.kernel.clone(),
        image.boot.initrd.clone(),
        cmdline,
        overlay.to_path_buf(),
        run_dir.to_path_buf(),
    );
    cfg.smp = guest.vcpus;
    cfg.boot = guest.boot;
    cfg.fw_cfg = guest.fw_cfg;
    // What the tests compare against, on either boot path (the firmware path boots the deployment's own
    // kernel arguments, so the ones above never reach the guest).
    cfg.fw_cfg
        .push(("commit".into(), FwCfgValue::Text(image.commit.to_string())));
    cfg.fw_cfg
        .push(("image_id".into(), FwCfgValue::Text(image.image_id.clone())));
    cfg
}

/// Owns a VM's overlay and the hardlinks that pin the image version it is backed by: removed when
/// dropped, and by the cleanup registry if a signal ends the process first.
struct PinnedOverlay {
    path: PathBuf,
    pinned: Vec<PathBuf>,
    cleanup: Option<fedostree_util::cleanup::CleanupHandle>,
}

impl PinnedOverlay {
    fn create(image: &ImageState, run_dir: &Path) -> Result<PinnedOverlay> {
        // The overlay's backing file is a hardlink to this exact image version: a concurrent update swaps
        // the cached image's directory but can never change what this VM boots.
        let base = run_dir.join("base.qcow2");
        let image_dir = image.disk.parent().context("image path has no directory")?;
        let pinned = fedostree_images::layout::pin(image_dir, run_dir, "base.qcow2")?;
        let path = run_dir.join("overlay.qcow2");
        let _ = fs_err::remove_file(&path);
        let (o, p) = (path.clone(), pinned.clone());
        let cleanup = fedostree_util::cleanup::register(format!("VM overlay {}", path.display()), move || {
            remove_all(std::iter::once(&o).chain(&p))
        });
        let me = PinnedOverlay {
            path,
            pinned,
            cleanup: Some(cleanup),
        };
        // The image lock was released when the update returned: make sure the version we pinned is still
        // the one whose kernel and options we are about to boot.
        let current = image.disk.parent().and_then(fedostree_images::layout::read_state);
        if current.as_ref().map(|s| s.commit.as_str()) != Some(&*image.commit) {
            anyhow::bail!("the cached image was updated concurrently while this run pinned it; run again");
        }
        fedostree_images::create_overlay(&base, &me.path)?;
        Ok(me)
    }
}

impl Drop for PinnedOverlay {
    fn drop(&mut self) {
        remove_all(std::iter::once(&self.path).chain(&self.pinned));
        if let Some(h) = self.cleanup.take() {
            fedostree_util::cleanup::deregister(h);
        }
    }
}

fn remove_all<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) {
    for f in paths {
        let _ = fs_err::remove_file(f);
    }
}

/// One reporter fed by VMs running concurrently: events are forwarded one at a time.
pub struct SharedReporter<'a>(pub std::sync::Mutex<&'a mut (dyn Reporter + Send)>);

impl Reporter for &SharedReporter<'_> {
    fn event(&mut self, tree: &str, arch: Arch, e: &fedostree_harness::protocol::GuestEvent) {
        self.0.lock().unwrap().event(tree, arch, e)
    }
    fn suite_done(&mut self, s: &SuiteResult) {
        self.0.lock().unwrap().suite_done(s)
    }
}
