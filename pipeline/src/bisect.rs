//! `fedostree bisect --tree T --good C --bad C [--test NAME…|--script FILE]`: the first bad commit of
//! a tree's history, by binary search over the ostree parent chain from bad back to good.
//!
//! Each step deploys its candidate offline into a throwaway copy of the tree's cached image (the
//! objects are local already; only the deployment changes), boots it and runs the named installed
//! tests (all of them by default) or the user's script in the guest. As `git bisect run`: a script's
//! exit 0 is good, 125 skips the commit, anything else is bad. A VM that breaks is booted once more;
//! if it breaks again the commit is skipped, never counted as bad.

use crate::guest::{boot_and_test, GuestSettings};
use crate::stages;
use anyhow::{Context, Result};
use fedostree_compose::commit;
use fedostree_compose::dbdiff::{self, PkgDiff};
use fedostree_harness::qemu::{Accel, FwCfgValue};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{Status, SuiteResult};
use fedostree_images::{throwaway, Backend};
use fedostree_util::events::Stage;
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::{checksum, Arch, InputError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The remote `--repo URL` is pulled through.
const REMOTE: &str = "fedostree-bisect";

#[derive(Debug, Clone)]
pub struct BisectOptions {
    pub tree: String,
    pub arch: Arch,
    pub sources: Sources,
    pub good: String,
    pub bad: String,
    /// Installed tests (`suite/name`) that decide; all of them when empty and there is no script.
    pub tests: Vec<String>,
    /// A program run in the guest instead of the installed tests.
    pub script: Option<PathBuf>,
    /// Take the history from a published repository (`fedostree serve`) instead of the candidate repo.
    pub repo_url: Option<String>,
    pub accel: Option<Accel>,
    pub backend: Backend,
    pub vm_timeout: Duration,
    pub run_id: String,
    /// Tripped by SIGINT/SIGTERM: the step's VM stops and the bisection ends.
    pub cancel: fedostree_util::cancel::Cancel,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitInfo {
    pub commit: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Good,
    Bad,
    Skip,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub commit: String,
    pub version: Option<String>,
    pub verdict: Verdict,
    /// Why: the tests that failed, the script's exit code, the infrastructure error.
    pub reason: String,
    pub image_s: f64,
    pub boot_s: f64,
    /// VMs booted for this step (2 when the first broke).
    pub boots: usize,
    pub artifacts: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BisectReport {
    pub tree: String,
    pub arch: Arch,
    #[serde(rename = "ref")]
    pub ref_: String,
    pub good: CommitInfo,
    pub bad: CommitInfo,
    /// Commits after good up to bad, bad included: the first bad one is one of them.
    pub candidates: usize,
    /// ⌈log2 candidates⌉: the boots a bisect without skips needs at most.
    pub max_steps: usize,
    pub first_bad: Option<CommitInfo>,
    /// When skipped commits leave it open: every commit the first bad one could be.
    pub could_be: Vec<CommitInfo>,
    /// `db diff` of the first bad commit's parent and the commit.
    pub package_diff: Option<PkgDiff>,
    pub steps: Vec<Step>,
    pub run_dir: PathBuf,
}

impl BisectReport {
    /// The terminal rendering.
    pub fn render(&self) -> String {
        let mut out = format!(
            "bisect {} {}: {} commits after good {} up to bad {}; at most {} steps without skips\n",
            self.tree,
            self.arch,
            self.candidates,
            short(&self.good),
            short(&self.bad),
            self.max_steps
        );
        for (i, s) in self.steps.iter().enumerate() {
            out += &format!(
                "step {}: {} {:<5} {} (deploy {:.1}s, boot {:.1}s)\n",
                i + 1,
                short(&CommitInfo {
                    commit: s.commit.clone(),
                    version: s.version.clone()
                }),
                format!("{:?}", s.verdict).to_lowercase(),
                s.reason,
                s.image_s,
                s.boot_s
            );
        }
        match &self.first_bad {
            Some(c) => {
                out += &format!(
                    "first bad commit: {} version {}\n",
                    c.commit,
                    c.version.as_deref().unwrap_or("-")
                );
                if let Some(d) = &self.package_diff {
                    out += "package changes from its parent:\n";
                    out += &d.render();
                }
            }
            None => {
                out += "only skipped commits are left: the first bad commit is one of\n";
                for c in &self.could_be {
                    out += &format!("  {}\n", short(c));
                }
            }
        }
        out += &format!("artifacts: {}\n", self.run_dir.display());
        out
    }
}

fn short(c: &CommitInfo) -> String {
    match &c.version {
        Some(v) => format!("{} ({v})", &c.commit[..12.min(c.commit.len())]),
        None => c.commit[..12.min(c.commit.len())].to_string(),
    }
}

/// Which index to test next: the untested, unskipped one nearest the middle of (`lo`, `hi`), where
/// `lo` is the last known good (-1: the good commit itself) and `hi` the first known bad.
pub fn next_probe(lo: isize, hi: isize, skipped: &std::collections::BTreeSet<isize>) -> Option<isize> {
    let mid = lo + (hi - lo) / 2;
    let open = |i: isize| i > lo && i < hi && !skipped.contains(&i);
    (0..hi - lo).flat_map(|d| [mid - d, mid + d]).find(|&i| open(i))
}

/// ⌈log2 n⌉.
pub fn max_steps(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

/// The commits after `good` up to `bad` (oldest first), by the parent chain. A chain that breaks
/// before reaching `good` names the commits that are gone.
pub fn chain(repo: &ostree::Repo, good: &str, bad: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    let mut c = bad.to_string();
    while c != good {
        out.push(c.clone());
        let Some(parent) = commit::parent_of(repo, &c)? else {
            fedostree_util::bail_input!(
                "{good} is not an ancestor of {bad}: the history of {bad} ends at {c} without reaching it"
            );
        };
        if commit::commit_metadata(repo, &parent).is_err() {
            fedostree_util::bail_input!(
                "the history between {good} and {bad} is incomplete: {parent}, the parent of {c}, is gone \
                 (pruned by the retention: `fedostree ci prune --keep`, the public repo's --retain), so the \
                 commits before it cannot be reached; the {} commits from {bad} back to {c} are here",
                out.len()
            );
        }
        c = parent;
    }
    out.reverse();
    Ok(out)
}

fn info(repo: &ostree::Repo, c: &str) -> CommitInfo {
    CommitInfo {
        commit: c.to_string(),
        version: commit::commit_metadata(repo, c)
            .ok()
            .and_then(|md| commit::metadata_string(&md, "version")),
    }
}

/// A commit checksum, a unique prefix of one, or a ref, in the state's repo.
fn resolve(repo: &ostree::Repo, rev: &str, what: &str) -> Result<String> {
    commit::resolve(repo, rev)
        .ok()
        .flatten()
        .filter(|c| commit::commit_metadata(repo, c).is_ok())
        .ok_or_else(|| InputError::new(format!("--{what} {rev}: no such commit or ref in the repository")))
}

/// `--repo URL`: the tree's ref with its whole history, pulled from a published repository into the
/// state's repo, signatures checked with the key the repository publishes beside itself.
fn pull_history(state: &StateDir, url: &str, ref_: &str) -> Result<()> {
    use fedostree_util::cmd::CommandRunExt;
    let repo_path = state.repo();
    commit::open_or_create_repo(&repo_path)?;
    let key_url = format!("{}/{}", url.trim_end_matches('/'), crate::publish::PUBLIC_KEY_FILE);
    let key = fedostree_compose::repo::read_url(&key_url)
        .map_err(|e| InputError::new(format!("--repo {url}: its public key {key_url}: {e:#}")))?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("key.gpg");
    fs_err::write(&key_file, key)?;
    let ostree = || stages::ostree_cli(&repo_path);
    ostree()
        .args(["remote", "add", "--force", "--set=gpg-verify=true"])
        .arg(format!("--gpg-import={}", key_file.display()))
        .args([REMOTE, url])
        .run()
        .with_context(|| format!("adding {url} as a remote"))?;
    ostree()
        .args(["pull", "--depth=-1", REMOTE, ref_])
        .run()
        .map_err(|e| InputError::new(format!("pulling {ref_} from {url}: {e:#}")))?;
    Ok(())
}

/// The fw_cfg items that make the guest run what decides.
fn decider(opts: &BisectOptions) -> Result<Vec<(String, FwCfgValue)>> {
    Ok(match (&opts.script, opts.tests.is_empty()) {
        (Some(script), _) => {
            if !script.is_file() {
                fedostree_util::bail_input!("--script {}: no such file", script.display());
            }
            vec![("script".into(), FwCfgValue::File(script.canonicalize()?))]
        }
        (None, false) => vec![("only".into(), FwCfgValue::Text(opts.tests.join("\n") + "\n"))],
        (None, true) => vec![],
    })
}

/// What one boot's suite says about its commit.
pub fn judge(suite: &SuiteResult, script: bool) -> (Verdict, String) {
    if let Some(e) = &suite.infra_error {
        return (Verdict::Skip, format!("infrastructure error: {e}"));
    }
    if script {
        let Some(case) = suite.cases.iter().find(|c| c.name == "bisect/script") else {
            return (Verdict::Skip, "the script did not run".into());
        };
        return match (case.status, case.exit_code) {
            (Status::Timeout, _) => (Verdict::Bad, "the script timed out".into()),
            (_, Some(0)) => (Verdict::Good, "the script exited 0".into()),
            (_, Some(125)) => (Verdict::Skip, "the script exited 125 (skip)".into()),
            (_, Some(n)) => (Verdict::Bad, format!("the script exited {n}")),
            (_, None) => (Verdict::Bad, "the script was killed".into()),
        };
    }
    if suite.cases.is_empty() {
        return (Verdict::Skip, "none of the tests exists in this commit".into());
    }
    let failed: Vec<&str> = suite
        .cases
        .iter()
        .filter(|c| matches!(c.status, Status::Fail | Status::Timeout))
        .map(|c| c.name.as_str())
        .collect();
    if !failed.is_empty() {
        return (Verdict::Bad, format!("failed: {}", failed.join(", ")));
    }
    if suite.cases.iter().all(|c| c.status == Status::Skip) {
        return (Verdict::Skip, "every test skipped".into());
    }
    (Verdict::Good, format!("{} passed", suite.cases.len()))
}

/// Run the bisection.
pub async fn bisect(
    state: &StateDir,
    opts: &BisectOptions,
    reporter: &mut (dyn Reporter + Send),
) -> Result<BisectReport> {
    let ref_ = fedostree_compose::loaded_tree::LoadedTree::load(&opts.sources.trees, &opts.tree, &[opts.arch])?
        .ref_(opts.arch)?;
    let fw_cfg = decider(opts)?;
    if let Some(url) = &opts.repo_url {
        pull_history(state, url, &ref_)?;
    }
    let repo = commit::open_or_create_repo(&state.repo())?;
    let good = resolve(&repo, &opts.good, "good")?;
    let bad = resolve(&repo, &opts.bad, "bad")?;
    if good == bad {
        fedostree_util::bail_input!("--good and --bad are the same commit {good}");
    }
    let commits = chain(&repo, &good, &bad)?;
    // The cached image every step copies: what the tree's ref says, made if there is none yet.
    let tip = match commit::resolve(&repo, &ref_)? {
        Some(c) => c,
        None => commit::resolve(&repo, &format!("{REMOTE}:{ref_}"))?.unwrap_or_else(|| bad.clone()),
    };
    let base_image = stages::update_image(state, &opts.tree, opts.arch, &tip, opts.backend)?;
    drop(base_image);
    let run_dir = state
        .runs()
        .join(&opts.run_id)
        .join("bisect")
        .join(&opts.tree)
        .join(opts.arch);
    fs_err::create_dir_all(&run_dir)?;
    let mut report = BisectReport {
        tree: opts.tree.clone(),
        arch: opts.arch,
        ref_,
        good: info(&repo, &good),
        bad: info(&repo, &bad),
        candidates: commits.len(),
        max_steps: max_steps(commits.len()),
        first_bad: None,
        could_be: vec![],
        package_diff: None,
        steps: vec![],
        run_dir: run_dir.clone(),
    };
    let scope = fedostree_util::events::Scope::new(&opts.tree, opts.arch);
    scope.notice(
        Stage::Bisect,
        report.render().lines().next().unwrap_or_default().to_string(),
    );
    let (mut lo, mut hi) = (-1isize, commits.len() as isize - 1);
    let mut skipped = std::collections::BTreeSet::new();
    while let Some(i) = next_probe(lo, hi, &skipped) {
        let c = &commits[i as usize];
        let step = test_commit(state, opts, c, &fw_cfg, &run_dir, report.steps.len() + 1, reporter).await?;
        let step = Step {
            version: info(&repo, c).version,
            ..step
        };
        let n = report.steps.len() + 1;
        let what = format!("step {n}: {} {:?}: {}", checksum::short(c), step.verdict, step.reason);
        scope.step(Stage::Bisect, what, None);
        match step.verdict {
            Verdict::Good => lo = i,
            Verdict::Bad => hi = i,
            Verdict::Skip => {
                skipped.insert(i);
            }
        }
        report.steps.push(step);
    }
    conclude(&repo, &commits, lo, hi, &mut report)?;
    fs_err::write(
        run_dir.join("bisect.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    Ok(report)
}

/// The search ended between `lo` (good) and `hi` (bad): one commit apart names the first bad one and
/// its package changes; skipped commits between them leave a range.
fn conclude(repo: &ostree::Repo, commits: &[String], lo: isize, hi: isize, report: &mut BisectReport) -> Result<()> {
    if hi - lo == 1 {
        let first = &commits[hi as usize];
        report.first_bad = Some(info(repo, first));
        if let Some(parent) = commit::parent_of(repo, first)? {
            report.package_diff = Some(dbdiff::diff(repo, &parent, first)?);
        }
    } else {
        report.could_be = ((lo + 1)..=hi).map(|i| info(repo, &commits[i as usize])).collect();
    }
    Ok(())
}

/// One step: deploy `commit` into a fresh throwaway copy of the cached image and boot it (twice if the
/// first VM broke).
async fn test_commit(
    state: &StateDir,
    opts: &BisectOptions,
    commit: &str,
    fw_cfg: &[(String, FwCfgValue)],
    run_dir: &std::path::Path,
    n: usize,
    reporter: &mut (dyn Reporter + Send),
) -> Result<Step> {
    let t = Instant::now();
    let copy = throwaway::seed(
        state,
        &opts.tree,
        opts.arch,
        &throwaway::new_id(&format!("bisect{n}-{}", opts.arch)),
    )?;
    let image = stages::update_image(state, copy.tree(), opts.arch, commit, opts.backend)?;
    let image_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut boots = 0;
    let artifacts = run_dir.join(format!("step-{n}-{}", &commit[..12]));
    let (verdict, reason) = loop {
        boots += 1;
        let dir = match boots {
            1 => artifacts.clone(),
            b => artifacts.join(format!("boot-{b}")),
        };
        let guest = GuestSettings {
            accel: opts.accel,
            timeout: opts.vm_timeout,
            vcpus: fedostree_harness::qemu::vcpus_for(1),
            boot: fedostree_harness::qemu::BootPath::DirectKernel,
            fw_cfg: fw_cfg.to_vec(),
            cancel: opts.cancel.clone(),
        };
        let suite = match boot_and_test(&opts.tree, opts.arch, &image, &dir, guest, reporter).await {
            Ok((suite, _)) => suite,
            Err(e) => SuiteResult::broken(&opts.tree, opts.arch, &commit.into(), &e, String::new()),
        };
        let judged = judge(&suite, opts.script.is_some());
        // A broken VM says nothing about the commit: once more, in a fresh VM.
        if suite.infra_error.is_none() || boots == 2 || opts.cancel.is_cancelled() {
            break judged;
        }
        let what = format!("step {n}: {}; booting once more", judged.1);
        fedostree_util::events::Scope::new(&opts.tree, opts.arch).notice(fedostree_util::events::Stage::Bisect, what);
    };
    drop(copy);
    opts.cancel.check()?;
    Ok(Step {
        commit: commit.into(),
        version: None,
        verdict,
        reason,
        image_s,
        boot_s: t.elapsed().as_secs_f64(),
        boots,
        artifacts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a bisection over `n` commits whose first bad one is `first_bad`, skipping `skip`.
    fn simulate(n: usize, first_bad: usize, skip: &[usize]) -> (Option<usize>, usize) {
        let (mut lo, mut hi) = (-1isize, n as isize - 1);
        let mut skipped = std::collections::BTreeSet::new();
        let mut steps = 0;
        while let Some(i) = next_probe(lo, hi, &skipped) {
            steps += 1;
            if skip.contains(&(i as usize)) {
                skipped.insert(i);
            } else if i as usize >= first_bad {
                hi = i;
            } else {
                lo = i;
            }
        }
        ((hi - lo == 1).then_some(hi as usize), steps)
    }

    #[test]
    fn finds_the_first_bad_commit_in_at_most_log2_steps() {
        for n in 1..=40 {
            for first_bad in 0..n {
                let (found, steps) = simulate(n, first_bad, &[]);
                assert_eq!(found, Some(first_bad), "n={n}");
                assert!(steps <= max_steps(n), "n={n} first_bad={first_bad}: {steps} steps");
            }
        }
        assert_eq!(
            [1, 2, 3, 4, 7, 8, 9, 16, 17].map(max_steps),
            [0, 1, 2, 2, 3, 3, 4, 4, 5]
        );
    }

    #[test]
    fn a_broken_vm_is_never_bad_and_scripts_decide_by_exit_code() {
        use crate::run::tests::suite;
        let mut infra = suite(Arch::X86_64, &[Status::Fail], Some("no end marker"));
        assert_eq!(judge(&infra, false).0, Verdict::Skip);
        assert_eq!(judge(&infra, true).0, Verdict::Skip);
        infra.infra_error = None;
        assert_eq!(judge(&infra, false), (Verdict::Bad, "failed: fedostree/t0".to_string()));
        assert_eq!(
            judge(&suite(Arch::X86_64, &[Status::Pass, Status::Skip], None), false).0,
            Verdict::Good
        );
        assert_eq!(
            judge(&suite(Arch::X86_64, &[Status::Skip], None), false).0,
            Verdict::Skip
        );
        assert_eq!(judge(&suite(Arch::X86_64, &[], None), false).0, Verdict::Skip);
        let script = |status, code| {
            let mut s = suite(Arch::X86_64, &[status], None);
            s.cases[0].name = "bisect/script".into();
            s.cases[0].exit_code = code;
            judge(&s, true).0
        };
        assert_eq!(script(Status::Pass, Some(0)), Verdict::Good);
        assert_eq!(script(Status::Fail, Some(125)), Verdict::Skip);
        // 77 is a GNOME skip to the runner, but a bad commit to `git bisect run` semantics.
        assert_eq!(script(Status::Skip, Some(77)), Verdict::Bad);
        assert_eq!(script(Status::Fail, Some(1)), Verdict::Bad);
        assert_eq!(script(Status::Timeout, Some(143)), Verdict::Bad);
        assert_eq!(script(Status::Fail, None), Verdict::Bad);
    }

    #[test]
    fn skipped_commits_are_stepped_around_or_left_open() {
        // A skipped neighbour of the first bad one: still found.
        assert_eq!(simulate(16, 9, &[7]).0, Some(9));
        // The commit before the first bad one is skipped: either could be first.
        assert_eq!(simulate(16, 9, &[8]).0, None);
    }
}
