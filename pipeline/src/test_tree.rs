//! `fedostree test`: for each architecture, get the commit from its source, deploy it offline into the
//! cached image, boot a throwaway overlay, run the installed-tests, and publish only on a pass.

use crate::guest::{boot_and_test, GuestSettings, SharedReporter};
use crate::publish::PublishOptions;
use crate::run::Candidate;
use crate::run::{gate, run_dir, CommitSource, GuestTimes, Scenario, TestOptions, Timings, TreeArchRun};
use crate::signing::SigningKey;
use crate::stages::{prepare, publish_timed, pull_candidate, update_image};
use crate::upgrade::{GateInputs, GateOutcome, Plan};
use anyhow::{Context, Result};
use fedostree_compose::loaded_tree::LoadedTree;
use fedostree_harness::report::Reporter;
use fedostree_harness::results::SuiteResult;
use fedostree_images::ImageState;
use fedostree_util::events::Scope;
use fedostree_util::state::StateDir;
use fedostree_util::Arch;
use std::path::Path;
use std::time::{Duration, Instant};

/// One tree/arch composed (or pulled) and deployed, ready to boot.
struct Ready {
    arch: Arch,
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

/// Run the whole loop for `opts.tree` on every arch in `opts.arches`.
pub async fn test_tree(
    state: &StateDir,
    opts: &TestOptions,
    reporter: &mut (dyn Reporter + Send),
) -> Result<Vec<TreeArchRun>> {
    if let CommitSource::Scenario(Scenario::Lifecycle) = opts.source {
        return crate::lifecycle::run(state, opts, reporter).await;
    }
    // The run's JUnit carries each tree/arch's stage events.
    let recording = fedostree_util::events::record();
    let publish_to = match &opts.source {
        CommitSource::Scratch(sc) => sc.publish_to.as_deref(),
        _ => None,
    };
    // A key that cannot sign fails the run before anything is composed.
    let key = match opts.publish || publish_to.is_some() {
        true => Some(SigningKey::resolve(state, &opts.signing)?),
        false => None,
    };
    // Composes and image updates want the disk and both cores: one arch at a time.
    let mut prepared = Vec::new();
    // The treefile, loaded once for every arch; a worker told which ref to pull needs none.
    let tree = match &opts.source {
        CommitSource::Pulled(Candidate { ref_: Some(_), .. }) => None,
        _ => Some(LoadedTree::load(&opts.sources.trees, &opts.tree, &opts.arches)?),
    };
    for &arch in &opts.arches {
        opts.cancel.check()?;
        let r = ready(state, opts, tree.as_ref(), arch)?;
        let gate = gate_plan(state, opts, tree.as_ref(), &r)?;
        prepared.push((r, gate));
    }
    // A TCG guest keeps one core busy: boot the arches (and their upgrades) side by side, the cores
    // shared out.
    let vms = prepared.len() + prepared.iter().filter(|(_, g)| matches!(g, Plan::Run(_))).count();
    let guest = GuestSettings {
        accel: opts.accel,
        timeout: opts.vm_timeout,
        vcpus: fedostree_harness::qemu::vcpus_for(vms),
        boot: opts.boot,
        fw_cfg: Vec::new(),
        cancel: opts.cancel.clone(),
    };
    let shared = SharedReporter(std::sync::Mutex::new(reporter));
    let boots = prepared
        .into_iter()
        .map(|(ready, gate)| boot_with_gate(state, opts, ready, gate, guest.clone(), &shared));
    let booted = futures_util::future::join_all(boots).await;
    // A signal stopped the VMs: what they reported proves nothing, and nothing is published.
    opts.cancel.check()?;
    let mut runs = Vec::new();
    for booted in booted {
        // Publishing one arch can take minutes (a static delta): a signal meanwhile stops the next.
        opts.cancel.check()?;
        let run = finish(state, opts, key.as_ref(), booted)?;
        (&shared).suite_done(&run.suite);
        runs.push(run);
    }
    let suites: Vec<SuiteResult> = runs.iter().map(|r| r.suite.clone()).collect();
    let junit = state.runs().join(&opts.run_id).join("junit.xml");
    fedostree_harness::junit::write_junit_with_stages(&suites, &recording.take(), &junit)?;
    Ok(runs)
}

/// One arch's boot and its upgrade gate, done.
struct Booted {
    ready: Ready,
    dir: std::path::PathBuf,
    boot_time: Duration,
    booted: Result<(SuiteResult, GuestTimes)>,
    gate: GateOutcome,
}

/// Boot `ready` and, side by side, its upgrade gate.
async fn boot_with_gate(
    state: &StateDir,
    opts: &TestOptions,
    ready: Ready,
    gate: Plan,
    guest: GuestSettings,
    shared: &SharedReporter<'_>,
) -> Booted {
    let dir = run_dir(state, &opts.run_id, &ready.tree, ready.arch);
    let t = Instant::now();
    let main = async {
        let booted = boot_and_test(
            &ready.tree,
            ready.arch,
            &ready.image,
            &dir,
            guest.clone(),
            &mut &*shared,
        )
        .await;
        (t.elapsed(), booted)
    };
    let mut gate_reporter = shared;
    let upgrade = gate.run(guest.clone(), &mut gate_reporter);
    let ((boot_time, booted), gate) = futures_util::future::join(main, upgrade).await;
    Booted {
        ready,
        dir,
        boot_time,
        booted,
        gate,
    }
}

/// The commit of `opts.source` for `arch`, deployed into the image it boots from. `tree` is loaded
/// unless the source needs no treefile.
fn ready(state: &StateDir, opts: &TestOptions, tree: Option<&LoadedTree>, arch: Arch) -> Result<Ready> {
    let loaded = || tree.context("the tree's treefile was not loaded");
    Ok(match &opts.source {
        CommitSource::Compose => {
            let (composed, image, timings) = prepare(state, &opts.sources, loaded()?, arch, opts.backend)?;
            Ready {
                arch,
                tree: composed.tree,
                publish_as: opts.publish.then(|| composed.ref_.clone()),
                ref_: composed.ref_,
                image,
                timings,
                package_diff: None,
                throwaway: None,
            }
        }
        CommitSource::Scratch(sc) => {
            let s = crate::scratch::prepare(state, opts, loaded()?, arch, sc)?;
            let diff = s.diff.render();
            let what = format!(
                "{} {}: package changes over the tree's {}:\n{diff}",
                s.ref_,
                s.image.commit.short(),
                s.base.short()
            );
            fedostree_util::events::Scope::new(&s.tree, arch).notice(fedostree_util::events::Stage::Compose, what);
            Ready {
                arch,
                tree: s.tree,
                ref_: s.ref_,
                publish_as: sc.publish_to.clone(),
                image: s.image,
                timings: s.timings,
                package_diff: Some(diff),
                throwaway: Some(s.throwaway),
            }
        }
        CommitSource::Pulled(from) => {
            let ref_ = match &from.ref_ {
                Some(r) => r.clone(),
                None => loaded()?.ref_(arch)?,
            };
            let mut timings = Timings::default();
            let t = Instant::now();
            let commit = pull_candidate(state, &Scope::new(&opts.tree, arch), &from.url, &ref_)?;
            timings.compose_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let image = update_image(state, &opts.tree, arch, &commit, opts.backend)?;
            timings.image_s = t.elapsed().as_secs_f64();
            Ready {
                arch,
                tree: opts.tree.clone(),
                ref_,
                publish_as: None,
                image,
                timings,
                package_diff: None,
                throwaway: None,
            }
        }
        CommitSource::Scenario(_) => unreachable!("scenarios run their own commits (see test_tree)"),
    })
}

/// The upgrade gate of a ready candidate, from the tree's published commit (a scratch build's too:
/// users upgrade from what the tree's ref says).
fn gate_plan(state: &StateDir, opts: &TestOptions, tree: Option<&LoadedTree>, r: &Ready) -> Result<Plan> {
    let tree_ref = match (&opts.source, tree) {
        (CommitSource::Scratch(_), Some(t)) => t.ref_(r.arch)?,
        _ => r.ref_.clone(),
    };
    let inputs = GateInputs {
        tree: &r.tree,
        arch: r.arch,
        tree_ref: &tree_ref,
        candidate: &r.image.commit,
        enabled: opts.upgrade,
        backend: opts.backend,
        signing: &opts.signing,
        run_dir: &run_dir(state, &opts.run_id, &r.tree, r.arch),
    };
    crate::upgrade::prepare(state, &inputs)
}

/// After the boot: the suite (a broken boot is this arch's infrastructure error), the gate, the
/// publish of a pass, and the run directory's records.
fn finish(state: &StateDir, opts: &TestOptions, key: Option<&SigningKey>, booted: Booted) -> Result<TreeArchRun> {
    let Booted {
        ready,
        dir,
        boot_time,
        booted,
        gate: upgrade,
    } = booted;
    let Ready {
        arch,
        tree,
        ref_,
        publish_as,
        image,
        mut timings,
        package_diff,
        throwaway,
    } = ready;
    timings.upgrade = upgrade.note;
    timings.upgrade_s = upgrade.took;
    drop(throwaway);
    // The gate's cases join a main boot that ran; a broken one's suite stays the boot's error alone.
    let booted = booted.map(|(mut suite, times)| {
        suite.cases.extend(upgrade.cases);
        (suite, times)
    });
    let (suite, guest_times) =
        booted.unwrap_or_else(|e| (infra_suite(&tree, arch, &image, &dir, &e), GuestTimes::default()));
    timings.boot_s = boot_time.as_secs_f64();
    timings.record_guest(&guest_times);
    let published = gate(publish_as.is_some(), &suite);
    if let (Some(key), Some(public_ref)) = (key.filter(|_| published), &publish_as) {
        let publish_opts = PublishOptions {
            key,
            retain: opts.retain,
            scratch_delta: opts.scratch_delta,
        };
        timings.publish_s = Some(publish_timed(
            state,
            &Scope::new(&tree, arch),
            &publish_opts,
            public_ref,
            &image.commit,
        )?);
    }
    fs_err::write(dir.join("timings.json"), serde_json::to_string_pretty(&timings)? + "\n")?;
    if let Some(d) = &package_diff {
        fs_err::write(dir.join("package-diff.txt"), d)?;
    }
    Ok(TreeArchRun {
        ref_,
        commit: image.commit.clone(),
        run_dir: dir,
        suite,
        published,
        image,
        timings,
        package_diff,
    })
}

/// The suite of a boot that broke: no cases, the error, and the console's last lines.
fn infra_suite(tree: &str, arch: Arch, image: &ImageState, dir: &Path, e: &anyhow::Error) -> SuiteResult {
    let console = fs_err::read_to_string(dir.join("console.log"))
        .map(|c| fedostree_harness::console::tail(&c, 40))
        .unwrap_or_default();
    SuiteResult::broken(tree, arch, &image.commit, e, console)
}
