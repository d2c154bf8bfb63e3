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
//!
//! N+1 is a real update: `fedostree-release` gets a new release in the state's dev repository and the
//! tree is composed again, so its candidate ref moves to N+1 as after any compose (candidates are moved
//! before they are tested); the cached image stays at N until the next `fedostree test` of the tree,
//! which tests and publishes N+1 as usual.

use crate::guest::{boot_and_test, GuestSettings};
use crate::publish::{publish, PublishOptions};
use crate::run::{run_dir, TestOptions, TreeArchRun};
use crate::serve::ScenarioServer;
use crate::signing::{SigningKey, SigningSpec};
use crate::stages;
use anyhow::{Context, Result};
use fedostree_compose::loaded_tree::LoadedTree;
use fedostree_harness::protocol::{GuestEvent, TestStatus};
use fedostree_harness::qemu::{BootPath, FwCfgValue};
use fedostree_harness::report::Reporter;
use fedostree_harness::results::{Status, SuiteResult, TestCaseResult};
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::{Arch, Checksum};
use ostree::gio;
use std::path::Path;
use std::time::{Duration, Instant};

pub const SCENARIO: &str = crate::run::Scenario::Lifecycle.name();
/// The tree the scenario starts on and the one it switches to.
pub const BASE_TREE: &str = "base/minimal";
pub const SWITCH_TREE: &str = "server/docker-io";
/// The package whose release N+1 raises.
const BUMPED: &str = "fedostree-release";
/// How long the server stays dead after dying mid-pull; libostree's own retries give up before.
const SERVER_DOWN: Duration = Duration::from_secs(20);
/// Five boots and two pulls under TCG.
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
    for &arch in &opts.arches {
        runs.push(run_arch(state, opts, arch, &key, reporter).await?);
    }
    let suites: Vec<_> = runs.iter().map(|r| r.suite.clone()).collect();
    fedostree_harness::junit::write_junit(&suites, &state.runs().join(&opts.run_id).join("junit.xml"))?;
    Ok(runs)
}

/// The commits and repositories one arch's scenario serves.
struct Fixture {
    ref_: String,
    n: Checksum,
    n1: Checksum,
    switch_ref: String,
    switch_commit: Checksum,
}

async fn run_arch(
    state: &StateDir,
    opts: &TestOptions,
    arch: Arch,
    key: &SigningKey,
    reporter: &mut (dyn Reporter + Send),
) -> Result<TreeArchRun> {
    opts.cancel.check()?;
    let base = LoadedTree::load(&opts.sources.trees, BASE_TREE, &[arch])?;
    let (composed, image, mut timings) = stages::prepare(state, &opts.sources, &base, arch, opts.backend)?;
    let dir = run_dir(state, &opts.run_id, &composed.tree, arch);
    fs_err::create_dir_all(&dir)?;
    let public = dir.join("public");
    let t = Instant::now();
    let fx = build_fixture(state, &opts.sources, &base, arch, &image.commit, key, &public, &dir)?;
    timings.publish_s = Some(t.elapsed().as_secs_f64());

    let server = ScenarioServer::start(public.clone(), Some(("/repo/deltas/".into(), SERVER_DOWN))).await?;
    let guest = guest_settings(opts, &fx, server.addr.port(), &public, &dir)?;
    let t = Instant::now();
    let mut watch = RebootWatch {
        inner: reporter,
        first_reboot: None,
    };
    let booted = boot_and_test(&composed.tree, arch, &image, &dir, guest, &mut watch).await;
    let first_reboot = watch.first_reboot;
    timings.boot_s = t.elapsed().as_secs_f64();
    let log = server.log.lines();
    drop(server);
    let text: Vec<String> = log
        .iter()
        .map(|(at, l)| format!("{:>9.3}s {l}", at.duration_since(t).as_secs_f64()))
        .collect();
    fs_err::write(dir.join("access.log"), text.join("\n") + "\n")?;
    let (mut suite, times) = booted?;
    timings.record_guest(&times);
    // What only the server saw until the guest asked for its first reboot (the upgrade is boot 1's
    // last act); without that reboot there is no upgrade to judge.
    let upgrade_log: Vec<&str> = log
        .iter()
        .filter(|(at, _)| first_reboot.is_some_and(|end| *at < end))
        .map(|(_, l)| l.as_str())
        .collect();
    let fallback = delta_fallbacks(&public.join("repo"))?;
    for host_case in [
        delta_case(&upgrade_log, &fx, &fallback),
        all_parts_case(&suite, times.boots),
    ] {
        report_host_case(reporter, &composed.tree, arch, &host_case);
        suite.cases.push(host_case);
    }
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
        package_diff: None,
    })
}

/// The VM of the scenario: firmware boots, the scenario's environment (server, refs, commits) and the
/// public key through fw_cfg, written to `lifecycle.env` in `dir` too.
fn guest_settings(opts: &TestOptions, fx: &Fixture, port: u16, public: &Path, dir: &Path) -> Result<GuestSettings> {
    let env = [
        format!("FEDOSTREE_SERVER=http://10.0.2.2:{port}"),
        format!("LIFECYCLE_REF={}", fx.ref_),
        format!("LIFECYCLE_N={}", fx.n),
        format!("LIFECYCLE_N1={}", fx.n1),
        format!("LIFECYCLE_SWITCH_REF={}", fx.switch_ref),
        format!("LIFECYCLE_SWITCH_COMMIT={}", fx.switch_commit),
    ];
    let env_file = dir.join("lifecycle.env");
    fs_err::write(&env_file, env.join("\n") + "\n")?;
    Ok(GuestSettings {
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
        cancel: opts.cancel.clone(),
    })
}

/// A check the host made (not the guest) reported like a guest's test.
fn report_host_case(reporter: &mut (dyn Reporter + Send), tree: &str, arch: Arch, case: &TestCaseResult) {
    let status = match case.status {
        Status::Pass => TestStatus::Pass,
        _ => TestStatus::Fail,
    };
    let event = GuestEvent::TestFinished {
        name: case.name.clone(),
        status,
        exit_code: None,
        duration_ms: 0,
        output: case.output.clone(),
    };
    reporter.event(tree, arch, &event);
}

/// Forwards every event and notes when the guest first asked for a reboot.
struct RebootWatch<'a> {
    inner: &'a mut (dyn Reporter + Send),
    first_reboot: Option<Instant>,
}

impl Reporter for RebootWatch<'_> {
    fn event(&mut self, tree: &str, arch: Arch, e: &GuestEvent) {
        if matches!(e, GuestEvent::Rebooting { .. }) {
            self.first_reboot.get_or_insert_with(Instant::now);
        }
        self.inner.event(tree, arch, e);
    }
    fn suite_done(&mut self, s: &SuiteResult) {
        self.inner.suite_done(s);
    }
}

/// The requested path of an access-log line (`PEER "GET /path[ range]" …`).
pub(crate) fn requested(line: &str) -> Option<&str> {
    line.split('"').nth(1)?.split(' ').nth(1)
}

/// A static delta's superblock (ostree's `OSTREE_STATIC_DELTA_SUPERBLOCK_FORMAT`).
const SUPERBLOCK_TYPE: &str = "(a{sv}tayay(a(ayay))aa(uayttay)a(yaytt))";

/// Every static delta superblock of `repo`, parsed.
fn superblocks(repo: &Path) -> Result<Vec<ostree::glib::Variant>> {
    use ostree::glib;
    let ty = glib::VariantTy::new(SUPERBLOCK_TYPE)?;
    let mut out = Vec::new();
    let mut stack = vec![repo.join("deltas")];
    while let Some(dir) = stack.pop() {
        for e in fs_err::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "superblock") {
                out.push(glib::Variant::from_bytes_with_type(
                    &glib::Bytes::from_owned(fs_err::read(&p)?),
                    ty,
                ));
            }
        }
    }
    Ok(out)
}

/// The content objects the public repo's static deltas leave to be fetched loose ("fallback" objects:
/// ostree does not put large objects it cannot diff into delta parts), as `/repo/objects/xx/….filez`.
/// The last array of a superblock is the fallbacks `(object type, checksum, compressed size,
/// uncompressed size)`.
pub(crate) fn delta_fallbacks(repo: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for v in superblocks(repo)? {
        for fb in v.child_value(6).iter() {
            let kind: u8 = fb.child_value(0).get().context("fallback object type")?;
            let csum: Vec<u8> = fb.child_value(1).get().context("fallback checksum")?;
            let hex: String = csum.iter().map(|b| format!("{b:02x}")).collect();
            // OSTREE_OBJECT_TYPE_FILE = 1
            if kind == 1 && hex.len() == 64 {
                out.push(format!("/repo/objects/{}/{}.filez", &hex[..2], &hex[2..]));
            }
        }
    }
    Ok(out)
}

/// The host's assertion: the upgrade (N → N+1) fetched the static delta's superblock, the server died
/// halfway through a delta part, the client fetched that part again once the server was back, and no
/// loose content object was fetched but the delta's fallback objects.
fn delta_case(upgrade_log: &[&str], fx: &Fixture, fallback: &[String]) -> TestCaseResult {
    let ok = |l: &str| l.contains("\" 200 ") || l.contains("\" 206 ");
    let superblock = upgrade_log
        .iter()
        .any(|l| ok(l) && requested(l).is_some_and(|p| p.starts_with("/repo/deltas/") && p.ends_with("/superblock")));
    let died = upgrade_log
        .iter()
        .find(|l| l.contains("DIES halfway"))
        .and_then(|l| requested(l));
    let refetched = died.is_some_and(|part| upgrade_log.iter().any(|l| ok(l) && requested(l) == Some(part)));
    let loose: Vec<&&str> = upgrade_log
        .iter()
        .filter(|l| requested(l).is_some_and(|p| p.ends_with(".filez") && !fallback.iter().any(|f| f == p)))
        .collect();
    let pass = superblock && refetched && loose.is_empty();
    TestCaseResult {
        name: "host/upgrade-fetched-static-delta".into(),
        status: if pass { Status::Pass } else { Status::Fail },
        duration: Duration::ZERO,
        output: format!(
            "upgrade {} → {}: delta superblock fetched: {superblock}; the server died halfway through {}; \
             that part fetched again: {refetched}; loose content objects fetched beyond the delta's {} \
             fallback object(s): {}{}",
            fx.n,
            fx.n1,
            died.unwrap_or("nothing"),
            fallback.len(),
            loose.len(),
            loose.first().map(|l| format!(" (first: {l})")).unwrap_or_default()
        ),
        exit_code: None,
        subtests: vec![],
    }
}

/// The guest's lifecycle test ran its five parts: five boots, and assertions reported in the last.
fn all_parts_case(suite: &SuiteResult, boots: usize) -> TestCaseResult {
    const PARTS: u32 = 5;
    let last = suite
        .cases
        .iter()
        .find(|c| c.name == "fedostree-lifecycle/lifecycle")
        .and_then(|c| c.subtests.iter().map(|st| st.boot).max());
    let pass = boots == PARTS as usize && last == Some(PARTS);
    TestCaseResult {
        name: "host/five-boots".into(),
        status: if pass { Status::Pass } else { Status::Fail },
        duration: Duration::ZERO,
        output: format!("QEMU saw {boots} boot(s); the lifecycle test reported up to boot {last:?}; want {PARTS}"),
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
    base: &LoadedTree,
    arch: Arch,
    n: &str,
    key: &SigningKey,
    public: &Path,
    dir: &Path,
) -> Result<Fixture> {
    let ref_ = &base.ref_(arch)?;
    let _ = fs_err::remove_dir_all(public);
    let good = public.join("repo");
    let opts = PublishOptions {
        key,
        retain: 5,
        scratch_delta: false,
    };
    publish(&state.repo(), &good, ref_, n, &opts)?;
    tracing::info!(%arch, package = BUMPED, "N+1: one package changed");
    fedostree_devrepo::build(
        state,
        &fedostree_devrepo::DevRepoOptions {
            arches: vec![arch],
            bump: vec![BUMPED.to_owned()],
            source_dir: sources.checkout.clone(),
        },
    )?;
    let n1 = stages::compose(state, sources, base, arch)?.1;
    anyhow::ensure!(n1 != n, "bumping {BUMPED} did not change {BASE_TREE}'s commit");
    publish(&state.repo(), &good, ref_, &n1, &opts)?;
    let switch_tree = LoadedTree::load(&sources.trees, SWITCH_TREE, &[arch])?;
    let (switch, switch_commit) = stages::compose(state, sources, &switch_tree, arch)?;
    let switch_ref = switch.ref_;
    publish(&state.repo(), &good, &switch_ref, &switch_commit, &opts)?;

    // A commit signed by a key the client does not trust, listed in a summary it does trust.
    let other = SigningKey::resolve(&StateDir::new(dir.join("other-signer")), &SigningSpec::default())?;
    let evil = public.join("evil");
    publish(&state.repo(), &evil, ref_, &n1, &PublishOptions { key: &other, ..opts })?;
    crate::publish::sign_summary(&fedostree_compose::commit::open_or_create_repo(&evil)?, key)?;
    // An unsigned commit.
    let unsigned = public.join("unsigned");
    let repo = fedostree_compose::commit::open_or_create_repo(&unsigned)?;
    fedostree_compose::commit::pull_objects(&unsigned, &state.repo(), &n1)?;
    repo.set_ref_immediate(None, ref_, Some(&n1), gio::Cancellable::NONE)?;
    crate::publish::sign_summary(&repo, key)?;
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
        n: n.into(),
        n1,
        switch_ref,
        switch_commit,
    })
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

    /// A delta between two commits of a changed file: the superblock parses as ostree's format (its
    /// metadata names the endianness) and lists no fallback object (the file went into a part).
    #[test]
    fn fallback_objects_are_read_from_the_superblock() {
        use fedostree_util::cmd::CommandRunExt;
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        let ostree = |args: &[&str]| {
            std::process::Command::new("ostree")
                .arg(format!("--repo={}", repo.display()))
                .args(args)
                .run_get_string()
                .unwrap()
        };
        ostree(&["init", "--mode=archive"]);
        let tree = d.path().join("tree");
        fs_err::create_dir_all(&tree).unwrap();
        let mut commits = Vec::new();
        for text in ["one\n", "two\n"] {
            fs_err::write(tree.join("file"), text.repeat(1000)).unwrap();
            let dir = format!("--tree=dir={}", tree.display());
            commits.push(ostree(&["commit", "-b", "t", &dir]).trim().to_owned());
        }
        ostree(&["static-delta", "generate", "--from", &commits[0], "--to", &commits[1]]);
        assert_eq!(delta_fallbacks(&repo).unwrap(), Vec::<String>::new());
        assert!(
            superblocks_parse(&repo),
            "the superblock's metadata has ostree.endianness"
        );
    }

    fn superblocks_parse(repo: &Path) -> bool {
        let all = superblocks(repo).unwrap();
        !all.is_empty()
            && all
                .iter()
                .all(|v| ostree::glib::VariantDict::new(Some(&v.child_value(0))).contains("ostree.endianness"))
    }

    #[test]
    fn the_delta_case_needs_the_superblock_the_death_a_refetch_and_no_loose_objects() {
        let good = [
            "1.2.3.4 \"GET /repo/deltas/ab/cd-ef/superblock\" 200 1234 1.0ms",
            "1.2.3.4 \"GET /repo/deltas/ab/cd-ef/0\" DIES halfway through the response",
            "1.2.3.4 \"GET /repo/deltas/ab/cd-ef/0\" 200 99999 1.0ms",
        ];
        let c = delta_case(&good, &fx(), &[]);
        assert_eq!(c.status, Status::Pass, "{}", c.output);
        assert!(
            c.output.contains("halfway through /repo/deltas/ab/cd-ef/0"),
            "{}",
            c.output
        );
        let loose = [
            good[0],
            good[1],
            good[2],
            "1.2.3.4 \"GET /repo/objects/ab/cdef.filez\" 200 12 1.0ms",
        ];
        let c = delta_case(&loose, &fx(), &[]);
        assert_eq!(c.status, Status::Fail);
        assert!(c.output.contains("fallback object(s): 1"), "{}", c.output);
        let fallback = ["/repo/objects/ab/cdef.filez".to_owned()];
        assert_eq!(
            delta_case(&loose, &fx(), &fallback).status,
            Status::Pass,
            "a fallback object is the delta's"
        );
        assert_eq!(
            delta_case(&[good[0], good[2]], &fx(), &[]).status,
            Status::Fail,
            "the server never died"
        );
        assert_eq!(
            delta_case(&good[..2], &fx(), &[]).status,
            Status::Fail,
            "the part never came whole"
        );
        assert_eq!(
            delta_case(&[], &fx(), &[]).status,
            Status::Fail,
            "no reboot, no upgrade"
        );
    }
}
