//! `fedostree ci run`: one pass over every tree. A tree/arch whose compose comes out at the commit it
//! was last tested at (same treefile, same packages: compose's input hash) is up to date; the others
//! go through `fedostree test`'s pipeline — image update, boot, installed-tests, gate, publish — with
//! failed tests rerun in fresh VMs, and every attempt recorded in the history.

use crate::denylist::Denylist;
use crate::history::{History, NewResult, ResultRecord, TestRow};
use crate::verdict::{RunStatus, Verdict};
use anyhow::Result;
use fedostree_compose::loaded_tree::LoadedTree;
use fedostree_harness::qemu::{Accel, BootPath, FwCfgValue};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{Status, SuiteResult};
use fedostree_images::{Backend, ImageState};
use fedostree_pipeline::guest::{boot_and_test, GuestSettings, SharedReporter};
use fedostree_pipeline::publish::PublishOptions;
use fedostree_pipeline::run::{run_dir, Timings};
use fedostree_pipeline::signing::{SigningKey, SigningSpec};
use fedostree_pipeline::stages::{compose, publish_timed, update_image};
use fedostree_pipeline::upgrade::{GateInputs, GateOutcome, Plan};
use fedostree_util::events::{Scope, Stage};
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::{Arch, Checksum, Exit};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a test that passed only on a rerun does to its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlakyPolicy {
    /// The tree passes (and is published); the flake is recorded and shown.
    Pass,
    /// The tree fails like on a plain failure.
    Fail,
}

#[derive(Debug, Clone)]
pub struct CiOptions {
    /// Tree name glob (`dev/*`); every tree when `None`.
    pub trees: Option<String>,
    pub arches: Vec<Arch>,
    /// VMs booted at once.
    pub jobs: usize,
    /// Reruns of failed tests, each in a fresh VM.
    pub retries: u32,
    pub flaky: FlakyPolicy,
    pub sources: Sources,
    pub accel: Option<Accel>,
    pub backend: Backend,
    pub vm_timeout: Duration,
    pub signing: SigningSpec,
    pub retain: usize,
    pub scratch_delta: bool,
    pub publish: bool,
    /// Run the upgrade gate (`fedostree_pipeline::upgrade`); off with `--no-upgrade`.
    pub upgrade: bool,
    pub run_id: String,
    /// Tripped by SIGINT/SIGTERM: VMs stop, nothing more is published, the run is recorded interrupted.
    pub cancel: fedostree_util::cancel::Cancel,
}

/// The history database of a state directory.
pub fn history_path(state: &StateDir) -> PathBuf {
    state.root().join("ci.sqlite")
}

/// Every tree under `trees_dir` (`GROUP/NAME.yaml` with a `ref:`; includes have none), sorted, that
/// matches `glob`.
pub fn discover_trees(trees_dir: &Path, glob: Option<&str>) -> Result<Vec<String>> {
    let mut trees = Vec::new();
    for group in fs_err::read_dir(trees_dir)? {
        let group = group?.path();
        if !group.is_dir() {
            continue;
        }
        for file in fs_err::read_dir(&group)? {
            let file = file?.path();
            if file.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = fs_err::read_to_string(&file)?;
            if !text.lines().any(|l| l.starts_with("ref:")) {
                continue;
            }
            let name = format!(
                "{}/{}",
                group.file_name().unwrap_or_default().to_string_lossy(),
                file.file_stem().unwrap_or_default().to_string_lossy()
            );
            if glob.is_none_or(|g| fedostree_util::glob::glob_match(g, &name)) {
                trees.push(name);
            }
        }
    }
    trees.sort();
    if trees.is_empty() {
        fedostree_util::bail_input!("no tree under {} matches {}", trees_dir.display(), glob.unwrap_or("*"));
    }
    Ok(trees)
}

/// What one pass did to one tree/arch.
#[derive(Debug, Clone)]
pub enum Outcome {
    UpToDate {
        commit: Checksum,
        verdict: Verdict,
    },
    Tested {
        commit: Checksum,
        verdict: Verdict,
        published: bool,
        flaky: Vec<String>,
        failed: Vec<String>,
        infra_error: Option<String>,
        artifacts: PathBuf,
    },
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        match self {
            Outcome::UpToDate { verdict, .. } | Outcome::Tested { verdict, .. } => *verdict,
        }
    }
}

/// (tree, arch, what the pass did to it).
pub type TreeOutcome = (String, Arch, Outcome);

#[derive(Debug, Clone)]
pub struct PassSummary {
    pub run_id: String,
    /// (tree, arch, outcome), in tree order.
    pub outcomes: Vec<TreeOutcome>,
}

impl PassSummary {
    /// Exit 2 when a tree/arch ended in an infrastructure error, 1 when one failed (tested now or up
    /// to date at a failing commit), else 0.
    pub fn exit(&self) -> Exit {
        let v: Vec<Verdict> = self.outcomes.iter().map(|(_, _, o)| o.verdict()).collect();
        if v.contains(&Verdict::Error) {
            Exit::Infra
        } else if v.contains(&Verdict::Fail) {
            Exit::Failed
        } else {
            Exit::Ok
        }
    }
}

/// A tree/arch that changed, on its way through the pipeline.
struct Unit {
    tree: String,
    arch: Arch,
    ref_: String,
    commit: Checksum,
    version: Option<String>,
    parent: Option<Checksum>,
    timings: Timings,
}

/// One pass. Composes and image updates run one at a time (they share the repo and the disk); the
/// VMs of changed trees boot `opts.jobs` at a time.
pub async fn run_pass(state: &StateDir, opts: &CiOptions, reporter: &mut (dyn Reporter + Send)) -> Result<PassSummary> {
    let trees = discover_trees(&opts.sources.trees, opts.trees.as_deref())?;
    let denylist = Denylist::load(&opts.sources.trees.join("denylist.yaml"))?;
    let key = match opts.publish {
        true => Some(SigningKey::resolve(state, &opts.signing)?),
        false => None,
    };
    let db = history_path(state);
    let mut history = History::open(&db)?;
    for gone in history.mark_interrupted()? {
        Scope::run().notice(
            Stage::Ci,
            format!("run {gone} was interrupted; its trees are tested again"),
        );
    }
    let arches: Vec<&str> = opts.arches.iter().map(|a| a.as_str()).collect();
    let selection = format!("{} on {}", opts.trees.as_deref().unwrap_or("*"), arches.join(","));
    history.begin_run(&opts.run_id, &selection)?;
    // SIGINT/SIGTERM trip `opts.cancel`: the VMs stop, nothing more is published, and the pass returns
    // `Cancelled` after marking the run interrupted. Should the unwind not finish (the cleanup
    // registry's hard path), the teardown below marks it, or else the next pass does.
    let (db2, id2) = (db.clone(), opts.run_id.clone());
    let interrupted = fedostree_util::cleanup::register(format!("ci run {}", opts.run_id), move || {
        if let Ok(h) = History::open(&db2) {
            let _ = h.finish_run(&id2, RunStatus::Interrupted);
        }
    });
    let pass = test_changed(state, opts, &trees, &denylist, key.as_ref(), &mut history, reporter).await;
    // A signal, or an error that ended the pass early: the run did not finish, and the next pass
    // tests its trees again.
    let status = match (&pass, opts.cancel.is_cancelled()) {
        (Ok(_), false) => RunStatus::Finished,
        _ => RunStatus::Interrupted,
    };
    history.finish_run(&opts.run_id, status)?;
    fedostree_util::cleanup::deregister(interrupted);
    if status == RunStatus::Interrupted {
        Scope::run().notice(
            Stage::Ci,
            format!("run {} interrupted; nothing more was published", opts.run_id),
        );
    }
    Ok(PassSummary {
        run_id: opts.run_id.clone(),
        outcomes: pass?,
    })
}

/// The pass's work once it is recorded as begun: compose everything, update the images of what
/// changed, boot them `opts.jobs` at a time with reruns, and conclude each.
async fn test_changed(
    state: &StateDir,
    opts: &CiOptions,
    trees: &[String],
    denylist: &Denylist,
    key: Option<&SigningKey>,
    history: &mut History,
    reporter: &mut (dyn Reporter + Send),
) -> Result<Vec<TreeOutcome>> {
    let (mut outcomes, changed) = compose_all(state, opts, trees, history)?;
    // Images, one at a time.
    let mut ready = Vec::new();
    for mut unit in changed {
        opts.cancel.check()?;
        let t = Instant::now();
        // The compose above already made the commit: deploy it, without composing again.
        let image = update_image(state, &unit.tree, unit.arch, &unit.commit, opts.backend)?;
        unit.timings.image_s = t.elapsed().as_secs_f64();
        let gate = gate_plan(state, opts, &unit)?;
        ready.push((unit, image, gate));
    }

    let jobs = opts.jobs.max(1);
    let gates = ready.iter().filter(|(_, _, g)| matches!(g, Plan::Run(_))).count();
    let vcpus = fedostree_harness::qemu::vcpus_for(jobs.min(ready.len().max(1)) + gates.min(jobs));
    let shared = SharedReporter(std::sync::Mutex::new(reporter));
    let shared = &shared;
    let mut tested = futures_util::stream::iter(ready.into_iter().map(|(mut unit, image, gate)| async move {
        // The upgrade from the published commit boots beside the main boot and its reruns.
        // The gate brings its own fw_cfg; the rest is a first attempt's VM.
        let mut gate_reporter = shared;
        let upgrade = gate.run(attempt_guest(opts, 1, None, vcpus), &mut gate_reporter);
        let main = test_with_retries(state, opts, &unit, &image, vcpus, denylist, shared);
        let (mut attempts, upgraded) = futures_util::future::join(main, upgrade).await;
        join_upgrade(&mut unit, &mut attempts, upgraded);
        (unit, attempts)
    }))
    .buffer_unordered(jobs);
    let mut done = Vec::new();
    while let Some((unit, attempts)) = tested.next().await {
        // A signal stopped the VMs: what they reported says nothing, and nothing more is published or
        // recorded.
        opts.cancel.check()?;
        let judged = judge(&unit, &attempts, opts.flaky, denylist);
        done.push(conclude(state, opts, key, history, unit, &attempts, judged)?);
    }
    drop(tested);
    outcomes.extend(done);
    outcomes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(outcomes)
}

/// The upgrade gate of a unit: from its tree's published commit.
fn gate_plan(state: &StateDir, opts: &CiOptions, unit: &Unit) -> Result<Plan> {
    let inputs = GateInputs {
        tree: &unit.tree,
        arch: unit.arch,
        tree_ref: &unit.ref_,
        candidate: &unit.commit,
        enabled: opts.upgrade,
        backend: opts.backend,
        signing: &opts.signing,
        run_dir: &run_dir(state, &opts.run_id, &unit.tree, unit.arch),
    };
    fedostree_pipeline::upgrade::prepare(state, &inputs)
}

/// The gate's cases join the first attempt (they are not rerun: an upgrade is decided by its own boot).
fn join_upgrade(unit: &mut Unit, attempts: &mut [Attempt], gate: GateOutcome) {
    unit.timings.upgrade = gate.note;
    unit.timings.upgrade_s = gate.took;
    if let Some(first) = attempts.first_mut() {
        first.suite.cases.extend(gate.cases);
    }
}

/// Compose every tree on every arch: the ones at the commit they were last tested at are up to date
/// (recorded as such), the others are the units to test. A tree that does not compose is recorded as
/// an error and does not stop the others.
fn compose_all(
    state: &StateDir,
    opts: &CiOptions,
    trees: &[String],
    history: &mut History,
) -> Result<(Vec<TreeOutcome>, Vec<Unit>)> {
    let mut outcomes = Vec::new();
    let mut changed = Vec::new();
    for tree in trees {
        // Loaded once for every arch; a treefile that does not load fails each arch's compose.
        let loaded = LoadedTree::load(&opts.sources.trees, tree, &opts.arches);
        for &arch in &opts.arches {
            opts.cancel.check()?;
            let t = Instant::now();
            let composed = match &loaded {
                Ok(l) => compose(state, &opts.sources, l, arch),
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            };
            let (composed, commit) = match composed {
                Ok(c) => c,
                Err(e) => {
                    // A compose a signal broke (its children got it too) says nothing about the tree.
                    opts.cancel.check()?;
                    let failed = record_compose_failure(history, opts, tree, arch, t.elapsed(), &e)?;
                    outcomes.push((tree.clone(), arch, failed));
                    continue;
                }
            };
            match history.last_tested(tree, arch)? {
                Some(last) if last.commit == commit => {
                    let what = format!("at {} ({})", commit.short(), last.verdict);
                    Scope::new(tree, arch).step(Stage::UpToDate, what, Some(t.elapsed().as_secs_f64()));
                    history.record_unchanged(&opts.run_id, tree, arch, &commit)?;
                    let verdict = last.record.verdict;
                    outcomes.push((tree.clone(), arch, Outcome::UpToDate { commit, verdict }));
                }
                last => {
                    if !composed.bootable {
                        fedostree_util::bail_input!("{tree}: not bootable (`container: true`): ci cannot test it");
                    }
                    changed.push(Unit {
                        tree: tree.clone(),
                        arch,
                        ref_: composed.ref_.clone(),
                        commit,
                        version: composed.version.clone(),
                        parent: last.map(|l| l.record.commit),
                        timings: Timings {
                            compose_s: t.elapsed().as_secs_f64(),
                            ..Timings::default()
                        },
                    })
                }
            }
        }
    }
    Ok((outcomes, changed))
}

/// A compose that failed: recorded as an error result with nothing tested.
fn record_compose_failure(
    history: &mut History,
    opts: &CiOptions,
    tree: &str,
    arch: Arch,
    took: Duration,
    e: &anyhow::Error,
) -> Result<Outcome> {
    let msg = format!("compose failed: {e:#}");
    Scope::new(tree, arch).notice(Stage::Compose, msg.clone());
    history.record_result(&NewResult {
        record: ResultRecord {
            run_id: opts.run_id.clone(),
            tree: tree.to_string(),
            arch,
            ref_: String::new(),
            commit: Checksum::new(""),
            parent_commit: None,
            version: None,
            verdict: Verdict::Error,
            published: false,
            infra_error: Some(msg.clone()),
            compose_s: Some(took.as_secs_f64()),
            image_s: None,
            boot_s: None,
            publish_s: None,
            upgrade: None,
            upgrade_s: None,
            artifacts: String::new(),
            package_diff: None,
        },
        tests: vec![],
    })?;
    Ok(Outcome::Tested {
        commit: Checksum::new(""),
        verdict: Verdict::Error,
        published: false,
        flaky: vec![],
        failed: vec![],
        infra_error: Some(msg),
        artifacts: PathBuf::new(),
    })
}

/// A tested unit's end: publish it if its verdict allows, record it in the history, say it.
fn conclude(
    state: &StateDir,
    opts: &CiOptions,
    key: Option<&SigningKey>,
    history: &mut History,
    mut unit: Unit,
    attempts: &[Attempt],
    judged: Judged,
) -> Result<TreeOutcome> {
    let mut published = false;
    if let Some(key) = key.filter(|_| judged.publishable) {
        let publish_opts = PublishOptions {
            key,
            retain: opts.retain,
            scratch_delta: opts.scratch_delta,
        };
        unit.timings.publish_s = Some(publish_timed(
            state,
            &Scope::new(&unit.tree, unit.arch),
            &publish_opts,
            &unit.ref_,
            &unit.commit,
        )?);
        published = true;
    }
    unit.timings.boot_s = attempts.iter().map(|a| a.boot_s).sum();
    let package_diff = unit
        .parent
        .as_deref()
        .and_then(|p| package_diff(state, p, &unit.commit));
    let artifacts = attempts.first().map(|a| a.dir.clone()).unwrap_or_default();
    history.record_result(&NewResult {
        record: ResultRecord {
            run_id: opts.run_id.clone(),
            tree: unit.tree.clone(),
            arch: unit.arch,
            ref_: unit.ref_.clone(),
            commit: unit.commit.clone(),
            parent_commit: unit.parent.clone(),
            version: unit.version.clone(),
            verdict: judged.verdict,
            published,
            infra_error: judged.infra_error.clone(),
            compose_s: Some(unit.timings.compose_s),
            image_s: Some(unit.timings.image_s),
            boot_s: Some(unit.timings.boot_s),
            publish_s: unit.timings.publish_s,
            upgrade: Some(unit.timings.upgrade.clone()),
            upgrade_s: unit.timings.upgrade_s,
            artifacts: artifacts.display().to_string(),
            package_diff,
        },
        tests: judged.rows.clone(),
    })?;
    fs_err::write(
        artifacts.join("timings.json"),
        serde_json::to_string_pretty(&unit.timings)? + "\n",
    )?;
    Scope::new(&unit.tree, unit.arch).notice(Stage::Ci, verdict_line(&unit.commit, published, &judged));
    let outcome = Outcome::Tested {
        commit: unit.commit,
        verdict: judged.verdict,
        published,
        flaky: judged.flaky,
        failed: judged.failed,
        infra_error: judged.infra_error,
        artifacts,
    };
    Ok((unit.tree, unit.arch, outcome))
}

/// `PASS at abc123, published (flaky: t)`: what the terminal says of a concluded unit.
fn verdict_line(commit: &Checksum, published: bool, judged: &Judged) -> String {
    format!(
        "{} at {}{}{}",
        judged.verdict.as_str().to_uppercase(),
        commit.short(),
        if published { ", published" } else { "" },
        match (&judged.flaky[..], &judged.failed[..]) {
            ([], []) => String::new(),
            (f, []) => format!(" (flaky: {})", f.join(", ")),
            ([], x) => format!(" (failed: {})", x.join(", ")),
            (f, x) => format!(" (failed: {}; flaky: {})", x.join(", "), f.join(", ")),
        }
    )
}

fn package_diff(state: &StateDir, from: &str, to: &str) -> Option<serde_json::Value> {
    let repo = fedostree_compose::commit::open_or_create_repo(&state.repo()).ok()?;
    // The previous commit may have been pruned from the candidate repo.
    match fedostree_compose::dbdiff::diff(&repo, from, to) {
        Ok(d) => serde_json::to_value(d).ok(),
        Err(e) => {
            tracing::info!("no package diff {from} → {to}: {e:#}");
            None
        }
    }
}

/// One VM boot of a unit: its suite (or why it broke) and where its artifacts are.
struct Attempt {
    number: u32,
    dir: PathBuf,
    suite: SuiteResult,
    boot_s: f64,
}

fn failing(status: Status) -> bool {
    matches!(status, Status::Fail | Status::Timeout | Status::Error)
}

/// Boot the unit; rerun its blocking failures in fresh VMs up to `opts.retries` times, and a boot that
/// broke once more.
async fn test_with_retries(
    state: &StateDir,
    opts: &CiOptions,
    unit: &Unit,
    image: &ImageState,
    vcpus: u32,
    denylist: &Denylist,
    reporter: &SharedReporter<'_>,
) -> Vec<Attempt> {
    let today = chrono::Utc::now().date_naive();
    let base_dir = run_dir(state, &opts.run_id, &unit.tree, unit.arch);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut only: Option<Vec<String>> = None;
    let mut infra_retried = false;
    let mut reruns = 0;
    loop {
        let number = attempts.len() as u32 + 1;
        let dir = match number {
            1 => base_dir.clone(),
            n => base_dir.join(format!("attempt-{n}")),
        };
        let guest = attempt_guest(opts, number, only.as_deref(), vcpus);
        let t = Instant::now();
        let booted = boot_and_test(&unit.tree, unit.arch, image, &dir, guest, &mut &*reporter).await;
        let suite = booted
            .map(|(s, _)| s)
            .unwrap_or_else(|e| SuiteResult::broken(&unit.tree, unit.arch, &unit.commit, &e, String::new()));
        let broke = suite.infra_error.is_some();
        let blocking: Vec<String> = suite
            .cases
            .iter()
            .filter(|c| failing(c.status) && denylist.denies(&unit.tree, unit.arch, &c.name, today).is_none())
            .map(|c| c.name.clone())
            .collect();
        attempts.push(Attempt {
            number,
            dir,
            suite,
            boot_s: t.elapsed().as_secs_f64(),
        });
        if broke {
            // An infrastructure error is retried once, whole; a rerun that breaks ends the reruns, and
            // so does a signal (the VM it stopped looks broken).
            if infra_retried || only.is_some() || opts.cancel.is_cancelled() {
                return attempts;
            }
            infra_retried = true;
            Scope::new(&unit.tree, unit.arch).notice(Stage::Boot, "the VM broke; booting it once more");
            continue;
        }
        // Reruns go only to the tests that failed on the last attempt.
        if blocking.is_empty() || reruns >= opts.retries {
            return attempts;
        }
        reruns += 1;
        let what = format!(
            "rerunning in a fresh VM ({reruns}/{}): {}",
            opts.retries,
            blocking.join(", ")
        );
        Scope::new(&unit.tree, unit.arch).notice(Stage::Boot, what);
        only = Some(blocking);
    }
}

/// The VM of attempt `number`: it knows which attempt it is, and a rerun runs `only` those tests.
fn attempt_guest(opts: &CiOptions, number: u32, only: Option<&[String]>, vcpus: u32) -> GuestSettings {
    let mut fw_cfg = vec![(
        "env".to_string(),
        FwCfgValue::Text(format!("FEDOSTREE_ATTEMPT={number}\n")),
    )];
    if let Some(names) = only {
        fw_cfg.push(("only".into(), FwCfgValue::Text(names.join("\n") + "\n")));
    }
    GuestSettings {
        accel: opts.accel,
        timeout: opts.vm_timeout,
        vcpus,
        boot: BootPath::DirectKernel,
        fw_cfg,
        cancel: opts.cancel.clone(),
    }
}

/// A unit's verdict from all its attempts.
struct Judged {
    verdict: Verdict,
    publishable: bool,
    infra_error: Option<String>,
    flaky: Vec<String>,
    failed: Vec<String>,
    rows: Vec<TestRow>,
}

fn judge(unit: &Unit, attempts: &[Attempt], policy: FlakyPolicy, denylist: &Denylist) -> Judged {
    let today = chrono::Utc::now().date_naive();
    let mut rows = Vec::new();
    // Per test: the status of its latest attempt, and whether it failed before.
    let mut last: BTreeMap<String, (Status, bool)> = BTreeMap::new();
    let mut infra_error = None;
    // The attempts that count: after an infrastructure retry, the first one is only history.
    let counted = match attempts {
        [first, rest @ ..] if first.suite.infra_error.is_some() && !rest.is_empty() => rest,
        all => all,
    };
    for a in attempts {
        for c in &a.suite.cases {
            let failed_before = last.get(&c.name).is_some_and(|(s, f)| *f || failing(*s));
            let denied = failing(c.status)
                .then(|| denylist.denies(&unit.tree, unit.arch, &c.name, today))
                .flatten()
                .map(|e| e.describe());
            rows.push(TestRow {
                name: c.name.clone(),
                outcome: c.status.into(),
                duration_s: c.duration.as_secs_f64(),
                attempt: a.number,
                flaky: c.status == Status::Pass && failed_before,
                denied,
            });
            if counted.iter().any(|x| x.number == a.number) {
                last.insert(c.name.clone(), (c.status, failed_before));
            }
        }
    }
    if let Some(a) = counted.iter().find(|a| a.suite.infra_error.is_some()) {
        // A rerun that broke leaves the tests it was for failing; the first boot breaking is an error.
        if a.number == counted[0].number {
            infra_error = a.suite.infra_error.clone();
        }
    }
    let flaky: Vec<String> = last
        .iter()
        .filter(|(_, (s, before))| *s == Status::Pass && *before)
        .map(|(n, _)| n.clone())
        .collect();
    let failed: Vec<String> = last
        .iter()
        .filter(|(n, (s, _))| failing(*s) && denylist.denies(&unit.tree, unit.arch, n, today).is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let verdict = if infra_error.is_some() {
        Verdict::Error
    } else if !failed.is_empty() {
        Verdict::Fail
    } else if !flaky.is_empty() {
        Verdict::Flaky
    } else {
        Verdict::Pass
    };
    let publishable = match verdict {
        Verdict::Pass => true,
        Verdict::Flaky => policy == FlakyPolicy::Pass,
        Verdict::Fail | Verdict::Error => false,
    };
    Judged {
        verdict,
        publishable,
        infra_error,
        flaky,
        failed,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedostree_harness::results::TestCaseResult;

    fn unit() -> Unit {
        Unit {
            tree: "dev/broken".into(),
            arch: Arch::X86_64,
            ref_: "r".into(),
            commit: "c".into(),
            version: None,
            parent: None,
            timings: Timings::default(),
        }
    }

    fn attempt(number: u32, cases: &[(&str, Status)], infra: Option<&str>) -> Attempt {
        Attempt {
            number,
            dir: PathBuf::from("/nowhere"),
            boot_s: 1.0,
            suite: SuiteResult {
                tree: "dev/broken".into(),
                arch: Arch::X86_64,
                commit: "c".into(),
                cases: cases
                    .iter()
                    .map(|(n, s)| TestCaseResult {
                        name: n.to_string(),
                        status: *s,
                        duration: Duration::from_millis(10),
                        output: String::new(),
                        exit_code: None,
                        subtests: vec![],
                    })
                    .collect(),
                infra_error: infra.map(Into::into),
                console_tail: String::new(),
            },
        }
    }

    use Status::*;

    #[test]
    fn pass_after_fail_is_flaky_and_the_policy_gates_it() {
        let a = [
            attempt(1, &[("s/ok", Pass), ("s/flake", Fail)], None),
            attempt(2, &[("s/flake", Pass)], None),
        ];
        let j = judge(&unit(), &a, FlakyPolicy::Pass, &Denylist::default());
        assert_eq!((j.verdict.as_str(), j.publishable), ("flaky", true));
        assert_eq!(j.flaky, ["s/flake"]);
        assert_eq!(j.rows.len(), 3);
        assert!(j.rows.iter().any(|r| r.name == "s/flake" && r.attempt == 2 && r.flaky));
        let j = judge(&unit(), &a, FlakyPolicy::Fail, &Denylist::default());
        assert_eq!((j.verdict.as_str(), j.publishable), ("flaky", false));
    }

    #[test]
    fn a_failure_on_every_attempt_fails_the_tree() {
        let a = [
            attempt(1, &[("s/bad", Fail), ("s/flake", Timeout)], None),
            attempt(2, &[("s/bad", Fail), ("s/flake", Pass)], None),
            attempt(3, &[("s/bad", Fail)], None),
        ];
        let j = judge(&unit(), &a, FlakyPolicy::Pass, &Denylist::default());
        assert_eq!((j.verdict.as_str(), j.publishable), ("fail", false));
        assert_eq!(j.failed, ["s/bad"]);
        assert_eq!(j.flaky, ["s/flake"]);
    }

    #[test]
    fn infrastructure_errors_are_retried_once_and_never_published() {
        let a = [
            attempt(1, &[], Some("no end marker")),
            attempt(2, &[("s/ok", Pass)], None),
        ];
        let j = judge(&unit(), &a, FlakyPolicy::Pass, &Denylist::default());
        assert_eq!(j.verdict, Verdict::Pass, "the retry is what counts");
        let a = [attempt(1, &[], Some("no end marker")), attempt(2, &[], Some("badness"))];
        let j = judge(&unit(), &a, FlakyPolicy::Pass, &Denylist::default());
        assert_eq!((j.verdict.as_str(), j.publishable), ("error", false));
        assert_eq!(j.infra_error.as_deref(), Some("badness"));
    }

    #[test]
    fn a_denied_failure_is_recorded_but_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("denylist.yaml");
        fs_err::write(&f, "- pattern: s/known\n  reason: upstream bug\n").unwrap();
        let list = Denylist::load(&f).unwrap();
        let a = [attempt(1, &[("s/ok", Pass), ("s/known", Fail)], None)];
        let j = judge(&unit(), &a, FlakyPolicy::Fail, &list);
        assert_eq!((j.verdict.as_str(), j.publishable), ("pass", true));
        let row = j.rows.iter().find(|r| r.name == "s/known").unwrap();
        assert_eq!(
            (row.outcome.as_str(), row.denied.as_deref()),
            ("fail", Some("upstream bug"))
        );
    }

    #[test]
    fn trees_are_found_and_includes_left_out() {
        let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trees");
        let all = discover_trees(&trees, None).unwrap();
        assert!(all.contains(&"dev/minimal".to_string()) && all.contains(&"server/docker-io".to_string()));
        assert!(!all.iter().any(|t| t.ends_with("common")), "{all:?}");
        assert_eq!(
            discover_trees(&trees, Some("dev/*")).unwrap(),
            ["dev/broken", "dev/minimal"]
        );
        let err = format!("{:#}", discover_trees(&trees, Some("nope/*")).unwrap_err());
        assert!(err.contains("no tree") && err.contains("nope/*"), "{err}");
    }
}
