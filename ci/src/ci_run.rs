//! `fedostree ci run`: one pass over every tree. A tree/arch whose compose comes out at the commit it
//! was last tested at (same treefile, same packages: compose's input hash) is up to date; the others
//! go through `fedostree test`'s pipeline — image update, boot, installed-tests, gate, publish — with
//! failed tests rerun in fresh VMs, and every attempt recorded in the history.

use crate::denylist::Denylist;
use crate::history::{History, NewResult, ResultRecord, TestRow};
use crate::pipeline::{self, GuestSettings, Timings};
use anyhow::Result;
use fedostree_harness::qemu::{Accel, BootPath, FwCfgValue};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{Status, SuiteResult};
use fedostree_images::{Backend, ImageState};
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::Exit;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The architectures a tree is composed for.
pub const ARCHES: &[&str] = &["x86_64", "aarch64"];

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
    pub arches: Vec<String>,
    /// VMs booted at once.
    pub jobs: usize,
    /// Reruns of failed tests, each in a fresh VM.
    pub retries: u32,
    pub flaky: FlakyPolicy,
    pub sources: Sources,
    pub accel: Option<Accel>,
    pub backend: Backend,
    pub vm_timeout: Duration,
    pub signing: crate::signing::SigningSpec,
    pub retain: usize,
    pub scratch_delta: bool,
    pub publish: bool,
    pub run_id: String,
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
        commit: String,
        verdict: String,
    },
    Tested {
        commit: String,
        verdict: String,
        published: bool,
        flaky: Vec<String>,
        failed: Vec<String>,
        infra_error: Option<String>,
        artifacts: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct PassSummary {
    pub run_id: String,
    /// (tree, arch, outcome), in tree order.
    pub outcomes: Vec<(String, String, Outcome)>,
}

impl PassSummary {
    /// Exit 2 when a tree/arch ended in an infrastructure error, 1 when one failed (tested now or up
    /// to date at a failing commit), else 0.
    pub fn exit(&self) -> Exit {
        let verdicts = self.outcomes.iter().map(|(_, _, o)| match o {
            Outcome::UpToDate { verdict, .. } | Outcome::Tested { verdict, .. } => verdict.as_str(),
        });
        let v: Vec<&str> = verdicts.collect();
        if v.contains(&"error") {
            Exit::Infra
        } else if v.contains(&"fail") {
            Exit::Failed
        } else {
            Exit::Ok
        }
    }
}

/// A tree/arch that changed, on its way through the pipeline.
struct Unit {
    tree: String,
    arch: String,
    ref_: String,
    commit: String,
    version: Option<String>,
    parent: Option<String>,
    timings: Timings,
}

/// One pass. Composes and image updates run one at a time (they share the repo and the disk); the
/// VMs of changed trees boot `opts.jobs` at a time.
pub async fn run_pass(state: &StateDir, opts: &CiOptions, reporter: &mut (dyn Reporter + Send)) -> Result<PassSummary> {
    let trees = discover_trees(&opts.sources.trees, opts.trees.as_deref())?;
    let denylist = Denylist::load(&opts.sources.trees.join("denylist.yaml"))?;
    let key = match opts.publish {
        true => Some(crate::signing::SigningKey::resolve(state, &opts.signing)?),
        false => None,
    };
    let db = history_path(state);
    let mut history = History::open(&db)?;
    for gone in history.mark_interrupted()? {
        eprintln!("ci: run {gone} was interrupted; its trees are tested again");
    }
    let selection = format!("{} on {}", opts.trees.as_deref().unwrap_or("*"), opts.arches.join(","));
    history.begin_run(&opts.run_id, &selection)?;
    // SIGINT/SIGTERM stop the VMs (the cleanup registry) and end the process before anything more is
    // published; the run is marked interrupted here, or by the next pass if even that was cut short.
    let (db2, id2) = (db.clone(), opts.run_id.clone());
    let interrupted = fedostree_util::cleanup::register(format!("ci run {}", opts.run_id), move || {
        if let Ok(h) = History::open(&db2) {
            let _ = h.finish_run(&id2, "interrupted");
        }
    });

    let mut outcomes = Vec::new();
    let mut changed = Vec::new();
    for tree in &trees {
        for arch in &opts.arches {
            let t = Instant::now();
            let composed = pipeline::compose(state, &opts.sources, tree, arch);
            let (composed, commit) = match composed {
                Ok(c) => c,
                // One tree that does not compose does not stop the others; nothing was tested.
                Err(e) => {
                    let msg = format!("compose failed: {e:#}");
                    eprintln!("{tree} {arch}: {msg}");
                    history.record_result(&NewResult {
                        record: ResultRecord {
                            run_id: opts.run_id.clone(),
                            tree: tree.clone(),
                            arch: arch.clone(),
                            ref_: String::new(),
                            commit: String::new(),
                            parent_commit: None,
                            version: None,
                            verdict: "error".into(),
                            published: false,
                            infra_error: Some(msg.clone()),
                            compose_s: Some(t.elapsed().as_secs_f64()),
                            image_s: None,
                            boot_s: None,
                            publish_s: None,
                            artifacts: String::new(),
                            package_diff: None,
                        },
                        tests: vec![],
                    })?;
                    outcomes.push((
                        tree.clone(),
                        arch.clone(),
                        Outcome::Tested {
                            commit: String::new(),
                            verdict: "error".into(),
                            published: false,
                            flaky: vec![],
                            failed: vec![],
                            infra_error: Some(msg),
                            artifacts: PathBuf::new(),
                        },
                    ));
                    continue;
                }
            };
            let last = history.last_tested(tree, arch)?;
            match last {
                Some(last) if last.commit == commit => {
                    eprintln!(
                        "{tree} {arch}: up to date at {} ({}) in {:.2}s",
                        short(&commit),
                        last.verdict,
                        t.elapsed().as_secs_f64()
                    );
                    history.record_unchanged(&opts.run_id, tree, arch, &commit)?;
                    outcomes.push((
                        tree.clone(),
                        arch.clone(),
                        Outcome::UpToDate {
                            commit,
                            verdict: last.record.verdict,
                        },
                    ));
                }
                last => {
                    if !composed.bootable {
                        fedostree_util::bail_input!("{tree}: not bootable (`container: true`): ci cannot test it");
                    }
                    changed.push(Unit {
                        tree: tree.clone(),
                        arch: arch.clone(),
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

    // Images, one at a time.
    let mut ready = Vec::new();
    for mut unit in changed {
        let t = Instant::now();
        // The compose above already made the commit: deploy it, without composing again.
        let image = pipeline::update_image(state, &unit.tree, &unit.arch, &unit.commit, opts.backend)?;
        unit.timings.image_s = t.elapsed().as_secs_f64();
        ready.push((unit, image));
    }

    let jobs = opts.jobs.max(1);
    let vcpus = fedostree_harness::qemu::vcpus_for(jobs.min(ready.len().max(1)));
    let shared = pipeline::SharedReporter(std::sync::Mutex::new(reporter));
    let shared = &shared;
    let denylist = &denylist;
    let mut tested = futures_util::stream::iter(ready.into_iter().map(|(unit, image)| async move {
        let attempts = test_with_retries(state, opts, &unit, &image, vcpus, denylist, shared).await;
        (unit, attempts)
    }))
    .buffer_unordered(jobs);
    let mut done = Vec::new();
    while let Some((mut unit, attempts)) = tested.next().await {
        // A signal stopped the VMs: what they reported says nothing, and nothing more is published or
        // recorded (the signal thread ends the process; this only keeps the main thread from racing it).
        if fedostree_util::cleanup::interrupted() {
            history.finish_run(&opts.run_id, "interrupted")?;
            // The signal thread is cleaning up and ends the process with 128+signal: wait for it.
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        let judged = judge(&unit, &attempts, opts.flaky, denylist);
        let mut published = false;
        if let Some(key) = key.as_ref().filter(|_| judged.publishable) {
            let publish_opts = crate::publish::PublishOptions {
                key,
                retain: opts.retain,
                scratch_delta: opts.scratch_delta,
            };
            unit.timings.publish_s = Some(pipeline::publish_timed(state, &publish_opts, &unit.ref_, &unit.commit)?);
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
                arch: unit.arch.clone(),
                ref_: unit.ref_.clone(),
                commit: unit.commit.clone(),
                parent_commit: unit.parent.clone(),
                version: unit.version.clone(),
                verdict: judged.verdict.clone(),
                published,
                infra_error: judged.infra_error.clone(),
                compose_s: Some(unit.timings.compose_s),
                image_s: Some(unit.timings.image_s),
                boot_s: Some(unit.timings.boot_s),
                publish_s: unit.timings.publish_s,
                artifacts: artifacts.display().to_string(),
                package_diff,
            },
            tests: judged.rows.clone(),
        })?;
        fs_err::write(
            artifacts.join("timings.json"),
            serde_json::to_string_pretty(&unit.timings)? + "\n",
        )?;
        eprintln!(
            "{} {}: {} at {}{}{}",
            unit.tree,
            unit.arch,
            judged.verdict.to_uppercase(),
            short(&unit.commit),
            if published { ", published" } else { "" },
            match (&judged.flaky[..], &judged.failed[..]) {
                ([], []) => String::new(),
                (f, []) => format!(" (flaky: {})", f.join(", ")),
                ([], x) => format!(" (failed: {})", x.join(", ")),
                (f, x) => format!(" (failed: {}; flaky: {})", x.join(", "), f.join(", ")),
            }
        );
        done.push((
            unit.tree.clone(),
            unit.arch.clone(),
            Outcome::Tested {
                commit: unit.commit.clone(),
                verdict: judged.verdict,
                published,
                flaky: judged.flaky,
                failed: judged.failed,
                infra_error: judged.infra_error,
                artifacts,
            },
        ));
    }
    drop(tested);
    outcomes.extend(done);
    outcomes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    history.finish_run(&opts.run_id, "finished")?;
    fedostree_util::cleanup::deregister(interrupted);
    Ok(PassSummary {
        run_id: opts.run_id.clone(),
        outcomes,
    })
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
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
    reporter: &pipeline::SharedReporter<'_>,
) -> Vec<Attempt> {
    let today = chrono::Utc::now().date_naive();
    let base_dir = pipeline::run_dir(state, &opts.run_id, &unit.tree, &unit.arch);
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
        let mut fw_cfg = vec![(
            "env".to_string(),
            FwCfgValue::Text(format!("FEDOSTREE_ATTEMPT={number}\n")),
        )];
        if let Some(names) = &only {
            fw_cfg.push(("only".into(), FwCfgValue::Text(names.join("\n") + "\n")));
        }
        let guest = GuestSettings {
            accel: opts.accel,
            timeout: opts.vm_timeout,
            vcpus,
            boot: BootPath::DirectKernel,
            fw_cfg,
        };
        let t = Instant::now();
        let booted = pipeline::boot_and_test(&unit.tree, &unit.arch, image, &dir, guest, &mut &*reporter).await;
        let suite = booted.map(|(s, _)| s).unwrap_or_else(|e| SuiteResult {
            tree: unit.tree.clone(),
            arch: unit.arch.clone(),
            commit: unit.commit.clone(),
            cases: vec![],
            infra_error: Some(format!("{e:#}")),
            console_tail: String::new(),
        });
        let broke = suite.infra_error.is_some();
        let blocking: Vec<String> = suite
            .cases
            .iter()
            .filter(|c| failing(c.status) && denylist.denies(&unit.tree, &unit.arch, &c.name, today).is_none())
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
            if infra_retried || only.is_some() || fedostree_util::cleanup::interrupted() {
                return attempts;
            }
            infra_retried = true;
            eprintln!("{} {}: the VM broke; booting it once more", unit.tree, unit.arch);
            continue;
        }
        // Reruns go only to the tests that failed on the last attempt.
        if blocking.is_empty() || reruns >= opts.retries {
            return attempts;
        }
        reruns += 1;
        eprintln!(
            "{} {}: rerunning in a fresh VM ({reruns}/{}): {}",
            unit.tree,
            unit.arch,
            opts.retries,
            blocking.join(", ")
        );
        only = Some(blocking);
    }
}

/// A unit's verdict from all its attempts.
struct Judged {
    verdict: String,
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
                .then(|| denylist.denies(&unit.tree, &unit.arch, &c.name, today))
                .flatten()
                .map(|e| e.describe());
            rows.push(TestRow {
                name: c.name.clone(),
                outcome: c.status.label().to_lowercase(),
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
        .filter(|(n, (s, _))| failing(*s) && denylist.denies(&unit.tree, &unit.arch, n, today).is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let verdict = if infra_error.is_some() {
        "error"
    } else if !failed.is_empty() {
        "fail"
    } else if !flaky.is_empty() {
        "flaky"
    } else {
        "pass"
    };
    let publishable = verdict == "pass" || (verdict == "flaky" && policy == FlakyPolicy::Pass);
    Judged {
        verdict: verdict.into(),
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
            arch: "x86_64".into(),
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
                arch: "x86_64".into(),
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
        assert_eq!(j.verdict, "pass", "the retry is what counts");
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
