//! The packager fast path (`fedostree test --add-rpm`) and `fedostree bisect`, through the real
//! binary on dev/minimal: RPMs built here with the rpm crate override the tree on a scratch ref and
//! boot on both arches; a planted regression (one bumped package breaks an installed test) is found
//! by bisect in ⌈log2 n⌉ boots, a script's exit 125 skips a commit, and a history cut by pruning is
//! named as gone.

use fedostree_util::prereq::{run_tests, Prereq, Test, IMAGE_BACKEND};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
#[path = "../compose/tests/common/mod.rs"]
mod pkg;
use common::{fedostree, state_dir, TestDir};

fn main() {
    let both = [IMAGE_BACKEND, &[Prereq::Qemu("x86_64"), Prereq::Qemu("aarch64")]].concat();
    run_tests(vec![
        Test::new(
            "a_packagers_rpms_boot_on_a_scratch_ref_on_both_arches",
            &both,
            a_packagers_rpms_boot_on_a_scratch_ref_on_both_arches,
        ),
        Test::new(
            "bisect_finds_the_planted_regression_on_both_arches",
            &both,
            bisect_finds_the_planted_regression_on_both_arches,
        ),
        Test::new(
            "bisect_over_http_needs_no_compose",
            &[IMAGE_BACKEND, &[Prereq::Qemu("x86_64")]].concat(),
            bisect_over_http_needs_no_compose,
        ),
        Test::new("packager_input_errors", &[], packager_input_errors),
    ]);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A noarch RPM written into `dir` as `N-V-1.noarch.rpm`, as a build names it: `files` are (path,
/// content, full mode).
fn build_rpm(dir: &Path, name: &str, version: &str, requires: &[&str], files: &[(&str, String, u16)]) -> PathBuf {
    let mut p = pkg::Pkg::new(name, version, "noarch");
    for (path, content, mode) in files {
        p = p.file_with(rpm::FileOptions::new(*path).mode(*mode), content);
    }
    for r in requires {
        p = p.requires(rpm::Dependency::any(*r));
    }
    let written = p.write(dir);
    let path = dir.join(format!("{name}-{version}-1.noarch.rpm"));
    std::fs::rename(written, &path).unwrap();
    path
}

/// The refs of `repo`, sorted: what a refused run must leave as it found it.
fn sorted_refs(repo: &Path) -> Vec<String> {
    let mut refs: Vec<String> = ostree(repo, &["refs"]).lines().map(str::to_owned).collect();
    refs.sort();
    refs
}

/// An installed test `suite/name` (keyfile and script) as RPM files.
fn installed_test(suite: &str, name: &str, script: &str) -> Vec<(&'static str, String, u16)> {
    let exec = format!("/usr/libexec/installed-tests/{suite}/{name}.sh");
    let (test_path, script_path) = (
        Box::leak(format!("/usr/share/installed-tests/{suite}/{name}.test").into_boxed_str()) as &str,
        Box::leak(exec.clone().into_boxed_str()) as &str,
    );
    vec![
        (test_path, format!("[Test]\nType=session\nExec={exec}\n"), 0o100644),
        (script_path, format!("#!/bin/sh\n{script}\n"), 0o100755),
    ]
}

/// `fedostree CMD --trees-dir TREES --tree dev/regress --arch ARCH EXTRA…` on `state`.
fn on_regress(state: &Path, trees: &str, cmd: &str, arch: &str, extra: &[&str]) -> Output {
    let mut args = vec![cmd, "--trees-dir", trees, "--tree", "dev/regress", "--arch", arch];
    args.extend_from_slice(extra);
    fedostree(state, &args)
}

/// `probe.sh` in `dir`: the program a bisection runs in the guest.
fn probe_script(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("probe.sh");
    std::fs::write(&p, text).unwrap();
    p
}

/// `fedostree test --tree dev/minimal --arch ARCH ARGS…`.
fn test_dev_minimal(state: &Path, arch: &str, args: &[&str]) -> Output {
    let mut all = vec!["test", "--tree", "dev/minimal", "--arch", arch];
    all.extend_from_slice(args);
    fedostree(state, &all)
}

fn report_has(err: &str, test: &str, arch: &str, status: &str) -> bool {
    err.lines()
        .any(|l| l.contains(status) && l.contains(test) && l.contains(arch))
}

fn a_packagers_rpms_boot_on_a_scratch_ref_on_both_arches() {
    let state = state_dir("packager-scratch");
    let build = TestDir::fresh("packager-scratch-build");
    // A replacement of a tree package at a LOWER version (replaced whatever the version), and a new
    // package whose installed test proves both in the guest.
    let motd = build_rpm(
        &build,
        "fedostree-motd",
        "0.1",
        &[],
        &[(
            "/usr/share/fedostree-motd/rebuilt",
            "by the packager\n".into(),
            0o100644,
        )],
    );
    let mut files = installed_test(
        "packager",
        "hello",
        "test \"$(cat /usr/share/fedostree-motd/rebuilt)\" = 'by the packager' && echo hello from the scratch build",
    );
    files.push(("/usr/share/packager-hello/marker", "1\n".into(), 0o100644));
    build_rpm(&build, "packager-hello", "1.0", &[], &files);

    let out = test_dev_minimal(&state, "all", &["--add-rpm", build.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for arch in ["x86_64", "aarch64"] {
        assert!(report_has(&err, "packager/hello", arch, "PASS"), "{arch}: {err}");
        // The tree's own tests ran on the scratch build too.
        assert!(
            report_has(&err, "fedostree/booted-commit", arch, "PASS"),
            "{arch}: {err}"
        );
    }
    let repo = state.join("repo");
    for arch in ["x86_64", "aarch64"] {
        let scratch_ref = format!("fedostree/dev/{arch}/minimal-scratch/fedostree-motd");
        let scratch = ostree(&repo, &["rev-parse", &scratch_ref]);
        let tree = ostree(&repo, &["rev-parse", &format!("fedostree/dev/{arch}/minimal")]);
        assert_eq!(scratch.len(), 64, "{scratch_ref}: {scratch}");
        assert_ne!(scratch, tree);
        // Its parent is the tree's commit, and the diff says what the packager changed.
        assert_eq!(ostree(&repo, &["rev-parse", &format!("{scratch}^")]), tree);
        let diff = fedostree(&state, &["db", "diff", "--json", &tree, &scratch]);
        let diff: Value = serde_json::from_slice(&diff.stdout).unwrap();
        assert_eq!(diff["added"].to_string().matches("packager-hello").count(), 1, "{diff}");
        assert_eq!(
            diff["downgraded"].to_string().matches("fedostree-motd").count(),
            1,
            "{diff}"
        );
        // The cached image stays what the tree's ref says; the throwaway copy is gone.
        let st: Value = serde_json::from_str(
            &std::fs::read_to_string(state.join(format!("images/dev/minimal/{arch}/state.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(st["commit"], tree.as_str());
    }
    assert!(
        err.contains("fedostree-motd") && err.contains("package changes"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(state.join("images/scratch")).map_or(true, |mut d| d.next().is_none()),
        "a throwaway image was left behind"
    );
    // Nothing was published: no public repository, or no scratch ref in it.
    let public_refs = ostree(&state.join("public"), &["refs"]);
    assert!(!public_refs.contains("scratch"), "{public_refs}");

    // Again, with --publish-to: the same scratch commit (no recompose) is published under that ref.
    let out = test_dev_minimal(
        &state,
        "x86_64",
        &[
            "--no-scratch-delta",
            "--add-rpm",
            build.join("packager-hello-1.0-1.noarch.rpm").to_str().unwrap(),
            motd.to_str().unwrap(),
            "--ref",
            "fedostree/dev/x86_64/minimal-scratch/fedostree-motd",
            "--publish-to",
            "fedostree/dev/x86_64/minimal-packager",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("no changes since"), "the scratch compose is reused: {err}");
    assert_eq!(
        ostree(
            &state.join("public"),
            &["rev-parse", "fedostree/dev/x86_64/minimal-packager"]
        ),
        ostree(
            &repo,
            &["rev-parse", "fedostree/dev/x86_64/minimal-scratch/fedostree-motd"]
        )
    );

    // The same build as an rpm-md repository, by URL: the same packages, so the same scratch commit.
    pkg::createrepo(&build);
    let scratch_ref = "fedostree/dev/x86_64/minimal-scratch/fedostree-motd";
    let before = ostree(&repo, &["rev-parse", scratch_ref]);
    let out = test_dev_minimal(
        &state,
        "x86_64",
        &[
            "--add-repo",
            &format!("file://{}", build.display()),
            "--ref",
            scratch_ref,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(report_has(&err, "packager/hello", "x86_64", "PASS"), "{err}");
    assert_eq!(ostree(&repo, &["rev-parse", scratch_ref]), before, "{err}");

    // An override that breaks dependencies: a clear error naming what is missing; no ref moves.
    let broken = TestDir::fresh("packager-scratch-broken");
    let rpm = build_rpm(
        &broken,
        "packager-broken",
        "1.0",
        &["libdoesnotexist.so.9()(64bit)"],
        &[],
    );
    let refs_before = sorted_refs(&repo);
    let out = test_dev_minimal(&state, "x86_64", &["--add-rpm", rpm.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in ["libdoesnotexist.so.9", "packager-broken", "dev/minimal"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(refs_before, sorted_refs(&repo), "no ref was made or moved");

    // An added package that ships a path of the tree's differently: a file conflict, refused as rpm
    // refuses it, before anything is committed.
    let conflict = TestDir::fresh("packager-scratch-conflict");
    let rpm = build_rpm(
        &conflict,
        "packager-conflict",
        "1.0",
        &[],
        &[("/usr/bin/ls", "#!/bin/sh\necho not busybox\n".into(), 0o100755)],
    );
    let out = test_dev_minimal(&state, "x86_64", &["--add-rpm", rpm.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        "1 file conflict(s)",
        "/usr/bin/ls: ",
        "busybox-",
        "packager-conflict-1.0-1.noarch (file)",
        "differ in type",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(refs_before, sorted_refs(&repo), "no ref was made or moved");
}

/// A tree of its own (dev/minimal plus `regress-probe` from a repository this test writes), composed
/// once per version of the probe.
struct RegressTrees {
    trees: TestDir,
    repo: TestDir,
}

impl RegressTrees {
    fn new() -> RegressTrees {
        let trees = TestDir::fresh("bisect-trees");
        let repo = TestDir::fresh("bisect-repo");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/dev");
        std::fs::create_dir_all(trees.join("dev")).unwrap();
        for f in ["common.yaml", "fedostree-dev.repo"] {
            std::fs::copy(src.join(f), trees.join("dev").join(f)).unwrap();
        }
        std::fs::write(
            trees.join("dev/regress.yaml"),
            "include: common.yaml\nref: fedostree/dev/${basearch}/regress\nrepos:\n  - regress\npackages:\n  - regress-probe\n",
        )
        .unwrap();
        std::fs::write(
            trees.join("dev/regress.repo"),
            format!(
                "[regress]\nname=regress\nbaseurl=file://{}\nenabled=1\ngpgcheck=0\n",
                repo.display()
            ),
        )
        .unwrap();
        RegressTrees { trees, repo }
    }

    /// Version `v` of the probe (the only one in the repository): its installed test fails from
    /// version `first_bad` on.
    fn publish_probe(&self, v: u32, first_bad: u32) {
        let _ = std::fs::remove_dir_all(self.repo.join("Packages"));
        let script = match v >= first_bad {
            true => "echo regress-probe $(cat /usr/share/regress-probe/version) is broken; exit 1",
            false => "echo regress-probe works",
        };
        let mut files = installed_test("regress", "probe", script);
        files.push(("/usr/share/regress-probe/version", format!("{v}\n"), 0o100644));
        build_rpm(
            &self.repo.join("Packages"),
            "regress-probe",
            &v.to_string(),
            &[],
            &files,
        );
        pkg::createrepo(&self.repo);
    }
}

fn bisect_finds_the_planted_regression_on_both_arches() {
    let state = state_dir("bisect");
    let t = RegressTrees::new();
    let trees = t.trees.to_str().unwrap().to_string();
    let compose = |arch: &str| {
        let out = on_regress(&state, &trees, "compose", arch, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    // Eight composes per arch; version 5 of the probe plants the regression.
    let mut commits: Vec<(String, String)> = Vec::new();
    for v in 1..=8 {
        t.publish_probe(v, 5);
        commits.push((compose("x86_64"), compose("aarch64")));
    }
    let bisect = |arch: &str, extra: &[&str], good: &str, bad: &str| {
        let mut args = vec!["--good", good, "--bad", bad, "--json"];
        args.extend_from_slice(extra);
        on_regress(&state, &trees, "bisect", arch, &args)
    };

    // x86_64, by the installed test: 7 candidates, so 3 boots at most.
    let out = bisect("x86_64", &["--test", "regress/probe"], &commits[0].0, &commits[7].0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["first_bad"]["commit"], commits[4].0.as_str(), "{r:#}");
    assert_eq!(r["candidates"], 7);
    let steps = r["steps"].as_array().unwrap();
    assert!(steps.len() <= 3, "{} steps for 7 candidates", steps.len());
    assert!(steps.iter().all(|s| s["verdict"] != "skip"), "{r:#}");
    let upgraded = r["package_diff"]["upgraded"].to_string();
    assert!(
        upgraded.contains("regress-probe") && upgraded.contains("4-1") && upgraded.contains("5-1"),
        "{r:#}"
    );
    for s in steps {
        let dir = PathBuf::from(s["artifacts"].as_str().unwrap());
        assert!(dir.join("console.log").is_file(), "{}", dir.display());
    }
    assert!(
        !state.join("images/scratch").exists()
            || std::fs::read_dir(state.join("images/scratch"))
                .unwrap()
                .next()
                .is_none()
    );

    // aarch64, by a script: it skips version 6 (exit 125), which the search probes second; the
    // first bad commit is still found, and the skip is in the steps.
    let script = probe_script(
        &t.trees,
        "v=$(cat /usr/share/regress-probe/version)\n[ \"$v\" = 6 ] && exit 125\n[ \"$v\" -ge 5 ] && exit 1\nexit 0\n",
    );
    let out = bisect(
        "aarch64",
        &["--script", script.to_str().unwrap()],
        &commits[0].1,
        &commits[7].1,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["first_bad"]["commit"], commits[4].1.as_str(), "{r:#}");
    let skipped: Vec<&Value> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["verdict"] == "skip")
        .collect();
    assert_eq!(skipped.len(), 1, "{r:#}");
    assert_eq!(skipped[0]["commit"], commits[5].1.as_str());
    assert!(skipped[0]["reason"].as_str().unwrap().contains("125"), "{r:#}");

    // History beyond the retention: the commits that are gone are named, nothing is booted.
    ostree(
        &state.join("repo"),
        &["prune", &format!("--delete-commit={}", commits[3].0)],
    );
    let out = bisect("x86_64", &[], &commits[0].0, &commits[7].0);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is gone") && err.contains(&commits[3].0), "{err}");
}

/// Someone with no compose of their own bisects what a server published: every version passed the
/// gate (the regression is one the installed tests do not catch, a script does), the history comes
/// over HTTP with its signatures checked, and the cached image is made from the pulled commits.
fn bisect_over_http_needs_no_compose() {
    let server = state_dir("bisect-http-server");
    let laptop = state_dir("bisect-http-laptop");
    let t = RegressTrees::new();
    let trees = t.trees.to_str().unwrap().to_string();
    let mut published = Vec::new();
    for v in 1..=6 {
        t.publish_probe(v, u32::MAX);
        let out = on_regress(
            &server,
            &trees,
            "test",
            "x86_64",
            &["--retain", "10", "--no-scratch-delta"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        published.push(ostree(
            &server.join("public"),
            &["rev-parse", "fedostree/dev/x86_64/regress"],
        ));
    }
    let (_server, url) = common::serve(&server, &[]);
    let script = probe_script(
        &t.trees,
        "#!/bin/sh\n[ \"$(cat /usr/share/regress-probe/version)\" -lt 4 ]\n",
    );
    let out = on_regress(
        &laptop,
        &trees,
        "bisect",
        "x86_64",
        &[
            "--repo",
            &url,
            "--good",
            &published[0],
            "--bad",
            &published[5],
            "--script",
            script.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["first_bad"]["commit"], published[3].as_str(), "{r:#}");
    assert!(r["steps"].as_array().unwrap().len() <= 3, "{r:#}");
    assert!(
        !laptop.join("repo/refs/heads/fedostree").exists(),
        "the laptop composed nothing"
    );
}

fn packager_input_errors() {
    let state = TestDir::fresh("packager-input-errors");
    let not_rpm = state.join("not.rpm");
    std::fs::write(&not_rpm, "text").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["test", "--tree", "dev/minimal", "--add-rpm", "/nonexistent/x.rpm"],
            "/nonexistent/x.rpm",
        ),
        (
            &["test", "--tree", "dev/minimal", "--add-rpm", not_rpm.to_str().unwrap()],
            "not a readable RPM",
        ),
        (
            &["test", "--tree", "dev/minimal", "--add-repo", "/nonexistent"],
            "not an rpm-md repository",
        ),
        (
            &["test", "--tree", "dev/minimal", "--publish-to", "x"],
            "--publish-to publishes a scratch build",
        ),
        (&["test", "--tree", "dev/minimal", "--ref", "x"], "--ref goes with"),
        (
            &[
                "test",
                "--tree",
                "dev/minimal",
                "--arch",
                "x86_64",
                "--add-rpm",
                not_rpm.to_str().unwrap(),
                "--ref",
                "fedostree/dev/x86_64/minimal",
            ],
            "the tree's own ref",
        ),
        (
            &["bisect", "--tree", "dev/minimal", "--good", "nope", "--bad", "nada"],
            "--good nope",
        ),
        (
            &[
                "bisect",
                "--tree",
                "dev/minimal",
                "--arch",
                "all",
                "--good",
                "a",
                "--bad",
                "b",
            ],
            "one --arch",
        ),
    ];
    for (args, needle) in cases {
        let out = fedostree(&state, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle}: {err}");
    }
    assert!(
        !state.join("repo/refs/heads/fedostree").exists(),
        "an input error committed something"
    );
}
