//! `fedostree ci` end to end through the real binary, on the dev trees and both architectures: the
//! first pass tests every tree, the second finds everything up to date, a bumped package re-tests only
//! the tree that contains it; the planted failure and the planted flake land in the database, the CLI,
//! the ResultsDB export and the status page, which headless Chromium renders.

use fedostree_util::prereq::{run_tests, Prereq, Test, IMAGE_BACKEND};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{fedostree, state_dir};

fn main() {
    let needs = [
        IMAGE_BACKEND,
        &[
            Prereq::Qemu("x86_64"),
            Prereq::Qemu("aarch64"),
            Prereq::Binary("chromium"),
        ],
    ]
    .concat();
    run_tests(vec![
        Test::new(
            "ci_tests_what_changed_and_remembers_it",
            &needs,
            ci_tests_what_changed_and_remembers_it,
        ),
        Test::new(
            "a_worker_tests_a_candidate_pulled_from_the_compose_server",
            &[IMAGE_BACKEND, &[Prereq::Qemu("x86_64")]].concat(),
            a_worker_tests_a_candidate_pulled_from_the_compose_server,
        ),
        Test::new(
            "the_status_page_of_a_recorded_history_renders_in_chromium",
            &[Prereq::Binary("chromium")],
            the_status_page_of_a_recorded_history_renders_in_chromium,
        ),
        Test::new("ci_input_errors", &[], ci_input_errors),
    ]);
}

const PASS: &[&str] = &["ci", "run", "--trees", "dev/*", "--arch", "all", "--no-scratch-delta"];

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The run id from `ci run`'s last line.
fn run_id(err: &str) -> String {
    err.lines()
        .find_map(|l| l.strip_prefix("ci run ").and_then(|r| r.split(':').next()))
        .unwrap_or_else(|| panic!("no `ci run ID:` line in\n{err}"))
        .to_string()
}

fn show(state: &Path, run: &str) -> Value {
    let out = fedostree(state, &["ci", "show", run, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// (tree arch → verdict) of a run's results.
fn verdicts(show: &Value) -> Vec<String> {
    show["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["result"]["tree"].as_str().unwrap(),
                r["result"]["arch"].as_str().unwrap(),
                r["result"]["verdict"].as_str().unwrap()
            )
        })
        .collect()
}

fn up_to_date(show: &Value) -> Vec<String> {
    show["up_to_date"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("{} {}", u["tree"].as_str().unwrap(), u["arch"].as_str().unwrap()))
        .collect()
}

fn ci_tests_what_changed_and_remembers_it() {
    let state = state_dir("ci-e2e");

    // First pass: every dev tree on both arches is composed, booted and tested.
    let out = fedostree(&state, PASS);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "dev/broken fails, so the pass does:\n{err}");
    let first = run_id(&err);
    let shown = show(&state, &first);
    assert_eq!(
        verdicts(&shown),
        [
            "dev/broken aarch64 fail",
            "dev/broken x86_64 fail",
            "dev/minimal aarch64 pass",
            "dev/minimal x86_64 pass"
        ]
    );
    for r in shown["results"].as_array().unwrap() {
        let res = &r["result"];
        assert_eq!(res["published"], res["verdict"] == "pass", "{res}");
        // The history says why the upgrade gate did not run: a first commit has nothing to upgrade from.
        let upgrade = res["upgrade"].as_str().unwrap_or_default();
        assert!(upgrade.starts_with("not run: nothing is published on "), "{res}");
        let tests = r["tests"].as_array().unwrap();
        let attempts = |name: &str| -> Vec<(u64, String, bool)> {
            tests
                .iter()
                .filter(|t| t["name"] == name)
                .map(|t| {
                    (
                        t["attempt"].as_u64().unwrap(),
                        t["outcome"].as_str().unwrap().to_string(),
                        t["flaky"].as_bool().unwrap(),
                    )
                })
                .collect()
        };
        if res["tree"] == "dev/broken" {
            // The planted failure fails in the first VM and in both reruns; the planted flake fails
            // first and passes in the first rerun, and is recorded as flaky.
            let f = |o: &str| (o.to_string(), false);
            assert_eq!(
                attempts("fedostree-broken/intentional-failure")
                    .into_iter()
                    .map(|(n, o, fl)| (n, (o, fl)))
                    .collect::<Vec<_>>(),
                [(1, f("fail")), (2, f("fail")), (3, f("fail"))],
                "{r}"
            );
            assert_eq!(
                attempts("fedostree-broken/flaky-on-first-attempt"),
                [(1, "fail".into(), false), (2, "pass".into(), true)],
                "{r}"
            );
            // Reruns go to the failed tests only.
            assert_eq!(attempts("fedostree/booted-commit").len(), 1, "{r}");
            let attempt3 = Path::new(res["artifacts"].as_str().unwrap()).join("attempt-3/console.log");
            assert!(attempt3.exists(), "each rerun keeps its own artifacts");
        } else {
            assert!(tests.iter().all(|t| t["attempt"] == 1), "{r}");
        }
    }
    assert!(err.contains("dev/broken x86_64: FAIL at"), "{err}");
    assert!(err.contains("flaky: fedostree-broken/flaky-on-first-attempt"), "{err}");
    let refs = String::from_utf8(
        Command::new("ostree")
            .arg(format!("--repo={}", state.join("public").display()))
            .arg("refs")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        refs.contains("fedostree/dev/x86_64/minimal") && !refs.contains("broken"),
        "{refs}"
    );

    // The CLI's views of the history.
    let out = fedostree(&state, &["ci", "history", "--tree", "dev/broken", "--json"]);
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    let out = fedostree(&state, &["ci", "show", &first]);
    let text = stdout(&out);
    assert!(
        text.contains("PASS    fedostree-broken/flaky-on-first-attempt [attempt 2]") && text.contains("(flaky)"),
        "{text}"
    );
    let out = fedostree(&state, &["ci", "export"]);
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |name: &str| {
        lines
            .iter()
            .find(|l| l["testcase"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the export"))
    };
    let failure = find("fedostree.dev/broken.x86_64.fedostree-broken/intentional-failure");
    assert_eq!(failure["outcome"], "FAILED");
    assert_eq!(failure["data"]["type"], "ostree-commit");
    assert!(failure["data"]["item"]
        .as_str()
        .unwrap()
        .starts_with("fedostree/dev/x86_64/broken@"));
    let flake = find("fedostree.dev/broken.aarch64.fedostree-broken/flaky-on-first-attempt");
    assert_eq!(flake["outcome"], "PASSED");
    assert!(flake["note"].as_str().unwrap().contains("flaky"), "{flake}");
    assert_eq!(find("fedostree.dev/minimal.aarch64")["outcome"], "PASSED");

    // Second pass: nothing changed, nothing is booted.
    let out = fedostree(&state, PASS);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "dev/broken is still failing:\n{err}");
    let second = run_id(&err);
    let shown = show(&state, &second);
    assert!(verdicts(&shown).is_empty(), "{shown}");
    assert_eq!(up_to_date(&shown).len(), 4, "{shown}");
    assert!(err.contains("0 tested, 4 up to date"), "{err}");
    assert!(
        !state.join("runs").join(&second).join("dev").exists(),
        "a VM ran in an up-to-date pass"
    );

    // A package only dev/broken contains changes: only dev/broken is tested again.
    let bump = fedostree(
        &state,
        &["devrepo", "--arch", "all", "--bump", "fedostree-installed-tests-broken"],
    );
    assert!(bump.status.success(), "{}", stderr(&bump));
    let out = fedostree(&state, PASS);
    let err = stderr(&out);
    let third = run_id(&err);
    let shown = show(&state, &third);
    assert_eq!(
        verdicts(&shown),
        ["dev/broken aarch64 fail", "dev/broken x86_64 fail"],
        "{err}"
    );
    assert_eq!(up_to_date(&shown), ["dev/minimal aarch64", "dev/minimal x86_64"]);
    let diff = &shown["results"][0]["result"]["package_diff"];
    assert_eq!(
        diff["upgraded"][0]["name"], "fedostree-installed-tests-broken",
        "{diff}"
    );
    assert!(shown["results"][0]["result"]["parent_commit"].is_string());

    // The status page, rendered by a real browser.
    let status = state.join("public/status");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ci-e2e-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let index = browse(&status.join("index.html"), Some(&artifacts.join("status.png")));
    assert_eq!(index.matches("data-verdict=\"pass\"").count(), 2, "{index}");
    assert_eq!(index.matches("data-verdict=\"fail\"").count(), 2, "{index}");
    links_resolve(&index, &status);
    let run_page_dir = status.join("run").join(&first);
    let run_page = browse(&run_page_dir.join("index.html"), Some(&artifacts.join("run.png")));
    assert!(run_page.contains("data-flaky=\"true\""), "{run_page}");
    assert!(run_page.contains("console.log (attempt 3)"), "{run_page}");
    // Each arch's screen when a test failed, as QEMU's screendump wrote it: the serial console's
    // terminal with the guest's lines on it.
    for arch in ["x86_64", "aarch64"] {
        let png = run_page_dir.join(format!("dev--broken/{arch}/attempt-1/screenshot.png"));
        let screen = fedostree_util::screen::Screen::read(&png).unwrap();
        assert!(screen.lit_text_rows() >= 2, "{}: a blank screen", png.display());
        let shown = format!("src=\"dev--broken/{arch}/attempt-1/screenshot.png\"");
        assert!(run_page.contains(&shown), "the page shows {arch}'s screen: {run_page}");
    }
    links_resolve(&run_page, &run_page_dir);
    let tree_dir = status.join("tree");
    let tree_page = browse(&tree_dir.join("dev--broken.html"), None);
    assert!(
        tree_page.contains("fedostree-installed-tests-broken"),
        "the package diff: {tree_page}"
    );
    links_resolve(&tree_page, &tree_dir);

    // Pruning keeps the newest run and the runs that hold a tree's latest result (dev/minimal's is in
    // the first); the second pass, up to date and superseded, goes with its pages.
    let out = fedostree(&state, &["ci", "prune", "--keep", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!state.join("runs").join(&second).exists());
    assert!(!status.join("run").join(&second).exists());
    assert!(state.join("runs").join(&first).exists() && run_page_dir.exists());
    let out = fedostree(&state, &["ci", "history", "--json"]);
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        6,
        "the first and third runs' results stay"
    );
    let out = fedostree(&state, PASS);
    assert!(
        stderr(&out).contains("0 tested, 4 up to date"),
        "pruning re-tests nothing: {}",
        stderr(&out)
    );
    let status_out = fedostree(&state, &["ci", "status"]);
    assert!(stdout(&status_out).contains("disk: "), "{}", stdout(&status_out));
    // The cached images still boot their commits: a test of the tree after pruning works.
    let out = fedostree(
        &state,
        &["test", "--tree", "dev/minimal", "--arch", "x86_64", "--no-publish"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // `ci watch`: passes until told to stop (here: two), each a fresh run, here both up to date.
    let out = fedostree(
        &state,
        &[
            "ci",
            "watch",
            "--interval",
            "1",
            "--passes",
            "2",
            "--trees",
            "dev/minimal",
            "--arch",
            "x86_64",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("0 tested, 1 up to date").count(), 2, "{err}");

    signal_mid_run_publishes_nothing_and_the_next_pass_resumes(&state);
}

/// SIGTERM while a pass's VM runs: the cancellation token stops the VM and the pass unwinds (it says
/// so itself: the cleanup registry's hard path would not), nothing is published, the run is recorded
/// as interrupted, and the next pass tests the tree again.
fn signal_mid_run_publishes_nothing_and_the_next_pass_resumes(state: &Path) {
    let reff = "fedostree/dev/x86_64/minimal";
    let public_tip = || {
        String::from_utf8(
            Command::new("ostree")
                .arg(format!("--repo={}", state.join("public").display()))
                .args(["rev-parse", reff])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let before = public_tip();
    let bump = fedostree(
        state,
        &["devrepo", "--arch", "x86_64", "--bump", "fedostree-installed-tests"],
    );
    assert!(bump.status.success());
    let runs_before: Vec<_> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut pass = Command::new(env!("CARGO_BIN_EXE_fedostree"))
        .env("FEDOSTREE_STATE_DIR", state)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["ci", "run", "--trees", "dev/minimal", "--arch", "x86_64"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drain stderr as it comes (a full pipe would block the pass).
    let stderr_pipe = pass.stderr.take().unwrap();
    let pass_stderr = std::thread::spawn(move || std::io::read_to_string(stderr_pipe).unwrap_or_default());
    // Wait for the guest to be running: its console log has the kernel's first lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let console = loop {
        let found = std::fs::read_dir(state.join("runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !runs_before.contains(p))
            .map(|p| p.join("dev/minimal/x86_64/console.log"))
            .find(|c| std::fs::metadata(c).is_ok_and(|m| m.len() > 0));
        if let Some(c) = found {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "the pass never booted its VM");
        assert!(pass.try_wait().unwrap().is_none(), "the pass ended before its VM ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let run = console
        .ancestors()
        .nth(4)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(Command::new("kill")
        .args(["-TERM", &pass.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = pass.wait().unwrap();
    let said = pass_stderr.join().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{status:?}\n{said}");
    assert!(
        said.contains("stopping (again to force)") && said.contains(&format!("run {run} interrupted")),
        "the pass did not unwind through its cancellation token:\n{said}"
    );
    assert!(!said.contains("cleaning up"), "the hard path ran:\n{said}");
    // The cleanup stopped the VM before the process exited; allow the kernel a moment to reap it.
    let run_dir = console.parent().unwrap().display().to_string();
    let left = (0..30).find_map(|_| {
        let out = Command::new("pgrep").args(["-a", "-f", &run_dir]).output().unwrap();
        if out.stdout.is_empty() {
            return Some(String::new());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        None
    });
    assert_eq!(
        left.as_deref(),
        Some(""),
        "a QEMU of the interrupted run is still there"
    );
    assert_eq!(public_tip(), before, "an interrupted pass published");
    assert_eq!(show(state, &run)["run"]["status"], "interrupted");
    let out = fedostree(state, &["ci", "run", "--trees", "dev/minimal", "--arch", "x86_64"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("1 tested, 0 up to date"),
        "the next pass tests the tree again: {err}"
    );
    assert_ne!(public_tip(), before, "and publishes it");
}

/// Headless Chromium's DOM of `page` (and a phone-width screenshot when asked).
pub fn browse(page: &Path, screenshot: Option<&PathBuf>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let base = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let url = format!("file://{}", page.display());
    let mut c = Command::new("chromium");
    base(&mut c);
    let out = c.args(["--dump-dom", &url]).output().unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(png) = screenshot {
        let mut c = Command::new("chromium");
        base(&mut c);
        let shot = c
            .arg(format!("--screenshot={}", png.display()))
            .args(["--window-size=412,915", &url])
            .output()
            .unwrap();
        assert!(
            shot.status.success() && png.exists(),
            "{}",
            String::from_utf8_lossy(&shot.stderr)
        );
    }
    String::from_utf8(out.stdout).unwrap()
}

/// Every relative link in `dom` names a file that exists (fragments aside).
pub fn links_resolve(dom: &str, dir: &Path) {
    let mut n = 0;
    // Links and images alike.
    for part in dom.split("href=\"").skip(1).chain(dom.split(" src=\"").skip(1)) {
        let href = &part[..part.find('"').unwrap()];
        let href = href.split('#').next().unwrap().replace("&amp;", "&");
        if href.is_empty() || href.contains("://") {
            continue;
        }
        assert!(
            dir.join(&href).exists(),
            "{href} (from {}) does not exist",
            dir.display()
        );
        n += 1;
    }
    assert!(n > 0, "no links in {}", dir.display());
}

fn ci_input_errors() {
    let state = state_dir("ci-args");
    let out = fedostree(&state, &["ci", "run", "--trees", "no-such/*"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no tree under") && stderr(&out).contains("no-such/*"),
        "{}",
        stderr(&out)
    );
    let out = fedostree(&state, &["ci", "show", "20990101T000000-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no run `20990101T000000-1`"), "{}", stderr(&out));
    let out = fedostree(&state, &["ci", "watch", "--interval", "5 parsecs"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("5 parsecs"), "{}", stderr(&out));
    // A denylist that does not parse names the file and the line; nothing is composed.
    let trees = state.join("trees");
    std::fs::create_dir_all(trees.join("dev")).unwrap();
    for f in ["minimal.yaml", "common.yaml", "fedostree-dev.repo"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/dev").join(f),
            trees.join("dev").join(f),
        )
        .unwrap();
    }
    std::fs::write(
        trees.join("denylist.yaml"),
        "- pattern: x\n  reason: r\n  snooze: not-a-date\n",
    )
    .unwrap();
    let out = common::fedostree_env(&state, &[("FEDOSTREE_TREES", trees.as_os_str())], &["ci", "run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("denylist.yaml:3"), "{}", stderr(&out));
    assert!(!state.join("repo").exists(), "nothing was composed");
}

/// Beyond one machine: one state dir composes and serves its candidate repository, another (a CI
/// worker) pulls the candidate over HTTP, deploys it into its own cached image and tests it.
fn a_worker_tests_a_candidate_pulled_from_the_compose_server() {
    let server_state = state_dir("ci-compose-server");
    let worker = state_dir("ci-worker");
    let out = fedostree(&server_state, &["compose", "--tree", "dev/minimal", "--arch", "x86_64"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reff = "fedostree/dev/x86_64/minimal";
    let candidate = String::from_utf8(
        Command::new("ostree")
            .arg(format!("--repo={}", server_state.join("repo").display()))
            .args(["rev-parse", reff])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (_server, url) = common::serve(&server_state, &["--candidates"]);

    let test_from = |reff: &str| {
        fedostree(
            &worker,
            &[
                "test",
                "--tree",
                "dev/minimal",
                "--arch",
                "x86_64",
                "--from",
                &url,
                "--ref",
                reff,
            ],
        )
    };
    let out = test_from(reff);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("PASS") && err.contains("passed (not published)"), "{err}");
    let image: Value =
        serde_json::from_str(&std::fs::read_to_string(worker.join("images/dev/minimal/x86_64/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        image["commit"].as_str().unwrap(),
        candidate.trim(),
        "the worker booted the server's candidate"
    );
    assert!(!worker.join("public/summary").exists(), "a worker publishes nothing");
    assert!(
        !worker.join("repo/refs/heads").read_dir().unwrap().any(|_| true),
        "a worker composes nothing"
    );

    // A ref the server does not have is the input's fault, named.
    let out = test_from("no/such/ref");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("pulling no/such/ref from"), "{}", stderr(&out));
}

/// The page for a recorded history with a pass, a failure, a flaky test and an infrastructure error,
/// where a test name, a console log and an error message carry markup: headless Chromium shows the
/// verdicts, every link resolves, and nothing from the history became an element.
fn the_status_page_of_a_recorded_history_renders_in_chromium() {
    use fedostree_ci::history::{History, NewResult, ResultRecord, TestRow};
    let dir = common::TestDir::fresh("ci-page");
    let public = dir.join("public");
    let mut h = History::open(&dir.join("ci.sqlite")).unwrap();
    h.begin_run("20261202T000000-1", "* on x86_64,aarch64").unwrap();
    let evil = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";
    let test = |name: &str, outcome: &str, attempt: u32, flaky: bool| TestRow {
        name: name.into(),
        outcome: outcome.parse().unwrap(),
        duration_s: 1.5,
        attempt,
        flaky,
        denied: None,
    };
    let mut result = |tree: &str, arch: &str, verdict: &str, tests: Vec<TestRow>, infra: Option<&str>| {
        let artifacts = dir.join("runs").join(tree).join(arch);
        std::fs::create_dir_all(artifacts.join("attempt-2")).unwrap();
        std::fs::write(artifacts.join("console.log"), format!("[ 0.0] booting {evil}\n")).unwrap();
        std::fs::write(artifacts.join("attempt-2/console.log"), "second boot\n").unwrap();
        std::fs::write(artifacts.join("junit.xml"), "<testsuites/>").unwrap();
        h.record_result(&NewResult {
            record: ResultRecord {
                run_id: "20261202T000000-1".into(),
                tree: tree.into(),
                arch: arch.parse().unwrap(),
                ref_: format!("fedostree/{tree}"),
                commit: "ab".repeat(32).into(),
                parent_commit: None,
                version: Some("1.20261202".into()),
                verdict: verdict.parse().unwrap(),
                published: verdict == "pass",
                infra_error: infra.map(Into::into),
                compose_s: Some(1.0),
                image_s: Some(2.0),
                boot_s: Some(3.0),
                publish_s: None,
                artifacts: artifacts.display().to_string(),
                package_diff: Some(serde_json::json!({"added": [format!("pkg-{evil}-1-1.noarch")], "upgraded": []})),
                upgrade: Some(format!("not run: {evil}")),
                upgrade_s: None,
            },
            tests,
        })
        .unwrap();
    };
    result(
        "dev/minimal",
        "x86_64",
        "pass",
        vec![test("s/ok", "pass", 1, false)],
        None,
    );
    result(
        "dev/broken",
        "x86_64",
        "fail",
        vec![
            test(&format!("s/{evil}"), "fail", 1, false),
            test(&format!("s/{evil}"), "fail", 2, false),
        ],
        None,
    );
    result(
        "dev/broken",
        "aarch64",
        "flaky",
        vec![test("s/flake", "fail", 1, false), test("s/flake", "pass", 2, true)],
        None,
    );
    result(
        "dev/minimal",
        "aarch64",
        "error",
        vec![],
        Some(&format!("no end marker {evil}")),
    );
    h.finish_run("20261202T000000-1", fedostree_ci::verdict::RunStatus::Finished)
        .unwrap();
    fedostree_ci::status_page::write(&h, &public).unwrap();

    let status = public.join("status");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ci-page-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let index = browse(&status.join("index.html"), Some(&artifacts.join("index.png")));
    for v in ["pass", "fail", "flaky", "error"] {
        assert_eq!(
            index.matches(&format!("data-verdict=\"{v}\"")).count(),
            1,
            "{v}: {index}"
        );
    }
    links_resolve(&index, &status);
    let run_dir = status.join("run/20261202T000000-1");
    let run = browse(&run_dir.join("index.html"), Some(&artifacts.join("run.png")));
    links_resolve(&run, &run_dir);
    assert!(run.contains("data-flaky=\"true\""), "{run}");
    assert!(run.contains("console.log (attempt 2)"), "{run}");
    assert!(run.contains("no end marker &lt;script&gt;"), "{run}");
    let tree = browse(&status.join("tree/dev--broken.html"), None);
    links_resolve(&tree, &status.join("tree"));
    for dom in [&index, &run, &tree] {
        assert!(
            !dom.contains("<script") && !dom.contains("<img"),
            "markup from the history became DOM: {dom}"
        );
        let title = &dom[dom.find("<title>").unwrap()..dom.find("</title>").unwrap()];
        assert!(!title.contains("pwned"), "a script ran: {title}");
    }
    // The copied console log is served as text, escaped nowhere but never interpreted as a page.
    let console = std::fs::read_to_string(run_dir.join("dev--broken/x86_64/attempt-1/console.log")).unwrap();
    assert!(console.contains("booting <script>"));
}
