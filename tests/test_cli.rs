//! `fedostree test` end to end through the real binary: compose, offline image update, real QEMU
//! boots on both architectures, installed-tests, gate and publish; the real trees through `fedostree ci
//! run`, as CI tests them.

use fedostree_util::prereq::{run_tests, Prereq, Test, IMAGE_BACKEND};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{fedostree, state_dir};
#[path = "../compose/tests/common/mod.rs"]
mod pkg;

fn main() {
    let vms = [IMAGE_BACKEND, &[Prereq::Qemu("x86_64"), Prereq::Qemu("aarch64")]].concat();
    run_tests(vec![
        Test::new(
            "test_publishes_passing_trees_and_gates_failing_ones",
            &vms,
            test_publishes_passing_trees_and_gates_failing_ones,
        ),
        Test::new(
            "real_trees_boot_systemd_and_pass_on_both_arches",
            &[&vms[..], &[Prereq::Binary("dnf")]].concat(),
            real_trees_boot_systemd_and_pass_on_both_arches,
        ),
        Test::new("bad_arguments_are_input_errors", &[], bad_arguments_are_input_errors),
    ]);
}

/// The terminal report's test lines (`    PASS [   1.234s] tree::arch::suite/test`): id → status.
/// A test reported twice is a failure of the report itself.
fn report_lines(stderr: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in stderr.lines() {
        let Some((label, rest)) = line.trim_start().split_once(" [") else {
            continue;
        };
        let Some((_, id)) = rest.split_once("] ") else {
            continue;
        };
        if ["PASS", "FAIL", "SKIP", "TIMEOUT", "ERROR"].contains(&label) && id.contains("::") {
            assert!(
                out.insert(id.to_string(), label.to_string()).is_none(),
                "{id} reported twice:\n{stderr}"
            );
        }
    }
    out
}

/// What the report must say for `tree` on `arches`: every installed test of the `suite` package, each
/// passing except skip-example (exit 77) and the broken suite's intentional failure.
fn expected_lines(tree: &str, suite: &str, arches: &[&str]) -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests-suite/installed-tests")
        .join(suite);
    let mut tests: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no installed tests in {}", dir.display());
    let mut out = BTreeMap::new();
    for arch in arches {
        for t in &tests {
            let status = match t.as_str() {
                "skip-example" => "SKIP",
                // The planted flake fails on a first attempt, and `fedostree test` makes only one.
                "intentional-failure" | "flaky-on-first-attempt" => "FAIL",
                _ => "PASS",
            };
            out.insert(format!("{tree}::{arch}::{suite}/{t}"), status.to_string());
        }
    }
    out
}

/// The base checks every boot of `tree` reports after its tests (tests-suite/guest/base-checks.sh): the
/// dev trees have no systemd, so only the kernel's checks apply there; the real trees have SELinux.
fn base_lines(tree: &str, arches: &[&str]) -> BTreeMap<String, String> {
    let systemd = !tree.starts_with("dev/");
    let selinux = systemd;
    let mut out = BTreeMap::new();
    for arch in arches {
        for (check, needs_systemd) in [
            ("failed-units", true),
            ("not-emergency", true),
            ("avc-denials", true),
            ("core-dumps", false),
            ("kernel-warnings", false),
            ("journal-errors", true),
        ] {
            let applies = (systemd || !needs_systemd) && (selinux || check != "avc-denials");
            let status = if applies { "PASS" } else { "SKIP" };
            out.insert(format!("{tree}::{arch}::base/{check}"), status.to_string());
        }
    }
    out
}

/// The `Summary [...] N tests run: …` line, without the time.
fn summary(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Summary ["))
        .unwrap_or_else(|| panic!("{stderr}"));
    line.split_once("] ").unwrap().1.to_string()
}

fn ostree(repo: &Path, args: &[&str]) -> Output {
    Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap()
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn test_publishes_passing_trees_and_gates_failing_ones() {
    let state = state_dir("test-e2e");
    let public = state.join("public");

    // The main job: both arches pass and are published. (Deltas from scratch are xz-compressed by
    // ostree at about a minute per arch even for this tree: publish's own test covers them.)
    let out = fedostree(
        &state,
        &["test", "--tree", "dev/minimal", "--arch", "all", "--no-scratch-delta"],
    );
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    let mut want = expected_lines("dev/minimal", "fedostree", &["x86_64", "aarch64"]);
    want.extend(base_lines("dev/minimal", &["x86_64", "aarch64"]));
    assert_eq!(report_lines(&err), want, "{err}");
    let skipped = want.values().filter(|s| *s == "SKIP").count();
    assert_eq!(
        summary(&err),
        format!(
            "{} tests run: {} passed, {skipped} skipped",
            want.len(),
            want.len() - skipped
        ),
        "{err}"
    );
    for arch in ["x86_64", "aarch64"] {
        let reff = format!("fedostree/dev/{arch}/minimal");
        let tested = String::from_utf8(ostree(&state.join("repo"), &["rev-parse", &reff]).stdout).unwrap();
        let published = String::from_utf8(ostree(&public, &["rev-parse", &reff]).stdout).unwrap();
        assert_eq!(tested, published);
        let junit = std::fs::read_dir(state.join("runs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join(format!("dev/minimal/{arch}/junit.xml"));
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.contains("fedostree/tap-example"), "{xml}");
    }
    assert!(public.join("summary").exists());
    assert!(err.lines().any(|l| l.starts_with("run directory: ")), "{err}");
    // A client pulls each arch's published commit over HTTP (object by object: there is no delta to it).
    let client = PublicClient::start(&state);
    for arch in ["x86_64", "aarch64"] {
        let reff = format!("fedostree/dev/{arch}/minimal");
        let first = String::from_utf8(ostree(&public, &["rev-parse", &reff]).stdout).unwrap();
        client.pull(&reff, first.trim(), false);
    }

    // A boot never changes the cached image: run again (nothing to update) and compare bytes.
    let disk = state.join("images/dev/minimal/x86_64/disk.qcow2");
    let before = sha256(&disk);
    let out = fedostree(&state, &["test", "--tree", "dev/minimal", "--arch", "x86_64", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(sha256(&disk), before, "booting changed the cached image");
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One stream for the whole run: every stage says when it starts and how it ended, the guest's
    // events come between the boot's start and end.
    let guest: Vec<&serde_json::Value> = events.iter().filter(|e| e.get("stage").is_none()).collect();
    assert_eq!(guest.first().unwrap()["event"], "run-started");
    for stage in ["devrepo", "compose", "image", "boot", "publish"] {
        for kind in ["stage-started", "stage-finished"] {
            assert!(
                events
                    .iter()
                    .any(|e| e["stage"] == stage && e["event"] == kind && e["arch"] == "x86_64"),
                "no {kind} event of {stage}: {events:#?}"
            );
        }
    }
    let at = |stage: &str, kind: &str| events.iter().position(|e| e["stage"] == stage && e["event"] == kind);
    let first_guest = events.iter().position(|e| e["event"] == "run-started");
    assert!(at("boot", "stage-started") < first_guest && first_guest < at("boot", "stage-finished"));
    assert!(
        at("image", "stage-finished") < at("boot", "stage-started"),
        "{events:#?}"
    );
    let finished: BTreeMap<String, String> = events
        .iter()
        .filter(|e| e["event"] == "test-finished")
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = expected_lines("dev/minimal", "fedostree", &["x86_64"]);
    want.extend(base_lines("dev/minimal", &["x86_64"]));
    let want: BTreeMap<String, String> = want
        .into_iter()
        .map(|(id, st)| (id.rsplit("::").next().unwrap().to_string(), st.to_lowercase()))
        .collect();
    assert_eq!(finished, want);

    // One package changes: the image is updated in place (incrementally) and the new commit is booted,
    // on both arches (each published with a delta from the previous one).
    assert!(fedostree(
        &state,
        &["devrepo", "--arch", "all", "--bump", "fedostree-installed-tests"]
    )
    .status
    .success());
    let out = fedostree(&state, &["test", "--tree", "dev/minimal", "--arch", "all"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // Published before, but a busybox tree has no client to upgrade with: the report says why.
    assert!(
        err.contains("not run: ") && err.contains("has no ostree client"),
        "{err}"
    );
    // /var in the guest still holds what the image's first deployment left in the stateroot.
    let run_dir = err.lines().find_map(|l| l.strip_prefix("run directory: ")).unwrap();
    let results = std::fs::read_to_string(Path::new(run_dir).join("dev/minimal/x86_64/results.jsonl")).unwrap();
    assert!(results.contains("lists 2 deployment(s) of this image"), "{results}");
    let image_state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("images/dev/minimal/x86_64/state.json")).unwrap())
            .unwrap();
    let tip =
        String::from_utf8(ostree(&state.join("repo"), &["rev-parse", "fedostree/dev/x86_64/minimal"]).stdout).unwrap();
    assert_eq!(image_state["commit"].as_str().unwrap(), tip.trim());
    assert_eq!(
        String::from_utf8(ostree(&public, &["rev-parse", "fedostree/dev/x86_64/minimal"]).stdout).unwrap(),
        tip
    );
    // The client that pulled the first commits gets these through the deltas between them.
    for arch in ["x86_64", "aarch64"] {
        let reff = format!("fedostree/dev/{arch}/minimal");
        let tip = String::from_utf8(ostree(&state.join("repo"), &["rev-parse", &reff]).stdout).unwrap();
        client.pull(&reff, tip.trim(), true);
    }
    client.range_requests_are_honoured();

    // dev/broken: its failing test makes the run exit 1 and nothing is published.
    let out = fedostree(
        &state,
        &["test", "--tree", "dev/broken", "--arch", "x86_64", "--no-upgrade"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("upgrade dev/broken x86_64: not run: --no-upgrade"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1));
    let mut want = expected_lines("dev/broken", "fedostree", &["x86_64"]);
    want.extend(expected_lines("dev/broken", "fedostree-broken", &["x86_64"]));
    want.extend(base_lines("dev/broken", &["x86_64"]));
    assert_eq!(report_lines(&err), want, "{err}");
    assert!(summary(&err).contains(" 2 failed"), "{err}");
    assert!(
        !ostree(&public, &["rev-parse", "fedostree/dev/x86_64/broken"])
            .status
            .success(),
        "broken tree was published"
    );
    assert!(!String::from_utf8(ostree(&public, &["refs"]).stdout)
        .unwrap()
        .contains("broken"));
}

/// A client of the public repo that `fedostree serve` serves: it trusts only the exported key and
/// verifies the summary's and commits' signatures.
struct PublicClient {
    server: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    url: String,
    repo: std::path::PathBuf,
    public: std::path::PathBuf,
}

impl PublicClient {
    fn start(state: &Path) -> PublicClient {
        use std::io::BufRead;
        let public = state.join("public");
        let mut server = Command::new(env!("CARGO_BIN_EXE_fedostree"))
            .env("FEDOSTREE_STATE_DIR", state)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(server.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.split_once(" on ").unwrap().1.trim().to_owned();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let collected = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                collected.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        let repo = state.join("client-repo");
        let _ = std::fs::remove_dir_all(&repo);
        let c = PublicClient {
            server,
            log,
            url,
            repo,
            public,
        };
        // A deployed system's repo is bare; ostree never applies deltas into an archive repo.
        c.run(&["init", "--mode=bare-user"]);
        let keypath = format!("--set=gpgkeypath={}", c.public.join("fedostree.gpg").display());
        let url = c.url.clone();
        c.run(&[
            "remote",
            "add",
            "--set=gpg-verify=true",
            "--set=gpg-verify-summary=true",
            &keypath,
            "origin",
            &url,
        ]);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let o = ostree(&self.repo, args);
        assert!(
            o.status.success(),
            "ostree {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Pull `reff`, which must arrive at `tip` with a good signature, through a static delta or not;
    /// returns the access log of the pull.
    fn pull(&self, reff: &str, tip: &str, through_a_delta: bool) -> String {
        let before = self.log.lock().unwrap().len();
        self.run(&["pull", "origin", reff]);
        assert_eq!(self.run(&["rev-parse", &format!("origin:{reff}")]).trim(), tip);
        let verified = self.run(&["show", "--gpg-verify-remote=origin", tip]);
        assert!(verified.contains("Good signature"), "{verified}");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let log = self.log.lock().unwrap()[before..].to_owned();
        // Fetched, or revalidated by its ETag against the copy the client verified and cached (libostree
        // sends If-None-Match; the summary is unchanged between two pulls with no publish between them).
        assert!(
            log.contains("\"GET /summary.sig\" 200") || log.contains("\"GET /summary.sig\" 304"),
            "{log}"
        );
        assert_eq!(
            log.contains("\"GET /deltas/"),
            through_a_delta,
            "static delta used?\n{log}"
        );
        log
    }

    fn range_requests_are_honoured(&self) {
        let ranged = ureq::get(&format!("{}summary", self.url))
            .set("Range", "bytes=0-9")
            .call()
            .unwrap();
        assert_eq!(ranged.status(), 206);
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut ranged.into_reader(), &mut body).unwrap();
        assert_eq!(body.len(), 10);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let log = self.log.lock().unwrap().clone();
        assert!(log.contains("\"GET /summary bytes=0-9\" 206"), "{log}");
    }
}

impl Drop for PublicClient {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The real trees from the Debian repository, in one state directory (the repository is converted
/// once and shared), tested as CI tests them: one `fedostree ci run` over server/docker-io and
/// base/minimal on both arches (systemd, rpmdb, accounts, ostree client, Docker running a container),
/// each tested and published; a second pass finds all four up to date.
fn real_trees_boot_systemd_and_pass_on_both_arches() {
    let state = state_dir("test-real");
    let public = state.join("public");
    // Deltas from scratch are covered by publish's own test; for these trees one takes minutes (xz).
    let pass = ["ci", "run", "--trees", "[bs]*/*", "--arch", "all", "--no-scratch-delta"];
    let out = fedostree(&state, &pass);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        err.matches("the first commit has nothing to upgrade from").count(),
        4,
        "{err}"
    );
    let mut want = BTreeMap::new();
    for (tree, suites) in [
        (
            "server/docker-io",
            &["fedostree", "fedostree-system", "fedostree-docker", "fedostree-selinux"][..],
        ),
        (
            "base/minimal",
            &["fedostree", "fedostree-system", "fedostree-selinux"][..],
        ),
    ] {
        for suite in suites {
            let dir = if *suite == "fedostree" {
                "fedostree"
            } else {
                suite.trim_start_matches("fedostree-")
            };
            want.extend(
                expected_lines(tree, dir, &["x86_64", "aarch64"])
                    .into_iter()
                    .map(|(id, st)| (id.replace(&format!("::{dir}/"), &format!("::{suite}/")), st)),
            );
        }
        want.extend(base_lines(tree, &["x86_64", "aarch64"]));
        for arch in ["x86_64", "aarch64"] {
            let (group, name) = tree.split_once('/').unwrap();
            let reff = format!("fedostree/{group}/{arch}/{name}");
            let tested = String::from_utf8(ostree(&state.join("repo"), &["rev-parse", &reff]).stdout).unwrap();
            let published = String::from_utf8(ostree(&public, &["rev-parse", &reff]).stdout).unwrap();
            assert!(!tested.trim().is_empty());
            assert_eq!(tested, published, "{reff}");
        }
    }
    assert_eq!(report_lines(&err), want, "{err}");
    let out = fedostree(&state, &pass);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(": 0 tested, 4 up to date in "), "{err}");
    dnf_agrees_with_our_depsolve(&state);
    accounts_are_never_dropped_silently(&state);
    file_owners_come_from_the_tree(&state);
    rpm_ostree_style_set_composes_on_both_arches(&state);
    // Last: it bumps a package in this state's dev repository, the candidate the two below gate.
    lifecycle_scenario_passes_on_x86_64(&state);
    planted_breakage_is_caught_and_nothing_is_published(&state);
    the_candidate_passes_the_upgrade_gate_and_is_published(&state);
}

/// The test's results of one tree/arch of a run (`results.jsonl`, also the upgrade VM's below
/// `upgrade/`): test name → (status, output).
fn finished_tests(err: &str, tree_arch: &str) -> BTreeMap<String, (String, String)> {
    let run_dir = err.lines().find_map(|l| l.strip_prefix("run directory: ")).unwrap();
    let dir = Path::new(run_dir).join(tree_arch);
    let mut out = BTreeMap::new();
    for (file, prefix) in [
        (dir.join("results.jsonl"), ""),
        (dir.join("upgrade/results.jsonl"), "upgrade/"),
    ] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for e in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            if e["event"] == "test-finished" {
                let name = e["name"].as_str().unwrap();
                let name = if name.starts_with("upgrade/") {
                    name.to_owned()
                } else {
                    format!("{prefix}{name}")
                };
                let st = (
                    e["status"].as_str().unwrap().to_owned(),
                    e["output"].as_str().unwrap().to_owned(),
                );
                out.insert(name, st);
            }
        }
    }
    out
}

/// A packager's RPM that breaks base/minimal four ways, over the tree's candidate on a scratch ref
/// with `--publish-to`: a unit that fails, one that dumps core and a mislabelled file a confined
/// service is denied (each caught by the base checks of the fresh boot), and a directory where the upgrade gate's client edited a file in /etc, so the
/// 3-way merge of `ostree admin upgrade` from the published commit fails. The verdict fails, each
/// check names what it caught, and nothing is published.
fn planted_breakage_is_caught_and_nothing_is_published(state: &Path) {
    let dir = state.join("planted");
    std::fs::create_dir_all(&dir).unwrap();
    let unit = |name: &str, body: &str| {
        (
            format!("/usr/lib/systemd/system/{name}.service"),
            format!(
                "[Unit]\nDescription={name}\n[Service]\nType=oneshot\n{body}\n[Install]\nWantedBy=multi-user.target\n"
            ),
        )
    };
    let failing = unit("fedostree-planted-failure", "ExecStart=/bin/false");
    // `-`: the unit succeeds, so only the core dump tells. systemd makes `$$$$` the shell's `$$`.
    let crashing = unit(
        "fedostree-planted-crash",
        "LimitCORE=infinity\nExecStart=-/bin/sh -c 'kill -SEGV $$$$'",
    );
    let mut p = pkg::Pkg::new("fedostree-planted-breakage", "1", "noarch");
    p = p.file(&failing.0, &failing.1, 0o100644);
    p = p.file(&crashing.0, &crashing.1, 0o100644);
    p = p.file(
        "/usr/lib/systemd/system-preset/10-fedostree-planted.preset",
        "enable fedostree-planted-*\n",
        0o100644,
    );
    // A mislabelled file: sysctl configuration that the policy labels shadow_t (its path in /etc
    // says so), which systemd-sysctl may not read. Enforcing, the read is denied and logged.
    p = p.file(
        "/usr/etc/shadow-fedostree-planted",
        "kernel.printk = 4 4 1 7\n",
        0o100644,
    );
    p = p.symlink(
        "/usr/lib/sysctl.d/50-fedostree-planted.conf",
        "/etc/shadow-fedostree-planted",
    );
    // The upgrade gate's client writes /etc/fedostree-upgrade-gate.conf on the published commit.
    p = p.file(
        "/usr/etc/fedostree-upgrade-gate.conf/planted",
        "a directory now\n",
        0o100644,
    );
    let rpm = p.write(&dir);
    let target = "fedostree/base/x86_64/minimal-planted";
    let args = ["test", "--tree", "base/minimal", "--arch", "x86_64", "--add-rpm"];
    let out = fedostree(
        state,
        &[&args[..], &[rpm.to_str().unwrap(), "--publish-to", target]].concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let tests = finished_tests(&err, "base/minimal/x86_64");
    let caught = |name: &str, says: &str| {
        let (status, output) = tests.get(name).unwrap_or_else(|| panic!("no {name}: {tests:?}"));
        assert_eq!(status, "fail", "{name}: {output}");
        assert!(output.contains(says), "{name} does not say {says:?}: {output}");
    };
    caught("base/failed-units", "fedostree-planted-failure.service");
    caught("base/core-dumps", "dumped core");
    caught("base/avc-denials", "shadow-fedostree-planted");
    caught("upgrade/from-published", "ostree admin upgrade");
    assert!(
        !tests.keys().any(|t| t.starts_with("upgrade/base/")),
        "the upgrade never reached the candidate: {tests:?}"
    );
    let published = ostree(&state.join("public"), &["rev-parse", target]);
    assert!(!published.status.success(), "{target} was published:\n{err}");
}

/// The candidate the lifecycle left (one package bumped over the published commit) through `ci run`
/// and its upgrade gate: the published commit boots through firmware, upgrades over HTTP through the
/// static delta, reboots into the candidate, whose upgrade tests (enforcing SELinux and its labels
/// after the 3-way merge among them) and base checks pass; the candidate
/// is published, and the history records the gate.
fn the_candidate_passes_the_upgrade_gate_and_is_published(state: &Path) {
    let pass = [
        "ci",
        "run",
        "--trees",
        "base/minimal",
        "--arch",
        "x86_64",
        "--no-scratch-delta",
    ];
    let out = fedostree(state, &pass);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = report_lines(&err);
    let upgrade: BTreeMap<&str, &str> = lines
        .iter()
        .filter_map(|(id, st)| Some((id.strip_prefix("base/minimal::x86_64::upgrade/")?, st.as_str())))
        .collect();
    for (test, want) in [
        ("from-published", "PASS"),
        ("fetched-static-delta", "PASS"),
        ("fedostree-system/sysusers-resolve", "PASS"),
        ("fedostree-system/rpmdb-matches-commit", "PASS"),
        ("base/failed-units", "PASS"),
        ("base/core-dumps", "PASS"),
        ("base/avc-denials", "PASS"),
        ("fedostree-selinux/enforcing", "PASS"),
        ("fedostree-selinux/labels", "PASS"),
    ] {
        assert_eq!(upgrade.get(test), Some(&want), "upgrade/{test}:\n{err}");
    }
    let tip = ostree(&state.join("repo"), &["rev-parse", "fedostree/base/x86_64/minimal"]).stdout;
    let published = ostree(&state.join("public"), &["rev-parse", "fedostree/base/x86_64/minimal"]).stdout;
    assert_eq!(published, tip);
    let run = err
        .lines()
        .find_map(|l| l.strip_prefix("ci run ").and_then(|r| r.split(':').next()))
        .unwrap_or_else(|| panic!("no `ci run ID:` line in\n{err}"));
    let out = fedostree(state, &["ci", "show", run, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = &shown["results"][0];
    let gate = result["result"]["upgrade"].as_str().unwrap_or_default();
    assert!(gate.starts_with("from the published "), "{shown}");
    assert!(
        result["tests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "upgrade/from-published" && t["outcome"] == "pass"),
        "{shown}"
    );
}

/// A peer check of the depsolve: dnf, given the same repositories and the tree's packages, settles on
/// the same set (busybox among neither: dash provides /bin/sh), and rpm's test transaction of that set
/// finds no file conflict (tests/fixtures/dnf-peer.py).
fn dnf_agrees_with_our_depsolve(state: &Path) {
    for tree in ["base/minimal", "server/docker-io"] {
        let json = state.join(format!("{}.treefile.json", tree.replace('/', "-")));
        let out = fedostree(state, &["compose", "--tree", tree, "--arch", "x86_64", "--print-only"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&json, &out.stdout).unwrap();
        let out = fedostree(state, &["compose", "--tree", tree, "--arch", "x86_64", "--dry-run"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ours: BTreeSet<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.trim().to_owned())
            .collect();
        let root = state.join(format!("dnf-root-{}", tree.replace('/', "-")));
        let _ = std::fs::remove_dir_all(&root);
        let devrepo = state.join("devrepo");
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dnf-peer.py"))
            .arg(&root)
            .arg(&json)
            .arg(format!("fedostree-debian={}", devrepo.join("debian/x86_64").display()))
            .arg(format!("fedostree-dev={}", devrepo.join("x86_64").display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dnf refused {tree}'s set: {err}");
        let theirs: BTreeSet<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(ours, theirs, "{tree}: fedostree's depsolve (left) vs dnf's (right)");
        assert!(!ours.iter().any(|p| p.starts_with("busybox-")), "{tree}: {ours:?}");
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// The client lifecycle in the VM (pipeline/src/lifecycle.rs, README "Reboots and the client lifecycle"), on
/// x86_64 (aarch64 runs the same scenario from the CLI; under TCG it takes several times as long):
/// every assertion inside the guest passes across five boots through U-Boot, and the host saw the
/// upgrade take the static delta. Nothing is published by a scenario.
fn lifecycle_scenario_passes_on_x86_64(state: &Path) {
    let public_before = ostree(&state.join("public"), &["refs"]).stdout;
    let out = fedostree(
        state,
        &[
            "test",
            "--tree",
            "base/minimal",
            "--arch",
            "x86_64",
            "--scenario",
            "lifecycle",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let mut want: BTreeMap<String, String> = [
        "base/minimal::x86_64::fedostree-lifecycle/lifecycle",
        "base/minimal::x86_64::host/upgrade-fetched-static-delta",
        "base/minimal::x86_64::host/five-boots",
    ]
    .iter()
    .map(|id| (id.to_string(), "PASS".to_string()))
    .collect();
    // On the last of the five boots.
    want.extend(base_lines("base/minimal", &["x86_64"]));
    assert_eq!(report_lines(&err), want, "{err}");
    assert_eq!(
        ostree(&state.join("public"), &["refs"]).stdout,
        public_before,
        "a scenario publishes nothing"
    );
    let runs = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path());
    let run = runs.max().unwrap().join("base/minimal/x86_64");
    let timings: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("timings.json")).unwrap()).unwrap();
    assert_eq!(timings["boot_path"], "firmware");
    assert_eq!(timings["boots"], 5, "{timings}");
    let boots: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("boots.json")).unwrap()).unwrap();
    let offsets: Vec<u64> = boots
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["console_offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{boots}");
    for n in 1..=5 {
        let section = std::fs::read_to_string(run.join(format!("console.boot-{n}.log"))).unwrap();
        assert!(
            section.contains("U-Boot"),
            "boot {n} starts in the firmware:\n{section}"
        );
    }
    let junit = std::fs::read_to_string(run.join("junit-boots.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 5, "{junit}");
    let access = std::fs::read_to_string(run.join("access.log")).unwrap();
    assert!(access.contains("DIES halfway"), "{access}");
}

/// rpm-ostree's rule for /etc/group across composes, through the binary: base/minimal's packages under
/// server/docker-io's ref drop the `docker` group Docker's package declared. While a file of the tree
/// is still owned by its gid that compose is refused, naming the group, and the ref stays; listed under
/// `ignore-removed-groups` it goes through. A group that owns nothing any more may go (rpm-ostree's
/// "unused group removed").
fn accounts_are_never_dropped_silently(state: &Path) {
    let reff = "fedostree/server/x86_64/docker-io";
    let rev = |s: &Path| String::from_utf8(ostree(&s.join("repo"), &["rev-parse", reff]).stdout).unwrap();
    let before = rev(state);
    let group = String::from_utf8(ostree(&state.join("repo"), &["cat", reff, "/usr/etc/group"]).stdout).unwrap();
    let docker_gid = group
        .lines()
        .find_map(|l| l.strip_prefix("docker:x:"))
        .and_then(|rest| rest.split(':').next())
        .expect("docker-io has a docker group")
        .to_owned();
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/base");
    let dir = state.join("shrunk-tree");
    std::fs::create_dir_all(&dir).unwrap();
    for repo in ["fedostree-debian.repo", "fedostree-dev.repo"] {
        std::os::unix::fs::symlink(trees.join(repo), dir.join(repo)).unwrap();
    }
    let treefile = |extra: &str| {
        let p = dir.join("shrunk.yaml");
        let include = trees.join("minimal.yaml");
        std::fs::write(&p, format!("include: {}\nref: {reff}\n{extra}", include.display())).unwrap();
        p.to_string_lossy().into_owned()
    };
    let still_owned = format!(
        "postprocess:\n  - |\n    #!/bin/sh\n    set -e\n    touch /usr/share/left-behind\n    chown 0:{docker_gid} /usr/share/left-behind\n"
    );
    let out = fedostree(
        state,
        &["compose", "--tree", &treefile(&still_owned), "--arch", "x86_64"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("group `docker`") && err.contains("owns files") && err.contains("ignore-removed-groups"),
        "{err}"
    );
    assert_eq!(rev(state), before, "a refused compose moved the ref");
    let out = fedostree(state, &["compose", "--tree", &treefile(""), "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(rev(state), before);
    // Back to the commit that has the group, for the last case.
    let reset = ostree(&state.join("repo"), &["reset", reff, before.trim()]);
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    let out = fedostree(
        state,
        &[
            "compose",
            "--tree",
            &treefile(&format!("{still_owned}ignore-removed-groups: [docker]\n")),
            "--arch",
            "x86_64",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(rev(state), before);
}

/// Real RPMs (built here) on top of base/minimal: a package whose files are owned by a user and group
/// that its own sysusers.d file declares composes, with the ids sysusers gave them; a file owned by a
/// user nobody declares is refused, naming package, path and user.
fn file_owners_come_from_the_tree(state: &Path) {
    use rpm::FileOptions;
    let dir = state.join("owners-tree");
    let _ = std::fs::remove_dir_all(&dir);
    let repo_dir = dir.join("extra");
    pkg::Pkg::new("fedostree-svc", "1.0", "noarch")
        .file(
            "/usr/lib/sysusers.d/fedostree-svc.conf",
            "u fedostree-svc - \"svc\" /var/lib/svc\n",
            0o644,
        )
        .file_with(
            FileOptions::new("/usr/share/fedostree-svc/state")
                .user("fedostree-svc")
                .group("fedostree-svc")
                .mode(rpm::FileMode::regular(0o640)),
            "owned\n",
        )
        .write(&repo_dir);
    pkg::Pkg::new("fedostree-orphan", "1.0", "noarch")
        .file_with(
            FileOptions::new("/usr/share/fedostree-orphan/f")
                .user("nobody-declares")
                .mode(rpm::FileMode::regular(0o644)),
            "x\n",
        )
        .write(&repo_dir);
    pkg::createrepo(&repo_dir);
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/base");
    for repo in ["fedostree-debian.repo", "fedostree-dev.repo"] {
        std::os::unix::fs::symlink(trees.join(repo), dir.join(repo)).unwrap();
    }
    std::fs::write(
        dir.join("extra.repo"),
        format!("[extra]\nbaseurl=file://{}\n", repo_dir.display()),
    )
    .unwrap();
    let treefile = |pkgs: &str| {
        let p = dir.join("owners.yaml");
        let include = trees.join("minimal.yaml");
        std::fs::write(
            &p,
            // Not booted (no dracut run: this is about accounts), but the tree's own systemd-sysusers runs.
            format!(
                "include: {}\nref: test/owners\nrepos: [extra]\npackages: [{pkgs}]\ncontainer: true\n",
                include.display()
            ),
        )
        .unwrap();
        p.to_string_lossy().into_owned()
    };
    let out = fedostree(
        state,
        &["compose", "--tree", &treefile("fedostree-svc"), "--arch", "x86_64"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let repo = state.join("repo");
    let passwd = String::from_utf8(ostree(&repo, &["cat", "test/owners", "/usr/etc/passwd"]).stdout).unwrap();
    let uid = passwd
        .lines()
        .find_map(|l| l.strip_prefix("fedostree-svc:x:"))
        .and_then(|r| r.split(':').next())
        .expect("sysusers created fedostree-svc")
        .to_owned();
    let ls = String::from_utf8(ostree(&repo, &["ls", "test/owners", "/usr/share/fedostree-svc/state"]).stdout).unwrap();
    assert!(ls.starts_with(&format!("-00640 {uid} ")), "{ls} (uid {uid})");
    let out = fedostree(
        state,
        &["compose", "--tree", &treefile("fedostree-orphan"), "--arch", "x86_64"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fedostree-orphan-1.0-1.noarch: /usr/share/fedostree-orphan/f: unknown user `nobody-declares`"),
        "{err}"
    );
}

/// `tests/fixtures/rpm-ostree-style`, a treefile set shaped like fedora-coreos-config's (variables,
/// conditional includes, per-arch files, an overlay.d layer, a lockfile override, repositories beside
/// it, one found through a `DNF_VAR_` variable), composed for both architectures on base/minimal's
/// real packages plus packages built here: /opt content, an owner declared by the package's own
/// sysusers.d, a %post and a %transfiletriggerin that sees the layer's file and another package's.
fn rpm_ostree_style_set_composes_on_both_arches(state: &Path) {
    use rpm::FileOptions;
    let extra = state.join("style-extra");
    let _ = std::fs::remove_dir_all(&extra);
    for version in ["1.0", "2.0"] {
        pkg::Pkg::new("style-app", version, "noarch")
            .file(
                "/opt/style-app/bin/run",
                &format!("#!/bin/sh\necho style-app {version}\n"),
                0o755,
            )
            .write(&extra);
    }
    pkg::Pkg::new("style-svc", "1.0", "noarch")
        .file(
            "/usr/lib/sysusers.d/style-svc.conf",
            "u style-svc - \"style\" /var/lib/style\n",
            0o644,
        )
        .file_with(
            FileOptions::new("/usr/share/style-svc/state")
                .user("style-svc")
                .group("style-svc")
                .mode(rpm::FileMode::regular(0o640)),
            "owned\n",
        )
        .write(&extra);
    pkg::Pkg::new("style-trigger-host", "1.0", "noarch")
        .file("/usr/share/style-trigger-host/README", "host\n", 0o644)
        .post("uname -m > /etc/style-post-arch", "/bin/sh")
        .trans_file_trigger_in("/usr/lib/style.d", "cat > /etc/style-trigger-seen")
        .write(&extra);
    pkg::Pkg::new("style-plugin", "1.0", "noarch")
        .file("/usr/lib/style.d/plugin.conf", "plugin=package\n", 0o644)
        .write(&extra);
    // The older Fedora way: the account made by a %pre calling the tree's own groupadd and useradd.
    pkg::Pkg::new("style-legacy", "1.0", "noarch")
        .pre(
            "getent group style-legacy >/dev/null || groupadd -r style-legacy\n\
             getent passwd style-legacy >/dev/null || useradd -r -g style-legacy -d /var/lib/legacy -s /usr/sbin/nologin style-legacy\n",
            "/bin/sh",
        )
        .file_with(
            FileOptions::new("/usr/share/style-legacy/data")
                .user("style-legacy")
                .group("style-legacy")
                .mode(rpm::FileMode::regular(0o600)),
            "legacy\n",
        )
        .write(&extra);
    pkg::createrepo(&extra);

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rpm-ostree-style/manifest.yaml");
    let manifest = manifest.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = common::fedostree_env(state, &[("DNF_VAR_style_extra_repo", extra.as_os_str())], args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "fedostree {args:?}:\n{err}");
        (String::from_utf8(out.stdout).unwrap(), err)
    };
    let (printed, _) = run(&["compose", "--tree", manifest, "--arch", "all", "--print-only"]);
    let printed: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(printed[1]["ref"], "test/aarch64/rpm-ostree-style/testing");
    assert_eq!(printed[0]["add-commit-metadata"]["fedostree.style.arch-file"], "x86_64");

    let (_, err) = run(&["compose", "--tree", manifest, "--arch", "all"]);
    let repo = state.join("repo");
    let text = |r: &str, path: &str| {
        let o = ostree(&repo, &["cat", r, path]);
        assert!(
            o.status.success(),
            "{r} {path}: {}\n{err}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    for (arch, uname) in [("x86_64", "x86_64"), ("aarch64", "aarch64")] {
        let r = format!("test/{arch}/rpm-ostree-style/testing");
        let meta = |key: &str| {
            let o = ostree(&repo, &["show", &format!("--print-metadata-key={key}"), &r]);
            String::from_utf8(o.stdout).unwrap().trim().to_owned()
        };
        assert_eq!(meta("fedostree.style.arch-file"), format!("'{arch}'"));
        assert_eq!(meta("fedostree.style.stream"), "'testing'");
        // The lockfile override holds style-app at 1.0 although 2.0 is in the repository.
        assert_eq!(
            text(&r, "/usr/lib/opt/style-app/bin/run"),
            "#!/bin/sh\necho style-app 1.0\n"
        );
        let tmpfiles = text(&r, "/usr/lib/tmpfiles.d/fedostree-opt-usrlocal.conf");
        assert!(tmpfiles.contains("L /opt/style-app "), "{tmpfiles}");
        assert_eq!(text(&r, "/usr/share/style/from-overlay"), "from the overlay.d layer\n");
        // The %post ran in the tree's own shell (an aarch64 one through qemu-user).
        assert_eq!(text(&r, "/usr/etc/style-post-arch").trim(), uname);
        assert_eq!(
            text(&r, "/usr/etc/style-trigger-seen"),
            "/usr/lib/style.d/overlay.conf\n/usr/lib/style.d/plugin.conf\n"
        );
        let passwd = text(&r, "/usr/etc/passwd");
        let uid = passwd
            .lines()
            .find_map(|l| l.strip_prefix("style-svc:x:"))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("sysusers created style-svc on {arch}:\n{passwd}"))
            .to_owned();
        let ls = String::from_utf8(ostree(&repo, &["ls", &r, "/usr/share/style-svc/state"]).stdout).unwrap();
        assert!(ls.starts_with(&format!("-00640 {uid} ")), "{arch}: {ls} (uid {uid})");
        // useradd writes `!` as the password where the tree has no /etc/shadow.
        let legacy = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find_map(|f| (f[0] == "style-legacy").then(|| f[2]))
            .unwrap_or_else(|| panic!("%pre's useradd made style-legacy on {arch}:\n{passwd}"))
            .to_owned();
        let ls = String::from_utf8(ostree(&repo, &["ls", &r, "/usr/share/style-legacy/data"]).stdout).unwrap();
        assert!(
            ls.starts_with(&format!("-00600 {legacy} ")),
            "{arch}: {ls} (uid {legacy})"
        );
    }
}

fn bad_arguments_are_input_errors() {
    let state = state_dir("test-args");
    assert_eq!(
        fedostree(&state, &["test", "--tree", "dev/minimal", "--arch", "sparc"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        fedostree(&state, &["test", "--tree", "dev/nope"]).status.code(),
        Some(1)
    );
    assert_eq!(
        fedostree(&state, &["test", "--tree", "dev/minimal", "--accel", "warp"])
            .status
            .code(),
        Some(1)
    );
}
