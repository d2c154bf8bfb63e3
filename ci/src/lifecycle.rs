//! `fedostree test --tree base/minimal --scenario lifecycle`: the client side of the project's promise,
//! proven inside the VM with the tree's own ostree client, across reboots through real firmware.
//!
//! The host builds a public repository for the run (never `$STATE/public`: nothing here has passed
//! yet): the tree's commit N, then N+1 with one package changed (a static delta N → N+1), the
//! `server/docker-io` tree to switch to, and three repositories a client must refuse (a commit signed by
//! another key, an unsigned commit, a tampered summary). It serves them over QEMU's user network with a
//! server that dies halfway through the first static delta it sends, and boots the image (at N) through
//! U-Boot with the scenario's name, the addresses and the expected commits passed over fw_cfg. The
//! guest's `fedostree-lifecycle/lifecycle` test walks upgrade → reboot → rollback → reboot → switch →
//! reboot → switch back → reboot, asserting from inside each boot. The host adds what only it can see:
//! the upgrade fetched the static delta, not loose objects.

use crate::pipeline::{self, GuestSettings, TestOptions, TreeArchRun};
use crate::publish::{publish, PublishOptions};
use crate::serve::ScenarioServer;
use crate::signing::{SigningKey, SigningSpec};
use anyhow::{Context, Result};
use fedostree_compose::compose_tree::{self, ComposeOptions};
use fedostree_harness::qemu::{BootPath, FwCfgValue};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{Status, TestCaseResult};
use fedostree_util::state::{Sources, StateDir};
use ostree::gio;
use std::path::Path;
use std::time::{Duration, Instant};

pub const SCENARIO: &str = "lifecycle";
/// The tree the scenario starts on and the one it switches to.
pub const BASE_TREE: &str = "base/minimal";
pub const SWITCH_TREE: &str = "server/docker-io";
/// The package whose release N+1 raises.
const BUMPED: &str = "fedostree-release";
/// How long the server stays dead after dying mid-pull; libostree's own retries give up before.
const SERVER_DOWN: Duration = Duration::from_secs(20);
/// Five boots, two pulls and a container under TCG.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2400);

/// The scenario on every arch of `opts`, one after another (each VM takes the cores it can get).
pub async fn run(
    state: &StateDir,
    opts: &TestOptions,
    reporter: &mut (dyn Reporter + Send),
) -> Result<Vec<TreeArchRun>> {
    if opts.tree != BASE_TREE {
        fedostree_util::bail_input!(
            "--scenario {SCENARIO} starts from {BASE_TREE} and switches to {SWITCH_TREE}: give --tree {BASE_TREE}"
        );
    }
    let key = SigningKey::resolve(state, &opts.signing)?;
    let mut runs = Vec::new();
    for arch in &opts.arches {
        runs.push(run_arch(state, opts, arch, &key, reporter).await?);
    }
    let suites: Vec<_> = runs.iter().map(|r| r.suite.clone()).collect();
    fedostree_harness::junit::write_junit(&suites, &state.runs().join(&opts.run_id).join("junit.xml"))?;
    Ok(runs)
}

/// The commits and repositories one arch's scenario serves.
struct Fixture {
    ref_: String,
    n: String,
    n1: String,
    switch_ref: String,
    switch_commit: String,
}

async fn run_arch(
    state: &StateDir,
    opts: &TestOptions,
    arch: &str,
    key: &SigningKey,
    reporter: &mut (dyn Reporter + Send),
) -> Result<TreeArchRun> {
    let (composed, image, mut timings) = pipeline::prepare(state, &opts.sources, BASE_TREE, arch, opts.backend)?;
    let dir = pipeline::run_dir(state, &opts.run_id, &composed.tree, arch);
    fs_err::create_dir_all(&dir)?;
    let public = dir.join("public");
    let t = Instant::now();
    let fx = build_fixture(
        state,
        &opts.sources,
        arch,
        &image.commit,
        &composed.ref_,
        key,
        &public,
        &dir,
    )?;
    timings.publish_s = Some(t.elapsed().as_secs_f64());

    let server = ScenarioServer::start(public.clone(), Some(("/repo/deltas/".into(), SERVER_DOWN))).await?;
    let env = [
        format!("FEDOSTREE_SERVER=http://10.0.2.2:{}", server.addr.port()),
        format!("LIFECYCLE_REF={}", fx.ref_),
        format!("LIFECYCLE_N={}", fx.n),
        format!("LIFECYCLE_N1={}", fx.n1),
        format!("LIFECYCLE_SWITCH_REF={}", fx.switch_ref),
        format!("LIFECYCLE_SWITCH_COMMIT={}", fx.switch_commit),
    ];
    let env_file = dir.join("lifecycle.env");
    fs_err::write(&env_file, env.join("\n") + "\n")?;
    let guest = GuestSettings {
        accel: opts.accel,
        timeout: opts.vm_timeout.max(DEFAULT_TIMEOUT),
        vcpus: fedostree_harness::qemu::vcpus_for(1),
        boot: BootPath::Firmware,
        fw_cfg: vec![
            ("scenario".into(), FwCfgValue::Text(SCENARIO.into())),
            ("env".into(), FwCfgValue::File(env_file)),
            (
                "gpg".into(),
                FwCfgValue::File(public.join("repo").join(crate::publish::PUBLIC_KEY_FILE)),
            ),
        ],
    };
    let t = Instant::now();
    let booted = pipeline::boot_and_test(&composed.tree, arch, &image, &dir, guest, reporter).await;
    timings.boot_s = t.elapsed().as_secs_f64();
    let log = server.log.lines();
    drop(server);
    let text: Vec<String> = log
        .iter()
        .map(|(at, l)| format!("{:>9.3}s {l}", at.duration_since(t).as_secs_f64()))
        .collect();
    fs_err::write(dir.join("access.log"), text.join("\n") + "\n")?;
    let (mut suite, times) = booted?;
    timings.qemu_to_tests_s = times.to_tests.map(|d| d.as_secs_f64());
    timings.qemu_to_results_s = times.to_results.map(|d| d.as_secs_f64());
    timings.boot_path = times.boot_path.to_string();
    timings.boots = times.boots;
    // What only the server saw, up to the second boot (the upgrade is boot 1's last act).
    let boots: Vec<fedostree_harness::run::BootSection> =
        serde_json::from_slice(&fs_err::read(dir.join("boots.json"))?).unwrap_or_default();
    let upgrade_end = boots.get(1).map(|b| t + Duration::from_millis(b.started_ms));
    let upgrade_log: Vec<&str> = log
        .iter()
        .filter(|(at, _)| upgrade_end.is_none_or(|end| *at < end))
        .map(|(_, l)| l.as_str())
        .collect();
    let host_case = delta_case(&upgrade_log, &fx);
    reporter.event(
        &composed.tree,
        arch,
        &fedostree_harness::protocol::GuestEvent::TestFinished {
            name: host_case.name.clone(),
            status: match host_case.status {
                Status::Pass => fedostree_harness::protocol::TestStatus::Pass,
                _ => fedostree_harness::protocol::TestStatus::Fail,
            },
            exit_code: None,
            duration_ms: 0,
            output: host_case.output.clone(),
        },
    );
    suite.cases.push(host_case);
    fedostree_harness::junit::write_junit(std::slice::from_ref(&suite), &dir.join("junit.xml"))?;
    fs_err::write(dir.join("timings.json"), serde_json::to_string_pretty(&timings)? + "\n")?;
    reporter.suite_done(&suite);
    Ok(TreeArchRun {
        ref_: composed.ref_,
        commit: image.commit.clone(),
        run_dir: dir,
        suite,
        published: false,
        image,
        timings,
    })
}

/// The host's assertion: the upgrade (N → N+1) fetched the static delta's superblock and parts with
/// success, and no loose content object, after the server came back.
fn delta_case(upgrade_log: &[&str], fx: &Fixture) -> TestCaseResult {
    let ok = |l: &&&str| l.contains(" 200 ") || l.contains(" 206 ");
    let superblock = upgrade_log
        .iter()
        .filter(|l| l.contains("/repo/deltas/") && l.contains("/superblock"))
        .any(|l| ok(&l));
    let died = upgrade_log.iter().any(|l| l.contains("DIES halfway"));
    let loose: Vec<&&str> = upgrade_log.iter().filter(|l| l.contains(".filez")).collect();
    let pass = superblock && died && loose.is_empty();
    TestCaseResult {
        name: "host/upgrade-fetched-static-delta".into(),
        status: if pass { Status::Pass } else { Status::Fail },
        duration: Duration::ZERO,
        output: format!(
            "upgrade {} → {}: delta superblock fetched: {superblock}; the server died mid-delta once: {died}; \
             loose content objects fetched: {}{}",
            fx.n,
            fx.n1,
            loose.len(),
            loose.first().map(|l| format!(" (first: {l})")).unwrap_or_default()
        ),
        exit_code: None,
        subtests: vec![],
    }
}

/// Publish N, N+1 (one package bumped in the dev repository) and the switch tree into `public/repo`,
/// and the three repositories a client must refuse beside it.
#[allow(clippy::too_many_arguments)]
fn build_fixture(
    state: &StateDir,
    sources: &Sources,
    arch: &str,
    n: &str,
    ref_: &str,
    key: &SigningKey,
    public: &Path,
    dir: &Path,
) -> Result<Fixture> {
    let _ = fs_err::remove_dir_all(public);
    let good = public.join("repo");
    let opts = PublishOptions {
        key,
        retain: 5,
        scratch_delta: false,
    };
    publish(&state.repo(), &good, ref_, n, &opts)?;
    tracing::info!(arch, package = BUMPED, "N+1: one package changed");
    fedostree_devrepo::build(
        state,
        &fedostree_devrepo::DevRepoOptions {
            arches: vec![arch.to_owned()],
            bump: vec![BUMPED.to_owned()],
            source_dir: sources.checkout.clone(),
        },
    )?;
    let n1 = compose(state, sources, BASE_TREE, arch)?.1;
    anyhow::ensure!(n1 != n, "bumping {BUMPED} did not change {BASE_TREE}'s commit");
    publish(&state.repo(), &good, ref_, &n1, &opts)?;
    let (switch_ref, switch_commit) = compose(state, sources, SWITCH_TREE, arch)?;
    publish(&state.repo(), &good, &switch_ref, &switch_commit, &opts)?;

    // A commit signed by a key the client does not trust, listed in a summary it does trust.
    let other = SigningKey::resolve(&StateDir::new(dir.join("other-signer")), &SigningSpec::default())?;
    let evil = public.join("evil");
    publish(&state.repo(), &evil, ref_, &n1, &PublishOptions { key: &other, ..opts })?;
    sign_summary_again(&evil, key)?;
    // An unsigned commit.
    let unsigned = public.join("unsigned");
    let repo = fedostree_compose::commit::open_or_create_repo(&unsigned)?;
    fedostree_compose::commit::pull_objects(&unsigned, &state.repo(), &n1)?;
    repo.set_ref_immediate(None, ref_, Some(&n1), gio::Cancellable::NONE)?;
    sign_summary_again(&unsigned, key)?;
    // A summary changed after it was signed.
    let tampered = public.join("tampered");
    publish(&state.repo(), &tampered, ref_, &n1, &opts)?;
    let summary = tampered.join("summary");
    let mut bytes = fs_err::read(&summary)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs_err::write(&summary, bytes)?;
    Ok(Fixture {
        ref_: ref_.to_owned(),
        n: n.to_owned(),
        n1,
        switch_ref,
        switch_commit,
    })
}

/// Compose `tree` for `arch` (its dev repository made first); its ref and commit.
fn compose(state: &StateDir, sources: &Sources, tree: &str, arch: &str) -> Result<(String, String)> {
    fedostree_devrepo::ensure_for_tree(state, sources, tree, arch)?;
    let opts = ComposeOptions {
        tree: tree.into(),
        arch: arch.into(),
        ..ComposeOptions::default()
    };
    let r = compose_tree::compose(state, sources, &opts)?;
    let commit = r
        .commit
        .clone()
        .with_context(|| format!("{tree}: compose produced no commit"))?;
    Ok((r.ref_, commit))
}

/// Regenerate `repo`'s summary and sign it with `key` (whatever signed it before).
fn sign_summary_again(dir: &Path, key: &SigningKey) -> Result<()> {
    let repo = fedostree_compose::commit::open_or_create_repo(dir)?;
    let cancel = gio::Cancellable::NONE;
    repo.regenerate_summary(None, cancel)?;
    key.with_home(|home| {
        let home = home.map(|h| h.to_string_lossy().into_owned());
        Ok(repo.add_gpg_signature_summary(&[&key.key_id], home.as_deref(), cancel)?)
    })
    .with_context(|| format!("signing the summary of {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx() -> Fixture {
        Fixture {
            ref_: "r".into(),
            n: "a".into(),
            n1: "b".into(),
            switch_ref: "s".into(),
            switch_commit: "c".into(),
        }
    }

    #[test]
    fn the_delta_case_needs_the_superblock_the_death_and_no_loose_objects() {
        let good = [
            "1.2.3.4 \"GET /repo/deltas/ab/cd/DIES\" DIES halfway through the response",
            "1.2.3.4 \"GET /repo/deltas/ab/cd-ef/superblock\" 200 1234 1.0ms",
            "1.2.3.4 \"GET /repo/deltas/ab/cd-ef/0\" 200 99999 1.0ms",
        ];
        assert_eq!(delta_case(&good, &fx()).status, Status::Pass);
        let loose = [
            good[0],
            good[1],
            "1.2.3.4 \"GET /repo/objects/ab/cdef.filez\" 200 12 1.0ms",
        ];
        let c = delta_case(&loose, &fx());
        assert_eq!(c.status, Status::Fail);
        assert!(c.output.contains("loose content objects fetched: 1"), "{}", c.output);
        assert_eq!(
            delta_case(&good[1..], &fx()).status,
            Status::Fail,
            "the server never died"
        );
    }
}
