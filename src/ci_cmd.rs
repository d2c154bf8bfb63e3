//! `fedostree ci …`: the CI service's commands (the logic is in fedostree_ci::ci_run, history,
//! status_page, prune, resultsdb).

use crate::args::{arches, CiCommand, FlakyArg, PassArgs};
use crate::render::say;
use anyhow::{Context, Result};
use fedostree_ci::ci_run::{self, CiOptions, FlakyPolicy, Outcome};
use fedostree_ci::history::History;
use fedostree_util::cancel::Cancel;
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::{Arch, Exit};
use std::time::Duration;

/// Wait `d` between passes; false when a signal cut the wait short.
fn sleep_unless_cancelled(d: Duration, cancel: &Cancel) -> bool {
    let every = fedostree_util::poll::Every::fixed(Duration::from_millis(200));
    // Ends early when the token trips; what the wait returned says nothing the token does not.
    let _ = fedostree_util::poll::until(d, every, || Ok(cancel.is_cancelled().then_some(())));
    !cancel.is_cancelled()
}

impl PassArgs {
    fn options(&self, sources: Sources, cancel: &Cancel) -> CiOptions {
        CiOptions {
            trees: self.trees.clone(),
            arches: arches(self.arch, Arch::ALL),
            jobs: self
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            retries: self.retries,
            flaky: match self.flaky {
                FlakyArg::Pass => FlakyPolicy::Pass,
                FlakyArg::Fail => FlakyPolicy::Fail,
            },
            sources,
            accel: self.vm.accel(),
            backend: self.vm.backend(),
            vm_timeout: self.vm.vm_timeout(),
            signing: self.publishing.signing(),
            retain: self.publishing.retain as usize,
            scratch_delta: !self.publishing.no_scratch_delta,
            publish: !self.publishing.no_publish,
            upgrade: !self.publishing.no_upgrade,
            run_id: fedostree_pipeline::run::new_run_id(),
            cancel: cancel.clone(),
        }
    }
}

pub fn run(state: &StateDir, sources: impl Fn() -> Result<Sources>, cmd: CiCommand, cancel: &Cancel) -> Result<Exit> {
    match cmd {
        CiCommand::Run(pass) => one_pass(state, &pass.options(sources()?, cancel), pass.keep),
        CiCommand::Watch { pass, interval, passes } => watch(state, pass, interval, passes, sources, cancel),
        CiCommand::History { tree, limit, json } => history(state, tree, limit, json),
        CiCommand::Show { run, json } => show(state, run, json),
        CiCommand::Status { json } => status(state, json),
        CiCommand::Prune { keep } => prune(state, keep),
        CiCommand::Page => {
            let h = open(state)?;
            fedostree_ci::status_page::write(&h, &state.public())?;
            Ok(Exit::Ok)
        }
        CiCommand::Export { run } => export(state, run),
    }
}

/// `ci watch`: passes until `passes` or a signal; a pass that fails is reported and the next one runs.
fn watch(
    state: &StateDir,
    pass: PassArgs,
    interval: Duration,
    passes: Option<u64>,
    sources: impl Fn() -> Result<Sources>,
    cancel: &Cancel,
) -> Result<Exit> {
    let mut n = 0;
    loop {
        // A fresh run id per pass; a pass's failure is its result, not the end of the watch.
        match one_pass(state, &pass.options(sources()?, cancel), pass.keep) {
            Ok(code) => eprintln!("ci watch: pass {} ended with exit {}", n + 1, code as u8),
            Err(e) if fedostree_util::is_input_error(&e) || cancel.is_cancelled() => return Err(e),
            Err(e) => eprintln!("ci watch: pass {} failed: {e:#}", n + 1),
        }
        n += 1;
        if passes.is_some_and(|p| n >= p) {
            return Ok(Exit::Ok);
        }
        eprintln!("ci watch: next pass in {}", humantime::format_duration(interval));
        if !sleep_unless_cancelled(interval, cancel) {
            return Ok(Exit::Ok);
        }
    }
}

/// `ci history`: results, newest first.
fn history(state: &StateDir, tree: Option<String>, limit: usize, json: bool) -> Result<Exit> {
    let h = open(state)?;
    let rows = h.history(tree.as_deref(), limit)?;
    if json {
        say(serde_json::to_string_pretty(&rows)?)?;
    } else {
        for r in rows {
            say(format!(
                "{}  {:<18} {:<8} {:<6} {} {}{}",
                r.recorded_at,
                r.tree,
                r.arch,
                r.verdict,
                r.commit.short(),
                r.version.as_deref().unwrap_or("-"),
                if r.published { " published" } else { "" }
            ))?;
        }
    }
    Ok(Exit::Ok)
}

/// `ci show RUN`: one run's trees, their tests and attempts.
fn show(state: &StateDir, run: String, json: bool) -> Result<Exit> {
    let h = open(state)?;
    let Some(r) = h.run(&run)? else {
        fedostree_util::bail_input!("no run `{run}` in {}", ci_run::history_path(state).display());
    };
    let results = h.results_of_run(&run)?;
    if json {
        let results: Vec<_> = results
            .iter()
            .map(|res| {
                let tests = h.tests_of(res.id).unwrap_or_default();
                serde_json::json!({"result": res, "tests": tests})
            })
            .collect();
        let unchanged: Vec<_> = h
            .unchanged_of_run(&run)?
            .into_iter()
            .map(|(tree, arch, commit)| serde_json::json!({"tree": tree, "arch": arch, "commit": commit}))
            .collect();
        say(serde_json::to_string_pretty(
            &serde_json::json!({"run": r, "results": results, "up_to_date": unchanged}),
        )?)?;
        return Ok(Exit::Ok);
    }
    say(format!(
        "run {} ({}) started {} — {}",
        r.id, r.selection, r.started_at, r.status
    ))?;
    for (tree, arch, commit) in h.unchanged_of_run(&run)? {
        say(format!(
            "{tree} {arch}: up to date at {}",
            fedostree_util::checksum::short(&commit)
        ))?;
    }
    for res in results {
        say(format!(
            "{} {}: {} at {}{}",
            res.tree,
            res.arch,
            res.verdict.as_str().to_uppercase(),
            res.commit.short(),
            if res.published { ", published" } else { "" }
        ))?;
        if let Some(e) = &res.infra_error {
            say(format!("  infrastructure error: {e}"))?;
        }
        if let Some(u) = &res.upgrade {
            say(format!("  upgrade gate: {u}"))?;
        }
        for t in h.tests_of(res.id)? {
            let note = match (&t.denied, t.flaky) {
                (Some(why), _) => format!("  (denylisted: {why})"),
                (None, true) => "  (flaky)".into(),
                _ => String::new(),
            };
            say(format!(
                "  {:<7} {} [attempt {}] {:.1}s{note}",
                t.outcome.as_str().to_uppercase(),
                t.name,
                t.attempt,
                t.duration_s
            ))?;
        }
        say(format!("  artifacts: {}", res.artifacts))?;
    }
    Ok(Exit::Ok)
}

/// `ci status`: the latest verdict of every tree and arch, and the disk the state uses.
fn status(state: &StateDir, json: bool) -> Result<Exit> {
    let h = open(state)?;
    let latest = h.latest()?;
    let parts = [
        ("repo", state.repo()),
        ("public", state.public()),
        ("runs", state.runs()),
        ("images", state.images()),
        ("cache", state.root().join("cache")),
        ("history", ci_run::history_path(state)),
    ];
    let disk: Vec<(&str, u64)> = parts
        .iter()
        .map(|(n, p)| (*n, fedostree_ci::prune::disk_use(p)))
        .collect();
    if json {
        let disk: serde_json::Map<String, serde_json::Value> =
            disk.iter().map(|(n, b)| (n.to_string(), (*b).into())).collect();
        say(serde_json::to_string_pretty(
            &serde_json::json!({"latest": latest, "disk_bytes": disk}),
        )?)?;
        return Ok(Exit::Ok);
    }
    for r in &latest {
        say(format!(
            "{:<18} {:<8} {:<6} {} {} ({})",
            r.tree,
            r.arch,
            r.verdict,
            r.commit.short(),
            r.version.as_deref().unwrap_or("-"),
            r.recorded_at
        ))?;
    }
    let total: u64 = disk.iter().map(|(_, b)| b).sum();
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let each: Vec<String> = disk.iter().map(|(n, b)| format!("{n} {}", mb(*b))).collect();
    say(format!("disk: {} ({})", mb(total), each.join(", ")))?;
    Ok(Exit::Ok)
}

/// `ci prune`: keep the newest runs and what they need.
fn prune(state: &StateDir, keep: usize) -> Result<Exit> {
    let mut h = open(state)?;
    let pruned = fedostree_ci::prune::prune(state, &mut h, keep)?;
    fedostree_ci::status_page::write(&h, &state.public())?;
    eprintln!(
        "ci prune: {} runs and {} candidate commits removed",
        pruned.runs.len(),
        pruned.commits.len()
    );
    Ok(Exit::Ok)
}

/// `ci export`: a run's results as ResultsDB results.
fn export(state: &StateDir, run: Option<String>) -> Result<Exit> {
    let h = open(state)?;
    let run = match run {
        Some(r) => r,
        None => match h.runs(1)?.into_iter().next() {
            Some(r) => r.id,
            None => fedostree_util::bail_input!("the CI history has no runs yet"),
        },
    };
    for line in fedostree_ci::resultsdb::export_run(&h, &run)? {
        say(line)?;
    }
    Ok(Exit::Ok)
}

fn open(state: &StateDir) -> Result<History> {
    History::open(&ci_run::history_path(state))
}

fn one_pass(state: &StateDir, opts: &CiOptions, keep: usize) -> Result<Exit> {
    use fedostree_harness::report::TerminalReporter;
    let mut reporter = TerminalReporter::stderr();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let t = std::time::Instant::now();
    let summary = rt.block_on(ci_run::run_pass(state, opts, &mut reporter))?;
    let mut h = open(state)?;
    fedostree_ci::prune::prune(state, &mut h, keep).context("pruning after the run")?;
    let page = std::time::Instant::now();
    fedostree_ci::status_page::write(&h, &state.public()).context("writing the status page")?;
    let (mut up, mut tested) = (0, 0);
    for (_, _, o) in &summary.outcomes {
        match o {
            Outcome::UpToDate { .. } => up += 1,
            Outcome::Tested { .. } => tested += 1,
        }
    }
    eprintln!(
        "ci run {}: {tested} tested, {up} up to date in {:.1}s; status page {} ({:.2}s)",
        summary.run_id,
        t.elapsed().as_secs_f64(),
        fedostree_ci::status_page::status_dir(&state.public())
            .join("index.html")
            .display(),
        page.elapsed().as_secs_f64()
    );
    Ok(summary.exit())
}
