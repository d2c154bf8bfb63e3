//! The upgrade gate: a candidate is proven as users get it. Their machines run the last published
//! commit and upgrade to the new one over HTTP, through the static delta, with a 3-way `/etc` merge
//! and a reboot (kola's `run-upgrade` does this for every Fedora CoreOS release).
//!
//! For a tree/arch whose public ref has a commit P and a candidate C with an ostree client, [`prepare`]
//! (blocking):
//! - publishes P and C into a repository of the run (`<run dir>/upgrade/public/repo`) exactly as
//!   `publish` makes them: signed, with the static delta P → C;
//! - deploys P alone into a throwaway copy of the tree's cached image (C's objects must come over HTTP).
//!
//! [`run`] serves that repository on loopback and boots the copy through firmware. The host's driver,
//! `tests-suite/guest/upgrade-gate.sh`, is handed over as fw_cfg `upgrade` and runs as
//! `upgrade/from-published`: on P it sets the origin to the server, edits `/etc`, writes `/var`, runs
//! `ostree admin upgrade` and reboots; on C it checks the booted commit, the edit and the data. The
//! candidate's tests marked `X-Fedostree-Upgrade=true` and the base checks follow. Every case of that
//! VM joins the tree/arch's suite under `upgrade/`, with the host's own check that the upgrade took
//! the static delta, so a broken upgrade fails the verdict like any test.

use crate::guest::{boot_and_test, GuestSettings};
use crate::publish::{publish, PublishOptions, PUBLIC_KEY_FILE};
use crate::serve::ScenarioServer;
use crate::signing::{SigningKey, SigningSpec};
use crate::stages::{self, ImageTarget};
use anyhow::{Context, Result};
use fedostree_harness::protocol::GuestEvent;
use fedostree_harness::qemu::{BootPath, FwCfgValue};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{Status, SuiteResult, TestCaseResult};
use fedostree_images::throwaway::{self, Throwaway};
use fedostree_images::{Backend, ImageState};
use fedostree_util::events::{Scope, Stage};
use fedostree_util::state::StateDir;
use fedostree_util::{Arch, Checksum};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The guest's side of the gate.
const DRIVER: &str = include_str!("../../tests-suite/guest/upgrade-gate.sh");
/// Every case of the upgrade's VM is reported under this prefix.
pub const PREFIX: &str = "upgrade/";
/// The host's check that the upgrade fetched the static delta.
pub const DELTA_CASE: &str = "upgrade/fetched-static-delta";
/// Two firmware boots and a pull under TCG.
const TIMEOUT: Duration = Duration::from_secs(1200);

/// What the gate needs to know about one tree/arch's candidate.
pub struct GateInputs<'a> {
    /// The tree whose cached image the published commit's machine is copied from.
    pub tree: &'a str,
    pub arch: Arch,
    /// The tree's public ref: what users follow, whatever ref the candidate is on.
    pub tree_ref: &'a str,
    pub candidate: &'a Checksum,
    /// False with `--no-upgrade`.
    pub enabled: bool,
    pub backend: Backend,
    pub signing: &'a SigningSpec,
    /// The tree/arch's run directory; the gate keeps its records in `upgrade/` below it.
    pub run_dir: &'a Path,
}

/// Whether the gate runs for a candidate.
pub enum Plan {
    /// Why not (first commit, `--no-upgrade`, no ostree client, already published).
    NotRun(String),
    Run(Box<Prepared>),
}

impl Plan {
    /// What the report and the records say about the gate.
    pub fn describe(&self) -> String {
        match self {
            Plan::NotRun(why) => format!("not run: {why}"),
            Plan::Run(p) => format!("from the published {} to {}", p.from.short(), p.to.short()),
        }
    }

    /// Run the gate if the plan says so. A gate that could not run at all is a failed `upgrade/boot`.
    pub async fn run(self, guest: GuestSettings, reporter: &mut (dyn Reporter + Send)) -> GateOutcome {
        let note = self.describe();
        let Plan::Run(prepared) = self else {
            return GateOutcome {
                note,
                cases: vec![],
                took: None,
            };
        };
        match run(*prepared, guest, reporter).await {
            Ok((cases, took)) => GateOutcome {
                note,
                cases,
                took: Some(took),
            },
            Err(e) => GateOutcome {
                note,
                cases: vec![TestCaseResult {
                    status: Status::Error,
                    ..broken_case(format!("the upgrade gate could not run: {e:#}"))
                }],
                took: None,
            },
        }
    }
}

/// What the gate left for the tree/arch's records.
pub struct GateOutcome {
    /// [`Plan::describe`]: what it upgraded, or why it did not run.
    pub note: String,
    /// Its cases, all under [`PREFIX`], for the tree/arch's suite.
    pub cases: Vec<TestCaseResult>,
    /// Seconds it took, when it ran.
    pub took: Option<f64>,
}

/// The published commit's machine and the repository it upgrades from, ready to boot.
pub struct Prepared {
    tree: String,
    arch: Arch,
    ref_: String,
    from: Checksum,
    to: Checksum,
    image: ImageState,
    /// Removed when the gate is done with it.
    copy: Throwaway,
    dir: PathBuf,
    prepare_s: f64,
}

/// Decide whether the gate runs for `inp`, and when it does make the repository and the machine.
pub fn prepare(state: &StateDir, inp: &GateInputs) -> Result<Plan> {
    let scope = Scope::new(inp.tree, inp.arch);
    let from = match upgrade_from(state, inp)? {
        Ok(c) => c,
        Err(why) => {
            scope.notice(Stage::Upgrade, format!("not run: {why}"));
            return Ok(Plan::NotRun(why));
        }
    };
    let t = Instant::now();
    let what = format!(
        "publishing {} and {} with their static delta for the upgrade from the published commit",
        from.short(),
        inp.candidate.short()
    );
    let running = scope.stage(Stage::Upgrade, what);
    let dir = inp.run_dir.join("upgrade");
    let _ = fs_err::remove_dir_all(&dir);
    fs_err::create_dir_all(&dir)?;
    let key = SigningKey::resolve(state, inp.signing)?;
    let repo = dir.join("public/repo");
    let opts = PublishOptions {
        key: &key,
        retain: 2,
        scratch_delta: false,
    };
    publish(&state.public(), &repo, inp.tree_ref, &from, &opts)?;
    publish(&state.repo(), &repo, inp.tree_ref, inp.candidate, &opts)?;
    running.finish("served as publishing makes it");
    let copy = throwaway::seed(
        state,
        inp.tree,
        inp.arch,
        &throwaway::new_id(&format!("upgrade-{}", inp.arch)),
    )?;
    let only_published = ImageTarget {
        repo: state.public(),
        keep_deployments: 1,
    };
    let image = stages::update_image_from(state, copy.tree(), inp.arch, &from, inp.backend, only_published)?;
    Ok(Plan::Run(Box::new(Prepared {
        tree: inp.tree.to_owned(),
        arch: inp.arch,
        ref_: inp.tree_ref.to_owned(),
        from,
        to: inp.candidate.clone(),
        image,
        copy,
        dir,
        prepare_s: t.elapsed().as_secs_f64(),
    })))
}

/// The published commit to upgrade from, or why the gate does not run.
fn upgrade_from(state: &StateDir, inp: &GateInputs) -> Result<Result<Checksum, String>> {
    if !inp.enabled {
        return Ok(Err(
            "--no-upgrade: the upgrade from the published commit was not checked".into(),
        ));
    }
    let public = state.public();
    let published = match public.join("config").is_file() {
        true => fedostree_compose::commit::open_or_create_repo(&public)?
            .resolve_rev(inp.tree_ref, true)
            .with_context(|| format!("reading the public ref {}", inp.tree_ref))?,
        false => None,
    };
    let Some(from) = published.map(|c| Checksum::new(c.as_str())) else {
        return Ok(Err(format!(
            "nothing is published on {} yet: the first commit has nothing to upgrade from",
            inp.tree_ref
        )));
    };
    if &from == inp.candidate {
        return Ok(Err(format!("the candidate is the published commit {}", from.short())));
    }
    for (repo, commit) in [(state.repo(), inp.candidate), (public, &from)] {
        if !has_ostree_client(&repo, commit)? {
            return Ok(Err(format!(
                "{} has no ostree client (/usr/bin/ostree): machines running it cannot upgrade",
                commit.short()
            )));
        }
    }
    Ok(Ok(from))
}

/// Whether `commit` in `repo` ships the ostree client.
fn has_ostree_client(repo: &Path, commit: &Checksum) -> Result<bool> {
    use ostree::gio::prelude::FileExt;
    let repo = fedostree_compose::commit::open_or_create_repo(repo)?;
    let (root, _) = repo
        .read_commit(commit, ostree::gio::Cancellable::NONE)
        .with_context(|| format!("reading {commit}"))?;
    Ok(root
        .resolve_relative_path("usr/bin/ostree")
        .query_exists(ostree::gio::Cancellable::NONE))
}

/// Boot the published commit's machine, upgrade it to the candidate and reboot; the cases to add to
/// the tree/arch's suite (all under [`PREFIX`]) and the seconds the gate took.
async fn run(
    gate: Prepared,
    mut guest: GuestSettings,
    reporter: &mut (dyn Reporter + Send),
) -> Result<(Vec<TestCaseResult>, f64)> {
    let t = Instant::now();
    let public = gate.dir.join("public");
    let server = ScenarioServer::start(public.clone(), None).await?;
    let env = [
        format!("FEDOSTREE_SERVER=http://10.0.2.2:{}", server.addr.port()),
        format!("UPGRADE_REF={}", gate.ref_),
        format!("UPGRADE_FROM={}", gate.from),
        format!("UPGRADE_TO={}", gate.to),
    ];
    let (env_file, driver) = (gate.dir.join("upgrade.env"), gate.dir.join("upgrade-gate.sh"));
    fs_err::write(&env_file, env.join("\n") + "\n")?;
    fs_err::write(&driver, DRIVER)?;
    guest.boot = BootPath::Firmware;
    guest.timeout = guest.timeout.max(TIMEOUT);
    guest.fw_cfg = vec![
        ("upgrade".into(), FwCfgValue::File(driver)),
        ("env".into(), FwCfgValue::File(env_file)),
        (
            "gpg".into(),
            FwCfgValue::File(public.join("repo").join(PUBLIC_KEY_FILE)),
        ),
    ];
    let mut prefixed = Prefixed { inner: reporter };
    let booted = boot_and_test(&gate.tree, gate.arch, &gate.image, &gate.dir, guest, &mut prefixed).await;
    let log: Vec<String> = server.log.lines().into_iter().map(|(_, l)| l).collect();
    drop(server);
    fs_err::write(gate.dir.join("access.log"), log.join("\n") + "\n")?;
    let mut cases = match booted {
        Ok((suite, _)) => suite_cases(suite),
        Err(e) => vec![broken_case(format!("the upgrade's VM did not run: {e:#}"))],
    };
    let fallback = crate::lifecycle::delta_fallbacks(&public.join("repo"))?;
    let delta = delta_case(&log, &gate.from, &gate.to, &fallback);
    prefixed.inner.event(&gate.tree, gate.arch, &finished_event(&delta));
    cases.push(delta);
    drop(gate.copy);
    Ok((cases, gate.prepare_s + t.elapsed().as_secs_f64()))
}

/// The driver's test, as the runner names it.
const DRIVER_CASE: &str = "upgrade/from-published";

/// The cases of the upgrade's VM under [`PREFIX`]; a boot that broke (the candidate did not come up
/// after the upgrade, say) is a failed `upgrade/boot` with the error and the console's last lines. A
/// VM that never ran the driver (a published commit whose runner predates the gate runs its own tests
/// instead) upgraded nothing: that fails as the driver's case, so it cannot pass for an upgrade.
fn suite_cases(suite: SuiteResult) -> Vec<TestCaseResult> {
    let mut cases: Vec<TestCaseResult> = suite
        .cases
        .into_iter()
        .map(|mut c| {
            c.name = prefixed(&c.name);
            c
        })
        .collect();
    if let Some(e) = suite.infra_error {
        cases.push(broken_case(format!("{e}\n--- console ---\n{}", suite.console_tail)));
    } else if !cases.iter().any(|c| c.name == DRIVER_CASE) {
        cases.push(TestCaseResult {
            name: DRIVER_CASE.into(),
            output: "the published commit's test runner never ran the upgrade driver (fw_cfg `upgrade`): its \
                     fedostree-test-runner predates the upgrade gate, so nothing was upgraded"
                .into(),
            ..broken_case(String::new())
        });
    }
    cases
}

fn broken_case(output: String) -> TestCaseResult {
    TestCaseResult {
        name: format!("{PREFIX}boot"),
        status: Status::Fail,
        duration: Duration::ZERO,
        output,
        exit_code: None,
        subtests: vec![],
    }
}

/// `name` under [`PREFIX`] (the driver's own test already is).
fn prefixed(name: &str) -> String {
    match name.starts_with(PREFIX) {
        true => name.to_owned(),
        false => format!("{PREFIX}{name}"),
    }
}

/// The host's check: the upgrade took the static delta, its superblock and a part fetched. Loose
/// content objects beyond the delta's fallbacks are listed but do not fail it: libostree 2022.7 also
/// fetches some objects of an applied delta loose (ostreedev/ostree#2680; `ostree pull` into a bare
/// repository shows it on the host too).
fn delta_case(log: &[String], from: &Checksum, to: &Checksum, fallback: &[String]) -> TestCaseResult {
    use crate::lifecycle::requested;
    let ok = |l: &str| l.contains("\" 200 ") || l.contains("\" 206 ");
    let fetched = |want: &dyn Fn(&str) -> bool| log.iter().any(|l| ok(l) && requested(l).is_some_and(want));
    let superblock = fetched(&|p| p.starts_with("/repo/deltas/") && p.ends_with("/superblock"));
    let part =
        fetched(&|p| p.starts_with("/repo/deltas/") && p.rsplit('/').next().is_some_and(|n| n.parse::<u32>().is_ok()));
    let loose: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| requested(l).is_some_and(|p| p.ends_with(".filez") && !fallback.iter().any(|f| f == p)))
        .collect();
    TestCaseResult {
        name: DELTA_CASE.into(),
        status: if superblock && part { Status::Pass } else { Status::Fail },
        duration: Duration::ZERO,
        output: format!(
            "upgrade {} → {}: delta superblock fetched: {superblock}; a delta part fetched: {part}; content \
             objects fetched loose beyond the delta's {} fallback object(s): {}{}",
            from.short(),
            to.short(),
            fallback.len(),
            loose.len(),
            loose.first().map(|l| format!(" (first: {l})")).unwrap_or_default()
        ),
        exit_code: None,
        subtests: vec![],
    }
}

/// A host's check reported like a guest's test.
fn finished_event(case: &TestCaseResult) -> GuestEvent {
    use fedostree_harness::protocol::TestStatus;
    GuestEvent::TestFinished {
        name: case.name.clone(),
        status: match case.status {
            Status::Pass => TestStatus::Pass,
            _ => TestStatus::Fail,
        },
        exit_code: None,
        duration_ms: 0,
        output: case.output.clone(),
    }
}

/// Forwards the upgrade VM's events with their test names under [`PREFIX`].
struct Prefixed<'a> {
    inner: &'a mut (dyn Reporter + Send),
}

impl Reporter for Prefixed<'_> {
    fn event(&mut self, tree: &str, arch: Arch, e: &GuestEvent) {
        let mut e = e.clone();
        match &mut e {
            GuestEvent::TestStarted { name } | GuestEvent::TestFinished { name, .. } => *name = prefixed(name),
            GuestEvent::Subtest { test, .. } | GuestEvent::Rebooting { test, .. } => *test = prefixed(test),
            _ => {}
        }
        self.inner.event(tree, arch, &e);
    }
    fn suite_done(&mut self, _: &SuiteResult) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_under_the_prefix_once() {
        assert_eq!(prefixed("base/failed-units"), "upgrade/base/failed-units");
        assert_eq!(prefixed("upgrade/from-published"), "upgrade/from-published");
    }

    #[test]
    fn the_delta_case_needs_the_superblock_and_a_part() {
        let (from, to) = (Checksum::new("a".repeat(64)), Checksum::new("b".repeat(64)));
        let line = |p: &str| format!("127.0.0.1:1 \"GET {p}\" 200 10 0.1ms");
        let superblock = line("/repo/deltas/ab/cd-ef/superblock");
        let part = line("/repo/deltas/ab/cd-ef/0");
        let loose = line("/repo/objects/f1/dd.filez");
        let case = delta_case(&[superblock.clone(), part, loose], &from, &to, &[]);
        assert_eq!(case.status, Status::Pass, "{}", case.output);
        assert!(case.output.contains("fallback object(s): 1 (first:"), "{}", case.output);
        assert_eq!(delta_case(&[superblock], &from, &to, &[]).status, Status::Fail);
        assert_eq!(
            delta_case(&[line("/repo/objects/f1/dd.filez")], &from, &to, &[]).status,
            Status::Fail
        );
    }

    #[test]
    fn a_vm_that_never_ran_the_driver_fails_the_driver_case() {
        let case = |name: &str| TestCaseResult {
            name: name.into(),
            status: Status::Pass,
            duration: Duration::ZERO,
            output: String::new(),
            exit_code: Some(0),
            subtests: vec![],
        };
        let suite = |cases| SuiteResult {
            tree: "t".into(),
            arch: Arch::X86_64,
            commit: "c".into(),
            cases,
            infra_error: None,
            console_tail: String::new(),
        };
        let old_runner = suite_cases(suite(vec![case("fedostree/booted-commit")]));
        let driver = old_runner.iter().find(|c| c.name == DRIVER_CASE).unwrap();
        assert_eq!(driver.status, Status::Fail);
        assert!(driver.output.contains("predates the upgrade gate"));
        let ran = suite_cases(suite(vec![case(DRIVER_CASE), case("base/failed-units")]));
        assert_eq!(
            ran.iter().map(|c| (c.name.as_str(), c.status)).collect::<Vec<_>>(),
            [(DRIVER_CASE, Status::Pass), ("upgrade/base/failed-units", Status::Pass)]
        );
    }

    #[test]
    fn a_broken_upgrade_boot_is_a_failed_case_with_the_console() {
        let suite = SuiteResult {
            tree: "t".into(),
            arch: Arch::X86_64,
            commit: "c".into(),
            cases: vec![],
            infra_error: Some("guest never reported an end marker".into()),
            console_tail: "Kernel panic - not syncing".into(),
        };
        let cases = suite_cases(suite);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "upgrade/boot");
        assert_eq!(cases[0].status, Status::Fail);
        assert!(cases[0].output.contains("end marker") && cases[0].output.contains("Kernel panic"));
    }
}
