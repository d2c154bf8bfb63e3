//! `fedostree test`: for each architecture, compose the tree, deploy the commit offline into the
//! cached image, boot a throwaway overlay, run the installed-tests, and publish only on a pass.

use anyhow::{Context, Result};
use fedostree_compose::compose_tree::{self, ComposeOptions};
use fedostree_harness::qemu::{Accel, Arch, BootPath, FwCfgValue, VmConfig};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{suite_from_outcome, SuiteResult};
use fedostree_images::{Backend, ImageSpec, ImageState};
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::Exit;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The stateroot every image deploys into.
pub const OSNAME: &str = "fedostree";

#[derive(Debug, Clone)]
pub struct TestOptions {
    pub tree: String,
    /// Where the treefiles and the dev repository's sources are.
    pub sources: Sources,
    pub arches: Vec<String>,
    pub accel: Option<Accel>,
    pub backend: Backend,
    /// Move the public ref when the tests pass (off for nextest runs).
    pub publish: bool,
    /// Whole-VM deadline (the guest applies per-test timeouts itself).
    pub vm_timeout: Duration,
    pub run_id: String,
    /// The key that signs what is published (the project's own unless given).
    pub signing: crate::signing::SigningSpec,
    /// Published commits kept per ref in the public repo.
    pub retain: usize,
    /// Give a ref's first published commit a static delta from scratch (see `publish`).
    pub scratch_delta: bool,
    /// How single-boot runs boot (a scenario picks its own).
    pub boot: BootPath,
    /// A multi-boot scenario instead of the tree's installed-tests (see [`crate::lifecycle`]).
    pub scenario: Option<String>,
    /// Test a compose server's candidate instead of composing here (a CI worker).
    pub from: Option<Candidate>,
    /// A packager's RPMs override the tree's packages, on a scratch ref (`--add-rpm`).
    pub scratch: Option<crate::scratch::ScratchOptions>,
}

/// Where a worker's candidate comes from: a compose server's candidate repository and the ref in it
/// (by default the tree's own ref for the arch).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub url: String,
    pub ref_: Option<String>,
}

/// The ref `tree` commits to on `arch`, read from its treefile.
pub fn tree_ref(sources: &Sources, tree: &str, arch: &str) -> Result<String> {
    use fedostree_compose::treefile::{self, Treefile};
    let (path, name) = treefile::locate(tree, &sources.trees).map_err(fedostree_util::InputError::wrap)?;
    let tf = Treefile::load(&path, &name, arch).map_err(fedostree_util::InputError::wrap)?;
    Ok(tf.ref_)
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
    pub commit: String,
    pub run_dir: PathBuf,
    pub suite: SuiteResult,
    pub published: bool,
    pub image: ImageState,
    pub timings: Timings,
    /// A scratch run's package changes against the tree's commit (`db diff` rendering).
    pub package_diff: Option<String>,
}

/// One tree/arch composed (or pulled) and deployed, ready to boot.
struct Ready {
    tree: String,
    /// The ref the commit is on in the candidate repo.
    ref_: String,
    /// The public ref a pass publishes to, if any.
    publish_as: Option<String>,
    image: ImageState,
    timings: Timings,
    package_diff: Option<String>,
    /// A scratch run's image copy: removed once the boot is over.
    throwaway: Option<fedostree_images::throwaway::Throwaway>,
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
pub fn run_dir(state: &StateDir, run_id: &str, tree: &str, arch: &str) -> PathBuf {
    state.runs().join(run_id).join(tree).join(arch)
}

/// Run the whole loop for `opts.tree` on every arch in `opts.arches`.
pub async fn test_tree(
    state: &StateDir,
    opts: &TestOptions,
    reporter: &mut (dyn Reporter + Send),
) -> Result<Vec<TreeArchRun>> {
    match opts.scenario.as_deref() {
        None => {}
        Some(crate::lifecycle::SCENARIO) => return crate::lifecycle::run(state, opts, reporter).await,
        Some(other) => {
            fedostree_util::bail_input!("unknown scenario {other:?} (known: {})", crate::lifecycle::SCENARIO)
        }
    }
    let publish_to = opts.scratch.as_ref().and_then(|s| s.publish_to.clone());
    // A key that cannot sign fails the run before anything is composed.
    let key = match opts.publish || publish_to.is_some() {
        true => Some(crate::signing::SigningKey::resolve(state, &opts.signing)?),
        false => None,
    };
    // Composes and image updates want the disk and both cores: one arch at a time.
    let mut prepared = Vec::new();
    for arch in &opts.arches {
        let ready = match (&opts.from, &opts.scratch) {
            (None, None) => {
                let (composed, image, timings) = prepare(state, &opts.sources, &opts.tree, arch, opts.backend)?;
                Ready {
                    tree: composed.tree,
                    publish_as: opts.publish.then(|| composed.ref_.clone()),
                    ref_: composed.ref_,
                    image,
                    timings,
                    package_diff: None,
                    throwaway: None,
                }
            }
            (None, Some(sc)) => {
                let s = crate::scratch::prepare(state, &opts.sources, &opts.tree, arch, opts.backend, sc)?;
                let diff = s.diff.render();
                eprintln!(
                    "{} {}: package changes over the tree's {}:\n{diff}",
                    s.ref_,
                    &s.image.commit[..12],
                    &s.base[..12],
                );
                Ready {
                    tree: s.tree,
                    ref_: s.ref_,
                    publish_as: publish_to.clone(),
                    image: s.image,
                    timings: s.timings,
                    package_diff: Some(diff),
                    throwaway: Some(s.throwaway),
                }
            }
            (Some(from), _) => {
                let ref_ = match &from.ref_ {
                    Some(r) => r.clone(),
                    None => tree_ref(&opts.sources, &opts.tree, arch)?,
                };
                let mut timings = Timings::default();
                let t = Instant::now();
                let commit = pull_candidate(state, &from.url, &ref_)?;
                timings.compose_s = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let image = update_image(state, &opts.tree, arch, &commit, opts.backend)?;
                timings.image_s = t.elapsed().as_secs_f64();
                Ready {
                    tree: opts.tree.clone(),
                    ref_,
                    publish_as: None,
                    image,
                    timings,
                    package_diff: None,
                    throwaway: None,
                }
            }
        };
        prepared.push((arch.as_str(), ready));
    }
    // A TCG guest keeps one core busy: boot the arches side by side, the cores shared out.
    let guest = GuestSettings {
        accel: opts.accel,
        timeout: opts.vm_timeout,
        vcpus: fedostree_harness::qemu::vcpus_for(prepared.len()),
        boot: opts.boot,
        fw_cfg: Vec::new(),
    };
    let shared = SharedReporter(std::sync::Mutex::new(reporter));
    let boots = prepared.into_iter().map(|(arch, ready)| {
        let shared = &shared;
        let guest = guest.clone();
        async move {
            let dir = run_dir(state, &opts.run_id, &ready.tree, arch);
            let t = Instant::now();
            let booted = boot_and_test(&ready.tree, arch, &ready.image, &dir, guest, &mut &*shared).await;
            (arch, ready, dir, t.elapsed(), booted)
        }
    });
    let mut runs = Vec::new();
    for (arch, ready, dir, boot_time, booted) in futures_util::future::join_all(boots).await {
        let Ready {
            tree,
            ref_,
            publish_as,
            image,
            mut timings,
            package_diff,
            throwaway,
        } = ready;
        drop(throwaway);
        // A boot that broke is this tree/arch's infrastructure error; the other arch still reports.
        let (suite, guest_times) = booted.unwrap_or_else(|e| {
            let suite = SuiteResult {
                tree: tree.clone(),
                arch: arch.to_string(),
                commit: image.commit.clone(),
                cases: vec![],
                infra_error: Some(format!("{e:#}")),
                console_tail: fs_err::read_to_string(dir.join("console.log"))
                    .map(|c| fedostree_harness::console::tail(&c, 40))
                    .unwrap_or_default(),
            };
            (suite, GuestTimes::default())
        });
        timings.boot_s = boot_time.as_secs_f64();
        timings.record_guest(&guest_times);
        let published = gate(publish_as.is_some(), &suite);
        if let (Some(key), Some(public_ref)) = (key.as_ref().filter(|_| published), &publish_as) {
            let publish_opts = crate::publish::PublishOptions {
                key,
                retain: opts.retain,
                scratch_delta: opts.scratch_delta,
            };
            timings.publish_s = Some(publish_timed(state, &publish_opts, public_ref, &image.commit)?);
        }
        fs_err::write(dir.join("timings.json"), serde_json::to_string_pretty(&timings)? + "\n")?;
        if let Some(d) = &package_diff {
            fs_err::write(dir.join("package-diff.txt"), d)?;
        }
        (&shared).suite_done(&suite);
        runs.push(TreeArchRun {
            ref_,
            commit: image.commit.clone(),
            run_dir: dir,
            suite,
            published,
            image,
            timings,
            package_diff,
        });
    }
    let suites: Vec<SuiteResult> = runs.iter().map(|r| r.suite.clone()).collect();
    fedostree_harness::junit::write_junit(&suites, &state.runs().join(&opts.run_id).join("junit.xml"))?;
    Ok(runs)
}

/// Publish a commit that passed from the candidate repo to the public one; the seconds it took.
pub fn publish_timed(state: &StateDir, opts: &crate::publish::PublishOptions, ref_: &str, commit: &str) -> Result<f64> {
    let t = Instant::now();
    crate::publish::publish(&state.repo(), &state.public(), ref_, commit, opts)?;
    Ok(t.elapsed().as_secs_f64())
}

/// One reporter fed by VMs running concurrently: events are forwarded one at a time.
pub(crate) struct SharedReporter<'a>(pub(crate) std::sync::Mutex<&'a mut (dyn Reporter + Send)>);

impl Reporter for &SharedReporter<'_> {
    fn event(&mut self, tree: &str, arch: &str, e: &fedostree_harness::protocol::GuestEvent) {
        self.0.lock().unwrap().event(tree, arch, e)
    }
    fn suite_done(&mut self, s: &SuiteResult) {
        self.0.lock().unwrap().suite_done(s)
    }
}

fn harness_arch(arch: &str) -> Result<Arch> {
    arch.parse().map_err(anyhow::Error::msg)
}

/// Compose and deploy into the cached image (blocking work, serialized per state directory).
/// Compose `tree` for `arch` with default options, its dev repository made first; the result and the
/// commit it names.
pub fn compose(
    state: &StateDir,
    sources: &Sources,
    tree: &str,
    arch: &str,
) -> Result<(compose_tree::ComposeResult, String)> {
    fedostree_devrepo::ensure_for_tree(state, sources, tree, arch)?;
    let opts = ComposeOptions {
        tree: tree.into(),
        arch: arch.into(),
        ..ComposeOptions::default()
    };
    let composed = compose_tree::compose(state, sources, &opts)?;
    let commit = composed
        .commit
        .clone()
        .with_context(|| format!("{tree}: compose produced no commit"))?;
    Ok((composed, commit))
}

pub fn prepare(
    state: &StateDir,
    sources: &Sources,
    tree: &str,
    arch: &str,
    backend: Backend,
) -> Result<(compose_tree::ComposeResult, ImageState, Timings)> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let (composed, commit) = compose(state, sources, tree, arch)?;
    timings.compose_s = t.elapsed().as_secs_f64();
    if !composed.bootable {
        fedostree_util::bail_input!(
            "{tree}: the tree is not bootable (`container: true`): it composes ({commit}) but has no kernel to boot"
        );
    }
    let t = Instant::now();
    let image = update_image(state, &composed.tree, arch, &commit, backend)?;
    timings.image_s = t.elapsed().as_secs_f64();
    Ok((composed, image, timings))
}

/// Deploy `commit` (in the state's repo) into the cached image of `tree` on `arch`.
pub fn update_image(state: &StateDir, tree: &str, arch: &str, commit: &str, backend: Backend) -> Result<ImageState> {
    let harness_arch = harness_arch(arch)?;
    let spec = ImageSpec {
        tree: tree.into(),
        arch: arch.into(),
        repo: state.repo(),
        commit: commit.into(),
        osname: OSNAME.into(),
        kargs: vec![
            "root=LABEL=root".into(),
            "rw".into(),
            format!("console={}", harness_arch.console_tty()),
            "quiet".into(),
            "panic=-1".into(),
        ],
    };
    fedostree_images::update_image(state, &spec, backend).with_context(|| format!("updating the {tree} {arch} image"))
}

/// The remote a worker pulls candidates through (`fedostree test --from URL`).
const CANDIDATES_REMOTE: &str = "fedostree-candidates";

/// The `ostree` command line tool on `repo` (remotes and pulls, which the bindings do not wrap as simply).
pub(crate) fn ostree_cli(repo: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

/// `fedostree test --from URL`: pull `ref_` from a compose server's candidate repository (`fedostree
/// serve --candidates`) into this state's repo over HTTP, and name the commit. Candidates are not
/// signed (only what passes is, when it is published): a worker trusts the server it was pointed at.
pub fn pull_candidate(state: &StateDir, url: &str, ref_: &str) -> Result<String> {
    use fedostree_util::cmd::CommandRunExt;
    fedostree_compose::commit::open_or_create_repo(&state.repo())?;
    let ostree = || ostree_cli(&state.repo());
    ostree()
        .args(["remote", "add", "--force", "--no-gpg-verify", CANDIDATES_REMOTE, url])
        .run()
        .with_context(|| format!("adding {url} as the candidates' remote"))?;
    ostree()
        .args(["pull", CANDIDATES_REMOTE, ref_])
        .run()
        .map_err(|e| fedostree_util::InputError::new(format!("pulling {ref_} from {url}: {e:#}")))?;
    let commit = ostree()
        .args(["rev-parse", &format!("{CANDIDATES_REMOTE}:{ref_}")])
        .run_get_string()?;
    Ok(commit.trim().to_string())
}

/// Boot `image` once on a throwaway overlay in `run_dir` and fold the guest's events into a suite.
/// How a test VM is run: accelerator (None = probe), time limit, vCPUs, how it boots, what the host
/// hands the guest through fw_cfg.
#[derive(Debug, Clone)]
pub struct GuestSettings {
    pub accel: Option<Accel>,
    pub timeout: Duration,
    pub vcpus: u32,
    pub boot: BootPath,
    pub fw_cfg: Vec<(String, FwCfgValue)>,
}

pub async fn boot_and_test(
    tree: &str,
    arch: &str,
    image: &ImageState,
    run_dir: &Path,
    guest: GuestSettings,
    reporter: &mut (dyn Reporter + Send),
) -> Result<(SuiteResult, GuestTimes)> {
    fs_err::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    // The overlay's backing file is a hardlink to this exact image version: a concurrent update swaps
    // the cached image's directory but can never change what this VM boots.
    let base = run_dir.join("base.qcow2");
    let image_dir = image.disk.parent().context("image path has no directory")?;
    let pinned = fedostree_images::layout::pin(image_dir, run_dir, "base.qcow2")?;
    // The image lock was released when the update returned: make sure the version we pinned is still
    // the one whose kernel and options we are about to boot.
    let current = image.disk.parent().and_then(fedostree_images::layout::read_state);
    if current.as_ref().map(|s| s.commit.as_str()) != Some(image.commit.as_str()) {
        for f in &pinned {
            let _ = fs_err::remove_file(f);
        }
        anyhow::bail!("the cached image was updated concurrently while this run pinned it; run again");
    }
    let overlay = run_dir.join("overlay.qcow2");
    let _ = fs_err::remove_file(&overlay);
    // Ctrl-C while the VM runs must not leave a hardlinked image copy behind.
    let (o, p) = (overlay.clone(), pinned.clone());
    let cleanup = fedostree_util::cleanup::register(format!("VM overlay {}", overlay.display()), move || {
        let _ = fs_err::remove_file(&o);
        for f in &p {
            let _ = fs_err::remove_file(f);
        }
    });
    fedostree_images::create_overlay(&base, &overlay)?;
    let harness_arch = harness_arch(arch)?;
    let accel = fedostree_harness::accel::choose_accel(harness_arch, guest.accel).await;
    let cmdline = format!(
        "{} fedostree.commit={} fedostree.image_id={}",
        image.boot.options, image.commit, image.image_id
    );
    let mut cfg = VmConfig::new(
        harness_arch,
        accel,
        image.boot.kernel.clone(),
        image.boot.initrd.clone(),
        cmdline,
        overlay.clone(),
        run_dir.to_path_buf(),
    );
    cfg.smp = guest.vcpus;
    cfg.boot = guest.boot;
    cfg.fw_cfg = guest.fw_cfg;
    // What the tests compare against, on either boot path (the firmware path boots the deployment's own
    // kernel arguments, so the ones above never reach the guest).
    cfg.fw_cfg
        .push(("commit".into(), FwCfgValue::Text(image.commit.clone())));
    cfg.fw_cfg
        .push(("image_id".into(), FwCfgValue::Text(image.image_id.clone())));
    tracing::info!(tree, arch, boot = %cfg.boot, "booting");
    let mut on_event = |e: &fedostree_harness::protocol::GuestEvent| reporter.event(tree, arch, e);
    let outcome = fedostree_harness::run::run_vm(&cfg, guest.timeout, &mut on_event).await;
    // The overlay and the pinned image links are throwaway; the logs stay.
    let _ = fs_err::remove_file(&overlay);
    for f in &pinned {
        let _ = fs_err::remove_file(f);
    }
    fedostree_util::cleanup::deregister(cleanup);
    let outcome = outcome?;
    let suite = suite_from_outcome(tree, arch, &image.commit, &outcome);
    fedostree_harness::junit::write_junit(std::slice::from_ref(&suite), &run_dir.join("junit.xml"))?;
    if outcome.boots.len() > 1 {
        fedostree_harness::junit::write_junit_per_boot(&suite, &run_dir.join("junit-boots.xml"))?;
    }
    let times = GuestTimes {
        to_tests: outcome.time_to_tests,
        to_results: outcome.time_to_results,
        boots: outcome.boots.len(),
        boot_path: cfg.boot,
    };
    Ok((suite, times))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fedostree_harness::results::{Status, TestCaseResult};

    pub(crate) fn suite(arch: &str, statuses: &[Status], infra: Option<&str>) -> SuiteResult {
        SuiteResult {
            tree: "dev/minimal".into(),
            arch: arch.into(),
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
        let pass = suite("x86_64", &[Pass, Skip], None);
        let fail = suite("aarch64", &[Pass, Fail], None);
        let timeout = suite("aarch64", &[Timeout], None);
        let infra = suite("aarch64", &[Pass], Some("no end marker"));
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
        let pass = suite("x86_64", &[Pass], None);
        let fail = suite("aarch64", &[Fail], None);
        let infra = suite("aarch64", &[Pass], Some("badness"));
        assert!(gate(true, &pass));
        assert!(!gate(true, &fail));
        assert!(!gate(true, &infra));
        assert!(!gate(false, &pass), "--no-publish");
    }
}
