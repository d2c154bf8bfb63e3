//! End-to-end compose through the real `fedostree` binary: dev repository of real RPMs → libsolv →
//! import → libostree commits for both architectures, checked with the `ostree` CLI.

use fedostree_util::prereq::{run_tests, Prereq, Test};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{fedostree, state_dir, TestDir};
#[path = "../compose/tests/common/mod.rs"]
mod pkg;

/// The scenarios that start from the composed dev/minimal state, each its own test on its own copy.
/// A scenario: what it checks, given its own copy of the good state.
type Scenario = fn(&Path);

const SCENARIOS: &[(&str, Scenario)] = &[
    ("bad_inputs", bad_inputs),
    ("signatures", signatures),
    ("treefile_features", treefile_features),
    ("treefile_edits", treefile_edits),
    ("lockfiles_and_repo_packages", lockfiles_and_repo_packages),
    ("ostree_layers", ostree_layers),
    ("opt_and_usr_local", opt_and_usr_local),
    ("payload_attributes", payload_attributes),
    ("scriptlets_and_file_triggers", scriptlets_and_file_triggers),
    (
        "mirrors_fail_over_and_downloads_resume",
        mirrors_fail_over_and_downloads_resume,
    ),
];

fn main() {
    let mut tests = vec![
        Test::new(
            "compose_both_arches_noop_bump_and_diff",
            &[],
            compose_both_arches_noop_bump_and_diff,
        ),
        Test::new(
            "file_conflicts_are_refused_as_rpm_refuses_them",
            &[],
            file_conflicts_are_refused_as_rpm_refuses_them,
        ),
        Test::new(
            "full_disk_is_the_machine_not_the_input",
            &[Prereq::Root],
            full_disk_is_the_machine_not_the_input,
        ),
    ];
    for &(name, scenario) in SCENARIOS {
        tests.push(Test::with(name, &[], move || {
            let state = TestDir::fresh(&format!("compose-{name}-state"));
            copy_state(&good_state(), &state);
            scenario(&state);
        }));
    }
    run_tests(tests);
}

/// What every scenario starts from: dev/minimal composed on both arches, then composed again after a
/// package bump (what `compose_both_arches_noop_bump_and_diff` checks on its way). Made once per test
/// run (nextest runs each test in a process of its own: a lock, and a marker once it is complete); the
/// scenarios bump packages and compose into their state, so each works on a copy.
fn good_state() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let run = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| std::process::id().to_string());
    let dir = tmp.join(format!("compose-good-{}", &run[..run.len().min(8)]));
    let _lock = fedostree_util::lock::FileLock::acquire(&tmp.join("compose-good.lock")).unwrap();
    if !dir.join(".complete").exists() {
        // Earlier runs' states go: each is hundreds of MB.
        for e in std::fs::read_dir(tmp).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("compose-good-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let state = state_dir(&dir.file_name().unwrap().to_string_lossy());
        compose_dev_minimal_noop_bump_and_diff(&state);
        std::fs::write(state.join(".complete"), "").unwrap();
        // Kept for the other scenarios of this run (a TestDir would remove it).
        std::mem::forget(state);
    }
    dir
}

/// `cp -a` of a state directory (the shared Debian cache stays a symlink).
fn copy_state(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "copying {} to {}", from.display(), to.display());
}

/// `fedostree compose --tree dev/minimal --arch ARCH --write-compose-json CJ`
fn compose_minimal(state: &Path, arch: &str, cj: &Path) -> Output {
    let cj = cj.to_str().unwrap();
    fedostree(
        state,
        &[
            "compose",
            "--tree",
            "dev/minimal",
            "--arch",
            arch,
            "--write-compose-json",
            cj,
        ],
    )
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first compose of dev/minimal on both arches, no-op composes, the compose lock, a bump and its
/// `db diff`, a dry run, a closed stdout: the state every scenario then starts from ([`good_state`]).
fn compose_both_arches_noop_bump_and_diff() {
    good_state();
}

fn compose_dev_minimal_noop_bump_and_diff(state: &Path) {
    let repo = state.join("repo");
    let cj = state.join("compose.json");
    ok(&compose_minimal(state, "all", &cj));
    let results = json(&cj);
    for (r, arch) in results.as_array().unwrap().iter().zip(["x86_64", "aarch64"]) {
        assert_eq!(r["arch"], arch);
        assert_eq!(r["changed"], true);
        assert_eq!(r["ref"], format!("fedostree/dev/{arch}/minimal"));
        let commit = r["ostree-commit"].as_str().unwrap();
        assert_eq!(
            ostree(&repo, &["rev-parse", &format!("fedostree/dev/{arch}/minimal")]).trim(),
            commit
        );
        // metadata
        let md = |k: &str| ostree(&repo, &["show", commit, &format!("--print-metadata-key={k}")]);
        assert!(md("version").starts_with("'1."), "{}", md("version"));
        assert_eq!(md("fedostree.arch").trim(), format!("'{arch}'"));
        assert_eq!(md("fedostree.stream").trim(), "'dev'");
        assert!(md("rpmostree.inputhash").contains(r["inputhash"].as_str().unwrap()));
        assert!(md("rpmostree.rpmdb.pkglist").contains("'busybox'"));
        // OSTree layout
        let ls = |p: &str| ostree(&repo, &["ls", "-R", commit, p]);
        assert!(ls("/usr/etc").contains("/usr/etc/os-release"));
        assert!(
            ostree(&repo, &["ls", commit, "/"])
                .lines()
                .all(|l| !l.ends_with(" /etc")),
            "no /etc in commit"
        );
        assert_eq!(
            ostree(&repo, &["ls", commit, "/var"]).lines().count(),
            1,
            "/var is empty"
        );
        let modules = ls("/usr/lib/modules");
        assert!(
            modules.contains("/vmlinuz") && modules.contains("/initramfs.img"),
            "{modules}"
        );
        assert!(ostree(&repo, &["ls", commit, "/ostree"]).contains("-> sysroot/ostree"));
        assert!(ostree(&repo, &["cat", commit, "/usr/lib/fedostree/pkglist"]).contains("busybox-"));
    }

    // Unchanged inputs: no new commit.
    let out = compose_minimal(state, "x86_64", &cj);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no changes since"));
    let r = json(&cj);
    assert_eq!(r["changed"], false);
    assert_eq!(r["ostree-commit"], results[0]["ostree-commit"]);

    // A compose killed by SIGKILL left its scratch dir behind, and another compose holds the lock: this
    // one says what it waits for, then runs, and sweeps the dead one's leftovers.
    let stale = state.join("tmp/compose-999999999-leftover");
    std::fs::create_dir_all(stale.join("rootfs/usr")).unwrap();
    let live = state.join("tmp/compose-1-init"); // pid 1 exists: never swept
    std::fs::create_dir_all(&live).unwrap();
    let lock = fedostree_util::lock::FileLock::acquire_announced(&state.join("compose.lock"), "compose").unwrap();
    let mut waiting = Command::new(env!("CARGO_BIN_EXE_fedostree"))
        .env("FEDOSTREE_STATE_DIR", state)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["compose", "--tree", "dev/minimal", "--arch", "x86_64"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(waiting.stderr.take().unwrap());
    // The dev repository is brought up to date (outside the compose lock), and the compose says it
    // started, before it waits.
    let mut first = String::new();
    while first.is_empty() || first.starts_with("devrepo") || first.contains(": composing ") {
        first.clear();
        std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    }
    let me = std::process::id();
    assert!(
        first.contains("waiting for another compose to finish") && first.contains(&format!("held by pid {me}")),
        "{first}"
    );
    assert!(stale.exists(), "swept before the lock was ours");
    drop(lock);
    assert!(waiting.wait().unwrap().success());
    assert!(!stale.exists(), "a dead compose's scratch dir was not swept");
    assert!(live.exists(), "a live process's scratch dir was swept");
    std::fs::remove_dir(&live).unwrap();

    // One package bumped in the dev repo: a new commit whose diff is exactly that upgrade.
    ok(&fedostree(
        state,
        &["devrepo", "--arch", "x86_64", "--bump", "fedostree-base"],
    ));
    ok(&compose_minimal(state, "x86_64", &cj));
    let r = json(&cj);
    assert_eq!(r["changed"], true);
    assert_eq!(r["parent"], results[0]["ostree-commit"]);
    let reff = "fedostree/dev/x86_64/minimal";
    let diff: serde_json::Value = serde_json::from_str(&ok(&fedostree(
        state,
        &["db", "diff", "--json", &format!("{reff}^"), reff],
    )))
    .unwrap();
    assert_eq!(diff["upgraded"].as_array().unwrap().len(), 1, "{diff}");
    assert_eq!(diff["upgraded"][0]["name"], "fedostree-base");
    assert_eq!(diff["upgraded"][0]["from"], "1.0-1");
    assert_eq!(diff["upgraded"][0]["to"], "1.0-2");
    assert!(diff["added"].as_array().unwrap().is_empty() && diff["removed"].as_array().unwrap().is_empty());
    let text = ok(&fedostree(state, &["db", "diff", &format!("{reff}^"), reff]));
    assert!(text.contains("Upgraded:\n  fedostree-base 1.0-1 -> 1.0-2"), "{text}");

    // Dry run resolves and commits nothing.
    let before = ostree(&repo, &["rev-parse", reff]);
    let dry = ok(&fedostree(
        state,
        &["compose", "--tree", "dev/broken", "--arch", "x86_64", "--dry-run"],
    ));
    assert!(dry.contains("fedostree-installed-tests-broken-"), "{dry}");
    assert_eq!(ostree(&repo, &["rev-parse", reff]), before);
    assert!(!ostree(&repo, &["refs"]).contains("broken"));

    // A reader that stops early (`| head`) ends the output, not the command: no panic, exit 0.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedostree"))
        .env("FEDOSTREE_STATE_DIR", state)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["compose", "--tree", "dev/broken", "--arch", "x86_64", "--dry-run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{:?}\n{stderr}",
        out.status
    );
}

/// rpm-ostree's treefile features on real RPMs: variables, `releasever`, conditional includes (a
/// file, an inline treefile, and a false one whose file does not exist), inline `postprocess`
/// scripts; `--print-only` shows the merged result without touching any repository.
fn treefile_features(good_state: &Path) {
    let work = TestDir::fresh("compose-treefile-features");
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/dev");
    for f in ["common.yaml", "fedostree-dev.repo"] {
        std::fs::copy(trees.join(f), work.join(f)).unwrap();
    }
    std::fs::write(work.join("motd.yaml"), "packages: [fedostree-motd]\n").unwrap();
    let tree = work.join("featured.yaml");
    std::fs::write(
        &tree,
        r#"include: common.yaml
ref: test/${basearch}/${flavour}/${releasever}
releasever: 7
variables:
  flavour: featured
conditional-include:
  - if: [basearch == "x86_64", releasever >= 7]
    include: motd.yaml
  - if: flavour == "featured"
    include:
      add-commit-metadata: {fedostree.flavour: "${flavour}"}
  - if: releasever > 7
    include: does-not-exist.yaml
postprocess:
  - |
    #!/bin/sh
    set -e
    echo first > /usr/share/fedostree-postprocess
  - |
    #!/bin/sh
    set -e
    echo "second after $(cat /usr/share/fedostree-postprocess)" > /usr/share/fedostree-postprocess
"#,
    )
    .unwrap();
    let tree = tree.to_str().unwrap();

    // --print-only: a state dir that does not even exist stays absent.
    let nowhere = work.join("no-state");
    let printed = ok(&fedostree(
        &nowhere,
        &["compose", "--tree", tree, "--arch", "all", "--print-only"],
    ));
    assert!(!nowhere.exists(), "--print-only wrote to the state dir");
    let printed: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let [x86, arm] = [&printed[0], &printed[1]];
    assert_eq!(x86["ref"], "test/x86_64/featured/7");
    assert_eq!(arm["ref"], "test/aarch64/featured/7");
    assert_eq!(
        (x86["basearch"].as_str(), x86["releasever"].as_u64()),
        (Some("x86_64"), Some(7))
    );
    let has_motd = |t: &serde_json::Value| t["packages"].as_array().unwrap().iter().any(|p| p == "fedostree-motd");
    assert!(
        has_motd(x86) && !has_motd(arm),
        "conditional include by arch: {printed}"
    );
    assert_eq!(x86["add-commit-metadata"]["fedostree.flavour"], "featured");
    assert_eq!(x86["postprocess"].as_array().unwrap().len(), 2);

    let out = fedostree(good_state, &["compose", "--tree", tree, "--arch", "x86_64"]);
    ok(&out);
    let repo = good_state.join("repo");
    let r = "test/x86_64/featured/7";
    assert_eq!(
        ostree(&repo, &["cat", r, "/usr/share/fedostree-postprocess"]),
        "second after first\n",
        "the inline scripts ran in order, in the tree"
    );
    let meta = ostree(&repo, &["show", "--print-metadata-key=fedostree.flavour", r]);
    assert_eq!(meta.trim(), "'featured'");
    assert!(
        ostree(&repo, &["ls", r, "/usr/etc/motd"]).contains("motd"),
        "fedostree-motd came from motd.yaml"
    );

    // A failing inline script is a compose error that names it; the ref stays where it was.
    let before = ostree(&repo, &["rev-parse", r]);
    let failing = std::fs::read_to_string(tree)
        .unwrap()
        .replace("set -e\n    echo first", "exit 3\n    echo first");
    std::fs::write(tree, failing).unwrap();
    let out = fedostree(good_state, &["compose", "--tree", tree, "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("postprocess script 0 of the treefile failed"));
    assert_eq!(ostree(&repo, &["rev-parse", r]), before);
}

/// rpm-ostree's keys that edit the tree, on real RPMs: `remove-from-packages`, `add-files`,
/// `mutate-os-release`, `tmp-is-dir`, `boot-location`, `readonly-executables`, `container-cmd`, `rpmdb`;
/// the includer's scalars win over common.yaml's. Bad values are errors naming the key.
fn treefile_edits(good_state: &Path) {
    let work = TestDir::fresh("compose-treefile-edits");
    std::fs::create_dir_all(work.join("files")).unwrap();
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/dev");
    for f in ["common.yaml", "fedostree-dev.repo"] {
        std::fs::copy(trees.join(f), work.join(f)).unwrap();
    }
    std::fs::write(work.join("files/hello.sh"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(
        work.join("files/hello.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    std::fs::write(work.join("files/added.conf"), "added=1\n").unwrap();
    let tree = work.join("edited.yaml");
    let text = r#"include: common.yaml
ref: test/edited
packages: [fedostree-motd]
automatic-version-prefix: "2.0"
remove-from-packages:
  - [fedostree-motd, "/motd$"]
  - [not-in-this-tree, "."]
add-files:
  - [files/hello.sh, /usr/bin/fedostree-hello]
  - [files/added.conf, /etc/fedostree-added.conf]
mutate-os-release: "1.0"
tmp-is-dir: false
boot-location: new
readonly-executables: true
container-cmd: [/usr/bin/fedostree-hello, --world]
rpmdb: host
"#;
    std::fs::write(&tree, text).unwrap();
    let out = fedostree(
        good_state,
        &["compose", "--tree", tree.to_str().unwrap(), "--arch", "x86_64"],
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remove-from-packages: package `not-in-this-tree` is not in the tree")
            && stderr.contains("boot-location: new is deprecated"),
        "{stderr}"
    );
    let repo = good_state.join("repo");
    let r = "test/edited";
    let ls = |p: &str| ostree(&repo, &["ls", r, p]);
    let fails = |p: &str| {
        !Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["ls", r, p])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(fails("/usr/etc/motd"), "remove-from-packages left /usr/etc/motd");
    assert_eq!(
        ostree(&repo, &["cat", r, "/usr/bin/fedostree-hello"]),
        "#!/bin/sh\necho hello\n"
    );
    assert!(
        ls("/usr/bin/fedostree-hello").starts_with("-00750 0 0"),
        "{}",
        ls("/usr/bin/fedostree-hello")
    );
    assert_eq!(ostree(&repo, &["cat", r, "/usr/etc/fedostree-added.conf"]), "added=1\n");
    assert!(
        ls("/usr/bin/busybox").starts_with("-00555"),
        "readonly-executables: {}",
        ls("/usr/bin/busybox")
    );
    let os_release = ostree(&repo, &["cat", r, "/usr/lib/os-release"]);
    assert!(
        os_release.contains("PRETTY_NAME=\"fedostree dev 2.0\"") && os_release.ends_with("OSTREE_VERSION='2.0'\n"),
        "{os_release}"
    );
    assert!(ls("/tmp").contains("/tmp -> sysroot/tmp"), "{}", ls("/tmp"));
    let boot = ostree(&repo, &["ls", r, "/usr/lib/ostree-boot"]);
    assert!(boot.contains("vmlinuz-") && boot.contains("initramfs-"), "{boot}");
    let cmd = ostree(&repo, &["show", "--print-metadata-key=ostree.container-cmd", r]);
    assert_eq!(cmd.trim(), "['/usr/bin/fedostree-hello', '--world']");

    // Bad values name the key; nothing is committed.
    let before = ostree(&repo, &["rev-parse", r]);
    for (bad, needle) in [
        (
            text.replace("\"/motd$\"", "\"(unclosed\""),
            "`remove-from-packages`: entry 1 (`fedostree-motd`)",
        ),
        (
            text.replace("/usr/bin/fedostree-hello]", "/var/lib/hello]"),
            "edited.yaml: line 8: `add-files`: unsupported destination `/var/lib/hello`",
        ),
        (
            text.replace("files/added.conf", "files/missing.conf"),
            "files/missing.conf is not a file",
        ),
        (
            text.replace("rpmdb: host", "rpmdb: rocksdb"),
            "unknown variant `rocksdb`",
        ),
        (
            text.replace("boot-location: new", "boot-location: new\nboot_location: modules"),
            "set twice",
        ),
    ] {
        std::fs::write(&tree, &bad).unwrap();
        let out = fedostree(
            good_state,
            &["compose", "--tree", tree.to_str().unwrap(), "--arch", "x86_64"],
        );
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        assert_eq!(ostree(&repo, &["rev-parse", r]), before);
    }

    // check-passwd/check-groups files beside the treefile: matching ones compose; the same inputs
    // again are a no-op, and a changed file (still matching) is a new input.
    std::fs::write(work.join("files/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(work.join("files/group"), "root:x:0:\n").unwrap();
    std::fs::write(
        &tree,
        format!("{text}check-passwd: {{type: file, filename: files/passwd}}\ncheck-groups: {{type: file, filename: files/group}}\n"),
    )
    .unwrap();
    let compose = || {
        fedostree(
            good_state,
            &["compose", "--tree", tree.to_str().unwrap(), "--arch", "x86_64"],
        )
    };
    ok(&compose());
    let with_files = ostree(&repo, &["rev-parse", r]);
    let out = compose();
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no changes"));
    std::fs::write(work.join("files/passwd"), "root:x:0:0:the root:/root:/bin/sh\n").unwrap();
    ok(&compose());
    assert_ne!(
        ostree(&repo, &["rev-parse", r]),
        with_files,
        "the check files are compose inputs"
    );
}

/// Lockfiles as rpm-ostree and coreos-assembler use them, and `repo-packages`, on real repositories:
/// `old` is a copy of the dev repository, then fedostree-motd is bumped in the dev repository, so two
/// releases exist in two repositories.
fn lockfiles_and_repo_packages(good_state: &Path) {
    let work = TestDir::fresh("compose-lockfiles");
    let old = copy_devrepo(good_state, &work.join("old-repo"));
    ok(&fedostree(
        good_state,
        &["devrepo", "--arch", "x86_64", "--bump", "fedostree-motd"],
    ));
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/dev");
    let dir = work.join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["common.yaml", "fedostree-dev.repo"] {
        std::fs::copy(trees.join(f), dir.join(f)).unwrap();
    }
    let key = good_state.join("devrepo/RPM-GPG-KEY-fedostree-dev");
    std::fs::write(
        dir.join("old.repo"),
        format!(
            "[old]\nbaseurl=file://{}\ngpgcheck=1\ngpgkey=file://{}\n",
            old.display(),
            key.display()
        ),
    )
    .unwrap();
    let tree = dir.join("locked.yaml");
    let write_tree = |extra: &str| {
        std::fs::write(
            &tree,
            format!("include: common.yaml\nref: test/locked\npackages: [fedostree-motd]\n{extra}"),
        )
        .unwrap();
    };
    let t = tree.to_str().unwrap();
    // --dry-run prints the solved set, a package per line.
    let motd = |out: &Output| -> String {
        let listed = ok(out);
        listed
            .lines()
            .map(str::trim)
            .find(|p| p.starts_with("fedostree-motd-"))
            .unwrap()
            .to_owned()
    };
    let dry = |extra: &[&str]| {
        let mut args = vec!["compose", "--tree", t, "--arch", "x86_64", "--dry-run"];
        args.extend(extra);
        fedostree(good_state, &args)
    };

    // Both repositories: the newest release wins; `repo-packages` pins it to the old repository.
    write_tree("repos: [old]\n");
    let newest = motd(&dry(&[]));
    write_tree("repos: [old]\nrepo-packages:\n  - repo: old\n    packages: [fedostree-motd]\n");
    let pinned = motd(&dry(&[]));
    assert_ne!(newest, pinned, "repo-packages took fedostree-motd from `old`");

    // --ex-write-lockfile-to writes the solved set; composing with it gives the same set.
    write_tree("");
    let lock = work.join("lock.json");
    let l = lock.to_str().unwrap();
    let out = dry(&["--ex-write-lockfile-to", l]);
    assert_eq!(motd(&out), newest);
    let written = json(&lock);
    assert_eq!(
        written["packages"]["fedostree-motd"]["evra"]
            .as_str()
            .map(|e| format!("fedostree-motd-{e}")),
        Some(newest.clone())
    );
    assert!(written["packages"]["busybox"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(written["metadata"]["rpmmd_repos"]["fedostree-dev"]["generated"].is_string());

    // Locked to the old release, in a lockfile-repos repository (offering only locked packages).
    let old_evra = pinned.trim_start_matches("fedostree-motd-");
    std::fs::write(
        dir.join("manifest-lock.overrides.yaml"),
        format!("packages:\n  fedostree-motd:\n    evra: {old_evra}\n"),
    )
    .unwrap();
    // As coreos-assembler keeps them: the lock beside the treefile, the override after it.
    std::fs::copy(&lock, dir.join("manifest-lock.x86_64.json")).unwrap();
    write_tree("lockfile-repos: [old]\n");
    let out = dry(&[]);
    assert_eq!(
        motd(&out),
        pinned,
        "the override beside the treefile pins the old release"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Loaded lockfiles:"));
    // Strict: every package must be locked; the lockfiles lock them all.
    let out = dry(&["--ex-lockfile-strict"]);
    assert_eq!(motd(&out), pinned);
    // An explicit --ex-lockfile comes last: the written lock's newest release wins again.
    assert_eq!(motd(&dry(&["--ex-lockfile", l])), newest);
    std::fs::remove_file(dir.join("manifest-lock.x86_64.json")).unwrap();

    // A lock no repository satisfies: a warning naming it, then the depsolve fails; nothing moves.
    std::fs::write(
        dir.join("manifest-lock.overrides.yaml"),
        "packages:\n  fedostree-motd:\n    evr: 0.1-1\n",
    )
    .unwrap();
    let out = fedostree(good_state, &["compose", "--tree", t, "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("couldn't find locked package `fedostree-motd-0.1-1`") && err.contains("fedostree-motd"),
        "{err}"
    );
    assert!(!good_state.join("repo/refs/heads/test/locked").exists());
    std::fs::remove_file(dir.join("manifest-lock.overrides.yaml")).unwrap();

    // Strict with a lockfile that misses a needed package; a malformed lockfile; repo-packages naming
    // a repository the tree does not enable.
    std::fs::write(
        work.join("partial.json"),
        r#"{"packages": {"busybox": {"evr": "0:1-1"}}}"#,
    )
    .unwrap();
    std::fs::write(work.join("bad.json"), r#"{"packages": {"busybox": {"evra": "1-1"}}}"#).unwrap();
    let partial = work.join("partial.json");
    let bad = work.join("bad.json");
    for (args, extra, needle) in [
        (
            vec!["--ex-lockfile", partial.to_str().unwrap(), "--ex-lockfile-strict"],
            "",
            "no package provides",
        ),
        (
            vec!["--ex-lockfile", bad.to_str().unwrap()],
            "",
            "bad.json: package `busybox` has a malformed evra `1-1`",
        ),
        (
            vec![],
            "repo-packages:\n  - repo: nosuch\n    packages: [x]\n",
            "repository `nosuch` is not enabled",
        ),
        (vec!["--ex-lockfile-strict"], "", "--ex-lockfile-strict: no lockfile"),
    ] {
        write_tree(extra);
        let mut a = vec!["compose", "--tree", t, "--arch", "x86_64"];
        a.extend(args);
        let out = fedostree(good_state, &a);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// `ostree-layers` and `ostree-override-layers` as coreos-assembler uses them: `overlay.d/NAME` beside
/// the treefile becomes the commit `overlay/NAME`, checked out over the packages before the
/// scriptlets; a ref already in the repository works too. A layer file that differs from a package's
/// is an error unless the layer overrides.
fn ostree_layers(good_state: &Path) {
    let work = TestDir::fresh("compose-layers");
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("trees/dev");
    std::fs::create_dir_all(work.join("overlay.d/10-extra/usr/bin")).unwrap();
    std::fs::create_dir_all(work.join("overlay.d/20-motd/etc")).unwrap();
    for f in ["common.yaml", "fedostree-dev.repo"] {
        std::fs::copy(trees.join(f), work.join(f)).unwrap();
    }
    std::fs::write(
        work.join("overlay.d/10-extra/usr/bin/fedostree-layered"),
        "#!/bin/sh\necho layered\n",
    )
    .unwrap();
    std::fs::set_permissions(
        work.join("overlay.d/10-extra/usr/bin/fedostree-layered"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(work.join("overlay.d/20-motd/etc/motd"), "from a layer\n").unwrap();
    let src = work.join("src");
    std::fs::create_dir_all(src.join("usr/share/fedostree-src")).unwrap();
    std::fs::write(src.join("usr/share/fedostree-src/file"), "committed before\n").unwrap();
    let repo = good_state.join("repo");
    ostree(
        &repo,
        &[
            "commit",
            "--branch=test/layer-src",
            "--owner-uid=0",
            "--owner-gid=0",
            &format!("--tree=dir={}", src.display()),
        ],
    );
    let tree = work.join("layered.yaml");
    let t = tree.to_str().unwrap();
    let write_tree = |extra: &str| {
        std::fs::write(
            &tree,
            format!("include: common.yaml\nref: test/layered\npackages: [fedostree-motd]\n{extra}"),
        )
        .unwrap();
    };
    let compose = || fedostree(good_state, &["compose", "--tree", t, "--arch", "x86_64"]);
    let r = "test/layered";

    write_tree("ostree-layers: [overlay/10-extra, test/layer-src]\nostree-override-layers: [overlay/20-motd]\n");
    ok(&compose());
    assert_eq!(
        ostree(&repo, &["cat", r, "/usr/bin/fedostree-layered"]),
        "#!/bin/sh\necho layered\n"
    );
    assert!(
        ostree(&repo, &["ls", r, "/usr/bin/fedostree-layered"]).starts_with("-00555 0 0"),
        "overlay executables are committed read-only, as coreos-assembler does"
    );
    assert_eq!(
        ostree(&repo, &["cat", r, "/usr/share/fedostree-src/file"]),
        "committed before\n"
    );
    assert_eq!(
        ostree(&repo, &["cat", r, "/usr/etc/motd"]),
        "from a layer\n",
        "the override layer won"
    );
    let first = ostree(&repo, &["rev-parse", r]);
    // Same overlays: same overlay commits, so nothing to compose.
    let out = compose();
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no changes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A changed overlay file is a new input.
    std::fs::write(
        work.join("overlay.d/10-extra/usr/bin/fedostree-layered"),
        "#!/bin/sh\necho changed\n",
    )
    .unwrap();
    ok(&compose());
    assert_ne!(ostree(&repo, &["rev-parse", r]), first);
    let second = ostree(&repo, &["rev-parse", r]);

    // Not overriding: the motd differs from fedostree-motd's, so the compose fails naming the layer.
    for (extra, needle) in [
        (
            "ostree-layers: [overlay/20-motd]\n",
            "ostree-layers: `overlay/20-motd`: /etc/motd differs from what the packages put there",
        ),
        (
            "ostree-layers: [overlay/nosuch]\n",
            "ostree-layers: ref `overlay/nosuch` is not in",
        ),
        (
            "ostree-override-layers: [no/such/ref]\n",
            "ostree-override-layers: ref `no/such/ref` is not in",
        ),
    ] {
        write_tree(extra);
        let out = compose();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        assert_eq!(ostree(&repo, &["rev-parse", r]), second);
    }

    // `container: true`: no kernel and no busybox; it composes, and is refused by `image` by name.
    let base = work.join("container.yaml");
    std::fs::write(
        &base,
        "ref: test/container\nrepos: [fedostree-dev]\npackages: [fedostree-motd]\ncontainer: true\nrecommends: false\n",
    )
    .unwrap();
    let cj = work.join("container.json");
    let b = base.to_str().unwrap();
    ok(&fedostree(
        good_state,
        &[
            "compose",
            "--tree",
            b,
            "--arch",
            "x86_64",
            "--write-compose-json",
            cj.to_str().unwrap(),
        ],
    ));
    assert_eq!(json(&cj)["bootable"], false);
    let files = ostree(&repo, &["ls", "-R", "test/container", "/usr"]);
    assert!(files.contains("/usr/etc/motd") && !files.contains("vmlinuz"), "{files}");
    assert!(
        ostree(&repo, &["ls", "test/container", "/tmp"]).starts_with("d01777"),
        "tmp-is-dir is implied"
    );
    let out = fedostree(good_state, &["image", "--tree", b, "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the tree is not bootable (`container: true`)"));
    // Without it, the same tree is refused for want of a kernel.
    std::fs::write(
        &base,
        "ref: test/container2\nrepos: [fedostree-dev]\npackages: [fedostree-motd]\nrecommends: false\n",
    )
    .unwrap();
    let out = fedostree(good_state, &["compose", "--tree", b, "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no kernel in the tree"));
}

/// Packages with `/opt` and `/usr/local` content compose as rpm-ostree composes them: `/opt/NAME`
/// lives in `/usr/lib/opt/NAME`, linked from `/opt` by tmpfiles at boot; with `opt-usrlocal: var` (the
/// default) `/usr/local` links to `/var/usrlocal`, whose directories tmpfiles makes (a file there is
/// dropped, named); with `root` both are plain directories.
fn opt_and_usr_local(good_state: &Path) {
    let work = TestDir::fresh("compose-opt");
    let repo_dir = work.join("repo");
    pkg::Pkg::new("optapp", "1.0", "noarch")
        .dir("/opt/optapp")
        .dir("/opt/optapp/bin")
        .file("/opt/optapp/bin/run", "#!/bin/sh\necho run\n", 0o755)
        .dir("/usr/local/share/optapp")
        .file("/usr/local/bin/optapp-tool", "tool\n", 0o755)
        .write(&repo_dir);
    pkg::createrepo(&repo_dir);
    let tree = work.join("opt.yaml");
    std::fs::write(
        work.join("r.repo"),
        format!("[r]\nbaseurl=file://{}\n", repo_dir.display()),
    )
    .unwrap();
    let t = tree.to_str().unwrap();
    let repo = good_state.join("repo");
    for (mode, r) in [("var", "test/opt-var"), ("root", "test/opt-root")] {
        std::fs::write(
            &tree,
            format!("ref: {r}\nrepos: [r]\npackages: [optapp]\ncontainer: true\nopt-usrlocal: {mode}\n"),
        )
        .unwrap();
        let out = fedostree(good_state, &["compose", "--tree", t, "--arch", "x86_64"]);
        ok(&out);
        assert_eq!(
            ostree(&repo, &["cat", r, "/usr/lib/opt/optapp/bin/run"]),
            "#!/bin/sh\necho run\n"
        );
        let conf = ostree(&repo, &["cat", r, "/usr/lib/tmpfiles.d/fedostree-opt-usrlocal.conf"]);
        assert!(
            conf.contains("L /opt/optapp - - - - ../../usr/lib/opt/optapp"),
            "{conf}"
        );
        let ls = |p: &str| ostree(&repo, &["ls", "-d", r, p]);
        if mode == "var" {
            assert!(ls("/opt").contains("/opt -> var/opt"), "{}", ls("/opt"));
            assert!(
                ls("/usr/local").contains("/usr/local -> ../var/usrlocal"),
                "{}",
                ls("/usr/local")
            );
            assert!(
                conf.contains("d /var/usrlocal 0755 0 0 - -") && conf.contains("d /var/usrlocal/share/optapp 0755"),
                "{conf}"
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("dropping /var/usrlocal/bin/optapp-tool"), "{err}");
        } else {
            assert!(ls("/opt").starts_with("d00755"), "{}", ls("/opt"));
            assert_eq!(ostree(&repo, &["cat", r, "/usr/local/bin/optapp-tool"]), "tool\n");
            assert!(!conf.contains("usrlocal"), "{conf}");
        }
    }
    std::fs::write(
        &tree,
        "ref: test/opt-so\nrepos: [r]\npackages: [optapp]\ncontainer: true\nopt-usrlocal: stateoverlay\n",
    )
    .unwrap();
    let out = fedostree(good_state, &["compose", "--tree", t, "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ostree-state-overlay@"));
}

/// Every attribute a payload carries reaches the commit: each entry of the RPM header's file list is
/// looked up in the committed tree (type, permission bits with setuid/setgid, owner, size, content
/// digest, symlink target, hardlink sets as one object, capabilities as `security.capability`), and
/// what the header marks %ghost, or %doc under `documentation: false`, is absent.
fn payload_attributes(good_state: &Path) {
    use rpm::{FileFlags, FileMode, FileOptions};
    let work = TestDir::fresh("compose-attributes");
    let repo_dir = work.join("repo");
    let member = |path: &str| FileOptions::new(path).mode(FileMode::regular(0o755)).hardlink("pair");
    let rpm_path = pkg::Pkg::new("attrs", "1.0", "noarch")
        .file_with(
            FileOptions::new("/usr/bin/attrs-ping")
                .mode(FileMode::regular(0o755))
                .caps("cap_net_raw=ep")
                .unwrap(),
            "#!/bin/sh\necho ping\n",
        )
        .file_with(
            FileOptions::new("/usr/bin/attrs-admin")
                .mode(FileMode::regular(0o750))
                .caps("cap_net_admin,cap_sys_time+p")
                .unwrap(),
            "admin\n",
        )
        .file("/usr/bin/attrs-suid", "suid\n", 0o4755)
        .file("/usr/bin/attrs-sgid", "sgid\n", 0o2711)
        .file_with(member("/usr/libexec/attrs/one"), "the same bytes\n")
        .file_with(member("/usr/libexec/attrs/two"), "the same bytes\n")
        .dir("/usr/share/attrs")
        .file("/usr/share/attrs/empty", "", 0o644)
        .file("/usr/share/attrs/with space", "spaced\n", 0o644)
        .file("/usr/share/attrs/ünïcødé-名前", "utf-8\n", 0o600)
        .symlink("/usr/bin/attrs-link", "attrs-ping")
        .file_with(
            FileOptions::new("/etc/attrs.conf")
                .config()
                .noreplace()
                .mode(FileMode::regular(0o640)),
            "setting=1\n",
        )
        .file_with(FileOptions::new("/usr/share/doc/attrs/README").doc(), "docs\n")
        .ghost("/var/log/attrs.log")
        .write(&repo_dir);
    pkg::createrepo(&repo_dir);
    let tree = work.join("attrs.yaml");
    std::fs::write(
        work.join("r.repo"),
        format!("[r]\nbaseurl=file://{}\n", repo_dir.display()),
    )
    .unwrap();
    std::fs::write(
        &tree,
        "ref: test/attrs\nrepos: [r]\npackages: [attrs]\ncontainer: true\ndocumentation: false\n",
    )
    .unwrap();
    ok(&fedostree(
        good_state,
        &["compose", "--tree", tree.to_str().unwrap(), "--arch", "x86_64"],
    ));
    let repo = good_state.join("repo");

    // `ostree ls -R -C -X`: "MODE UID GID SIZE CHECKSUM { XATTRS } PATH[ -> TARGET]".
    let listing = ostree(&repo, &["ls", "-R", "-C", "-X", "test/attrs"]);
    let mut committed = std::collections::HashMap::new();
    for line in listing.lines() {
        let (head, rest) = line.split_once(" { ").unwrap();
        let (xattrs, name) = rest.split_once(" } ").unwrap();
        let f: Vec<&str> = head.split_whitespace().collect();
        let (path, target) = match name.split_once(" -> ") {
            Some((p, t)) => (p.to_owned(), Some(t.to_owned())),
            None => (name.to_owned(), None),
        };
        committed.insert(
            path,
            (
                f[0].to_owned(),
                f[1].to_owned(),
                f[2].to_owned(),
                f[3].to_owned(),
                f[4].to_owned(),
                xattrs.to_owned(),
                target,
            ),
        );
    }
    let package = rpm::Package::open(&rpm_path).unwrap();
    let md = &package.metadata;
    let inodes = md
        .header
        .get_entry_data_as_u32_array(rpm::IndexTag::RPMTAG_FILEINODES)
        .unwrap();
    let mut sets: std::collections::HashMap<u32, Vec<String>> = Default::default();
    let entries = md.get_file_entries().unwrap();
    assert_eq!(entries.len(), 14, "the test package's file list");
    for (i, e) in entries.iter().enumerate() {
        let raw = e.path().to_string_lossy().into_owned();
        let path = match raw.strip_prefix("/etc/") {
            Some(rest) => format!("/usr/etc/{rest}"),
            None => raw.clone(),
        };
        let got = committed.get(&path);
        if e.flags().contains(FileFlags::GHOST) || e.flags().contains(FileFlags::DOC) {
            assert!(got.is_none(), "{raw}: %ghost or %doc, yet committed: {got:?}");
            continue;
        }
        let (mode, uid, gid, size, csum, xattrs, target) =
            got.unwrap_or_else(|| panic!("{raw}: in the header, not in the commit:\n{listing}"));
        let kind = match e.file_type() {
            rpm::FileType::Regular => '-',
            rpm::FileType::Dir => 'd',
            rpm::FileType::SymbolicLink => 'l',
            other => panic!("{raw}: {other:?}"),
        };
        let perms = if kind == 'l' { 0o777 } else { e.permissions() & 0o7777 };
        assert_eq!(mode, &format!("{kind}{perms:05o}"), "{raw}: type and mode");
        assert_eq!(
            (uid.as_str(), gid.as_str()),
            ("0", "0"),
            "{raw}: owned by {}:{}",
            e.user(),
            e.group()
        );
        assert_eq!(target.as_deref(), e.linkto(), "{raw}: symlink target");
        match e.caps() {
            Some(c) if !c.is_empty() => assert!(xattrs.contains("security.capability"), "{raw}: {c} lost: {xattrs}"),
            _ => assert_eq!(xattrs, "@a(ayay) []", "{raw}: attributes it does not carry"),
        }
        if kind == '-' {
            assert_eq!(size, &e.size().to_string(), "{raw}: size");
            let content = Command::new("ostree")
                .arg(format!("--repo={}", repo.display()))
                .args(["cat", "test/attrs", &path])
                .output()
                .unwrap()
                .stdout;
            use sha2::Digest;
            assert_eq!(
                hex::encode(sha2::Sha256::digest(&content)),
                e.digest().unwrap().as_hex(),
                "{raw}: content"
            );
            sets.entry(inodes[i]).or_default().push(csum.clone());
        }
    }
    let pair = sets.values().find(|s| s.len() == 2).expect("the hardlink pair");
    assert_eq!(pair[0], pair[1], "hardlinked files are one object");

    // The attribute is the kernel's: checked out (as root, attributes are written), getcap reads back
    // what the header says.
    if fedostree_util::prereq::Prereq::Root.missing().is_none() {
        let out = work.join("checkout");
        ostree(&repo, &["checkout", "test/attrs", out.to_str().unwrap()]);
        for (file, caps) in [
            ("attrs-ping", "cap_net_raw=ep"),
            ("attrs-admin", "cap_net_admin,cap_sys_time=p"),
        ] {
            let got = Command::new("getcap")
                .arg(out.join("usr/bin").join(file))
                .output()
                .unwrap();
            let got = String::from_utf8_lossy(&got.stdout);
            assert!(got.trim_end().ends_with(caps), "getcap {file}: {got}");
        }
    }
}

/// Scriptlets from real headers: `%transfiletriggerin` gets the files beneath its path from every
/// package on stdin (a trigger matching nothing does not run); a Lua scriptlet and a scriptlet that
/// outlives the timeout are refused by name, with nothing committed.
fn scriptlets_and_file_triggers(good_state: &Path) {
    let work = TestDir::fresh("compose-scriptlets");
    let repo_dir = work.join("repo");
    pkg::Pkg::new("trig-host", "1.0", "noarch")
        .file("/usr/share/trig-host/README", "host\n", 0o644)
        .post("echo post ran > /etc/trig-post", "/bin/sh")
        .trans_file_trigger_in("/usr/lib/trig.d", "cat > /etc/trig-seen")
        .trans_file_trigger_in("/usr/lib/trig-none.d", "touch /etc/trig-must-not-run")
        .write(&repo_dir);
    pkg::Pkg::new("trig-plugin-a", "1.0", "noarch")
        .file("/usr/lib/trig.d/a.conf", "a\n", 0o644)
        .write(&repo_dir);
    pkg::Pkg::new("trig-plugin-b", "1.0", "noarch")
        .file("/usr/lib/trig.d/sub/b.conf", "b\n", 0o644)
        .write(&repo_dir);
    // The rpm crate makes a scriptlet require its interpreter, `<lua>` included (rpmbuild requires
    // rpmlib(BuiltinLuaScripts) instead): bin-link provides it so that the Lua package solves.
    pkg::Pkg::new("bin-link", "1.0", "noarch")
        .provides(rpm::Dependency::any("<lua>"))
        .symlink("/bin", "usr/bin")
        .dir("/etc")
        .write(&repo_dir);
    pkg::Pkg::new("lua-post", "1.0", "noarch")
        .file("/usr/share/lua-post", "x\n", 0o644)
        .post("print('hello')", "<lua>")
        .write(&repo_dir);
    pkg::Pkg::new("slow-post", "1.0", "noarch")
        .file("/usr/share/slow-post", "x\n", 0o644)
        .post("echo waiting; sleep 60", "/bin/sh")
        .write(&repo_dir);
    pkg::createrepo(&repo_dir);
    let write_tree = |name: &str, packages: &str| {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // The dev repository's busybox is the trees' /bin/sh (through bin-link's /bin).
        std::fs::write(
            dir.join("r.repo"),
            format!(
                "[r]\nbaseurl=file://{}\n[dev]\nbaseurl=file://{}/devrepo/x86_64\n",
                repo_dir.display(),
                good_state.display()
            ),
        )
        .unwrap();
        let tree = dir.join("tree.yaml");
        std::fs::write(
            &tree,
            format!("ref: test/{name}\nrepos: [r, dev]\ncontainer: true\npackages: [busybox, bin-link, {packages}]\n"),
        )
        .unwrap();
        tree
    };
    let tree = write_tree("triggers", "trig-host, trig-plugin-a, trig-plugin-b");
    let state = work.join("state-triggers");
    let out = fedostree(
        &state,
        &["compose", "--tree", tree.to_str().unwrap(), "--arch", "x86_64"],
    );
    ok(&out);
    let repo = state.join("repo");
    assert_eq!(
        ostree(&repo, &["cat", "test/triggers", "/usr/etc/trig-post"]),
        "post ran\n"
    );
    assert_eq!(
        ostree(&repo, &["cat", "test/triggers", "/usr/etc/trig-seen"]),
        "/usr/lib/trig.d/a.conf\n/usr/lib/trig.d/sub/b.conf\n"
    );
    let listing = ostree(&repo, &["ls", "test/triggers", "/usr/etc"]);
    assert!(!listing.contains("trig-must-not-run"), "{listing}");

    let (out, has_refs) = compose_fresh(&work, &write_tree("lua", "lua-post"));
    refused(&out, has_refs, &["lua-post-1.0-1.noarch: %post is a Lua scriptlet"]);

    let tree = write_tree("slow", "slow-post");
    let state = work.join("state-slow");
    let out = common::fedostree_env(
        &state,
        &[("FEDOSTREE_SANDBOX_TIMEOUT", "3".as_ref())],
        &["compose", "--tree", tree.to_str().unwrap(), "--arch", "x86_64"],
    );
    let has_refs = state.join("repo/refs/heads/test").exists();
    refused(
        &out,
        has_refs,
        &["slow-post-1.0-1.noarch: %post scriptlet timed out after 3 s", "waiting"],
    );
}

/// A small HTTP/1.1 file server for mirror tests: serves `dir`, honours `Range: bytes=N-`, records
/// every request line with its range, and (when `cut_rpms`) hangs up halfway through every RPM.
struct Mirror {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Mirror {
    fn start(dir: PathBuf, cut_rpms: bool) -> Mirror {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (dir, log) = (dir.clone(), log.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let mut from = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some(r) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                            from = r.trim().trim_end_matches('-').parse().unwrap_or(0);
                        }
                    }
                    log.lock().unwrap().push(format!("{path} from {from}"));
                    let file = dir.join(path.trim_start_matches('/').split('?').next().unwrap());
                    let Ok(body) = std::fs::read(&file) else {
                        let _ =
                            conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    };
                    let from = from.min(body.len());
                    let status = if from > 0 { "206 Partial Content" } else { "200 OK" };
                    let rest = &body[from..];
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        rest.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let send = if cut_rpms && path.ends_with(".rpm") {
                        &rest[..rest.len() / 2]
                    } else {
                        rest
                    };
                    let _ = conn.write_all(send);
                });
            }
        });
        Mirror { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// dnf's repository forms over real HTTP: several `baseurl`s tried in order (a dead one, then one
/// that hangs up halfway through every RPM, then a good one that the unfinished downloads resume
/// from with range requests), a `mirrorlist`, and a `metalink` whose digests `repomd.xml` must match.
fn mirrors_fail_over_and_downloads_resume(good_state: &Path) {
    let work = TestDir::fresh("compose-mirrors");
    let repo = copy_devrepo(good_state, &work.join("repo"));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (cutting, good) = (Mirror::start(repo.clone(), true), Mirror::start(repo.clone(), false));
    let key = format!(
        "gpgkey=file://{}\n",
        good_state.join("devrepo/RPM-GPG-KEY-fedostree-dev").display()
    );
    let pkgs = "kernel, busybox, fedostree-base";

    let t = tree_with_repo(
        &work,
        "failover",
        &format!(
            "baseurl=http://127.0.0.1:{dead}/\n  {}/\n  {}\ngpgcheck=1\nrepo_gpgcheck=1\n{key}",
            cutting.url(),
            good.url()
        ),
        pkgs,
    );
    composes_fresh(&work, &t);
    let cut = cutting.requests();
    let resumed: Vec<String> = good
        .requests()
        .into_iter()
        .filter(|r| r.ends_with(".rpm") || r.contains(".rpm "))
        .collect();
    assert!(
        cut.iter().any(|r| r.starts_with("/repodata/repomd.xml")),
        "metadata came from the second mirror: {cut:?}"
    );
    assert!(
        !resumed.is_empty() && resumed.iter().all(|r| !r.ends_with(" from 0")),
        "every RPM resumed where the cut mirror stopped: {resumed:?}"
    );

    // mirrorlist: the mirrors it lists, in order.
    std::fs::write(
        repo.join("mirrorlist.txt"),
        format!("# mirrors\nhttp://127.0.0.1:{dead}/\n{}\n", good.url()),
    )
    .unwrap();
    let t = tree_with_repo(
        &work,
        "mirrorlist",
        &format!("mirrorlist={}/mirrorlist.txt\ngpgcheck=1\n{key}", good.url()),
        pkgs,
    );
    composes_fresh(&work, &t);

    // metalink: repomd.xml must have one of its digests; a mirror serving another is passed over.
    let repomd = std::fs::read(repo.join("repodata/repomd.xml")).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&repomd));
    let metalink = |sha: &str| {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<metalink version="3.0" xmlns="http://www.metalinker.org/"><files><file name="repomd.xml">
<verification><hash type="sha256">{sha}</hash></verification><resources>
<url protocol="http" type="http" preference="100">{}/repodata/repomd.xml</url>
</resources></file></files></metalink>"#,
            good.url()
        )
    };
    std::fs::write(repo.join("metalink.xml"), metalink(&digest)).unwrap();
    let t = tree_with_repo(
        &work,
        "metalink",
        &format!(
            "metalink={}/metalink.xml?repo=x&arch=$basearch\ngpgcheck=1\n{key}",
            good.url()
        ),
        pkgs,
    );
    composes_fresh(&work, &t);
    std::fs::write(repo.join("metalink.xml"), metalink(&"0".repeat(64))).unwrap();
    let (out, has_refs) = compose_fresh(&work, &t);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a mirror problem, not the input's: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the digests of the metalink"));
    assert!(!has_refs);

    // Every mirror dead: exit 2 naming them; with skip_if_unavailable the repository is left out
    // (and the compose then lacks the packages: an input error naming one).
    let t = tree_with_repo(&work, "dead", &format!("baseurl=http://127.0.0.1:{dead}/\n"), pkgs);
    let (out, _) = compose_fresh(&work, &t);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no mirror served its metadata"));
    let t = tree_with_repo(
        &work,
        "skipped",
        &format!("baseurl=http://127.0.0.1:{dead}/\nskip_if_unavailable=1\n"),
        pkgs,
    );
    let (out, _) = compose_fresh(&work, &t);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipped (skip_if_unavailable)") && err.contains("no package provides `kernel`"),
        "{err}"
    );
}

/// The dev repository, copied so a test can change it, with its key.
fn copy_devrepo(good_state: &Path, to: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(to);
    assert!(Command::new("cp")
        .arg("-a")
        .arg(good_state.join("devrepo/x86_64"))
        .arg(to)
        .status()
        .unwrap()
        .success());
    to.to_path_buf()
}

/// A treefile `name` in `work` whose one repository `r` is `repo_text`.
fn tree_with_repo(work: &Path, name: &str, repo_text: &str, packages: &str) -> PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("r.repo"), format!("[r]\n{repo_text}")).unwrap();
    let p = dir.join("tree.yaml");
    std::fs::write(&p, format!("ref: test/{name}\nrepos: [r]\npackages: [{packages}]\n")).unwrap();
    p
}

/// Compose `tree` into a fresh state dir; returns the output and whether any ref was written.
fn compose_fresh(work: &Path, tree: &Path) -> (Output, bool) {
    let s = work.join(format!(
        "state-{}",
        tree.parent().unwrap().file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&s);
    std::fs::create_dir_all(&s).unwrap();
    let out = fedostree(&s, &["compose", "--tree", tree.to_str().unwrap(), "--arch", "x86_64"]);
    let has_refs =
        s.join("repo/refs/heads").exists() && std::fs::read_dir(s.join("repo/refs/heads")).unwrap().next().is_some();
    (out, has_refs)
}

/// [`compose_fresh`] that must succeed and write its ref.
fn composes_fresh(work: &Path, tree: &Path) {
    let (out, has_refs) = compose_fresh(work, tree);
    assert!(
        out.status.success() && has_refs,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn refused(out: &Output, has_refs: bool, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
    assert!(!has_refs, "a refused compose wrote a ref");
}

/// Two packages shipping one path differently fail the compose with every conflict named (both
/// packages, the path, what differs) and nothing committed; what rpm allows composes (identical files,
/// directories, a `%ghost` against a file). `remove-from-packages` is the way out. A tree that
/// includes another (a layer over its base) is one transaction: its conflicts with the base are found.
fn file_conflicts_are_refused_as_rpm_refuses_them() {
    use rpm::{FileMode, FileOptions};
    let work = TestDir::fresh("compose-conflicts");
    let repo_dir = work.join("repo");
    pkg::Pkg::new("alpha", "1.0", "noarch")
        .file("/usr/bin/tool", "alpha's tool\n", 0o755)
        .dir("/usr/share/shared")
        .file("/usr/share/shared/same", "identical\n", 0o644)
        .file("/usr/share/shared/mode", "same bytes\n", 0o644)
        .file_with(
            FileOptions::new("/usr/share/shared/owned")
                .mode(FileMode::regular(0o644))
                .user("daemon"),
            "x\n",
        )
        .symlink("/usr/bin/link", "tool")
        .file("/usr/bin/moved", "alpha\n", 0o755)
        .file("/usr/share/shared/kind", "a file\n", 0o644)
        .ghost("/usr/share/shared/ghost")
        .write(&repo_dir);
    pkg::Pkg::new("beta", "1.0", "noarch")
        .file("/usr/bin/tool", "beta's tool\n", 0o755)
        .dir("/usr/share/shared")
        .file("/usr/share/shared/same", "identical\n", 0o644)
        .file("/usr/share/shared/mode", "same bytes\n", 0o755)
        .file("/usr/share/shared/owned", "x\n", 0o644)
        .symlink("/usr/bin/link", "other")
        .file("/bin/moved", "beta\n", 0o755)
        .dir("/usr/share/shared/kind")
        .file("/usr/share/shared/ghost", "real\n", 0o644)
        .write(&repo_dir);
    pkg::Pkg::new("gamma", "1.0", "noarch")
        .file("/usr/bin/tool", "gamma's tool\n", 0o755)
        .write(&repo_dir);
    pkg::createrepo(&repo_dir);
    let repo = format!("baseurl=file://{}\n", repo_dir.display());
    let tree = |name: &str, packages: &str, extra: &str| {
        let p = tree_with_repo(&work, name, &repo, packages);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{text}container: true\n{extra}")).unwrap();
        p
    };

    let (out, has_refs) = compose_fresh(&work, &tree("both", "alpha, beta", ""));
    refused(
        &out,
        has_refs,
        &[
            "6 file conflict(s) between packages",
            "remove-from-packages",
            "/usr/bin/tool: alpha-1.0-1.noarch (file) and beta-1.0-1.noarch (file) differ in content",
            "/usr/bin/link: alpha-1.0-1.noarch (symlink) and beta-1.0-1.noarch (symlink) differ in symlink target tool vs other",
            "/usr/bin/moved: alpha-1.0-1.noarch (file) and beta-1.0-1.noarch (file as /bin/moved) differ in content",
            "/usr/share/shared/mode: alpha-1.0-1.noarch (file) and beta-1.0-1.noarch (file) differ in mode 0644 vs 0755",
            "/usr/share/shared/owned: alpha-1.0-1.noarch (file) and beta-1.0-1.noarch (file) differ in owner daemon:root vs root:root",
            "/usr/share/shared/kind: alpha-1.0-1.noarch (file) and beta-1.0-1.noarch (directory) differ in type",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("/usr/share/shared/same") && !err.contains("/usr/share/shared/ghost"),
        "{err}"
    );

    // The treefile's way out: beta's side of each conflict left out; the rest of beta stays.
    let resolved = tree(
        "resolved",
        "alpha, beta",
        // alpha's owned file goes too: this container tree has no `daemon` account to chown it to.
        "remove-from-packages:\n  - [beta, \"^/usr/bin/(tool|link)$\", \"^/bin/moved$\", \"^/usr/share/shared/(mode|kind)$\"]\n  - [alpha, \"^/usr/share/shared/owned$\"]\n",
    );
    composes_fresh(&work, &resolved);
    let committed = work.join("state-resolved/repo");
    assert_eq!(
        ostree(&committed, &["cat", "test/resolved", "/usr/bin/tool"]),
        "alpha's tool\n"
    );
    assert_eq!(
        ostree(&committed, &["cat", "test/resolved", "/usr/share/shared/ghost"]),
        "real\n"
    );

    // A layer over its base: gamma against the included tree's alpha.
    let base = tree("base", "alpha", "");
    let layer = work.join("layer");
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::write(layer.join("r.repo"), format!("[r]\n{repo}")).unwrap();
    let layer_tree = layer.join("tree.yaml");
    std::fs::write(
        &layer_tree,
        format!("include: {}\nref: test/layer\npackages: [gamma]\n", base.display()),
    )
    .unwrap();
    let (out, has_refs) = compose_fresh(&work, &layer_tree);
    refused(
        &out,
        has_refs,
        &[
            "1 file conflict(s)",
            "/usr/bin/tool: alpha-1.0-1.noarch (file) and gamma-1.0-1.noarch (file) differ in content",
        ],
    );
}

/// gpgcheck and repo_gpgcheck: the dev trees compose with both on (above); here every way a signature
/// can be missing, wrong or tampered with is refused with exit 1, naming package, repository and reason,
/// and nothing is committed.
fn signatures(good_state: &Path) {
    let work = TestDir::fresh("compose-signatures");
    let repo = copy_devrepo(good_state, &work.join("repo"));
    let dev_key = format!(
        "file://{}",
        good_state.join("devrepo/RPM-GPG-KEY-fedostree-dev").display()
    );
    let rsa_key = format!(
        "file://{}/compose/tests/keys/rsa-test.pub.asc",
        env!("CARGO_MANIFEST_DIR")
    );
    let base = format!("baseurl=file://{}\n", repo.display());
    let pkgs = "kernel, busybox, fedostree-base";

    // The right key, several keys (comma and space separated): composes.
    let t = tree_with_repo(
        &work,
        "good",
        &format!("{base}gpgcheck=1\nrepo_gpgcheck=1\ngpgkey={rsa_key}, {dev_key}\n"),
        pkgs,
    );
    composes_fresh(&work, &t);

    // Signed, but not by a key the repository trusts.
    let t = tree_with_repo(
        &work,
        "wrongkey",
        &format!("{base}gpgcheck=1\ngpgkey={rsa_key}\n"),
        pkgs,
    );
    let (out, has_refs) = compose_fresh(&work, &t);
    refused(&out, has_refs, &["repository `r`", "signature", "busybox-"]);

    // gpgcheck without any key: an error, never a silent pass.
    let t = tree_with_repo(&work, "nokey", &format!("{base}gpgcheck=1\n"), pkgs);
    let (out, has_refs) = compose_fresh(&work, &t);
    refused(&out, has_refs, &["r.repo", "no gpgkey"]);

    // An unsigned package in an otherwise signed repository.
    let unsigned = repo.join("Packages/extra-unsigned-1.0-1.noarch.rpm");
    rpm::PackageBuilder::new("extra-unsigned", "1.0", "MIT", "noarch", "unsigned test package")
        .release("1")
        .with_file_contents(b"x\n".to_vec(), rpm::FileOptions::new("/usr/share/extra/x"))
        .unwrap()
        .build()
        .unwrap()
        .write_file(&unsigned)
        .unwrap();
    createrepo(&repo);
    let t = tree_with_repo(
        &work,
        "unsigned",
        &format!("{base}gpgcheck=1\ngpgkey={dev_key}\n"),
        &format!("{pkgs}, extra-unsigned"),
    );
    let (out, has_refs) = compose_fresh(&work, &t);
    refused(
        &out,
        has_refs,
        &["extra-unsigned-1.0-1.noarch", "repository `r`", "not signed"],
    );
    std::fs::remove_file(&unsigned).unwrap();

    // A signed package whose header was altered after signing (repodata regenerated to match).
    let motd = std::fs::read_dir(repo.join("Packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("fedostree-motd-"))
        .unwrap();
    let mut bytes = std::fs::read(&motd).unwrap();
    // The last "fedostree" is in the main header's string store (vendor, build host); the payload is
    // compressed and the lead, which also names the package, is covered by nothing.
    let at = bytes
        .windows(9)
        .rposition(|w| w == b"fedostree")
        .expect("a string in the header");
    assert!(at > 96, "found only the lead");
    bytes[at] = b'F';
    std::fs::write(&motd, &bytes).unwrap();
    createrepo(&repo);
    let t = tree_with_repo(
        &work,
        "tampered",
        &format!("{base}gpgcheck=1\ngpgkey={dev_key}\n"),
        &format!("{pkgs}, fedostree-motd"),
    );
    let (out, has_refs) = compose_fresh(&work, &t);
    refused(&out, has_refs, &["fedostree-motd-", "repository `r`"]);

    // repo_gpgcheck: no repomd.xml.asc at all (the repodata above was regenerated unsigned).
    let t = tree_with_repo(
        &work,
        "noasc",
        &format!("{base}repo_gpgcheck=1\ngpgkey={dev_key}\n"),
        pkgs,
    );
    let (out, has_refs) = compose_fresh(&work, &t);
    refused(&out, has_refs, &["repository `r`", "repo_gpgcheck=1", "repomd.xml.asc"]);

    // repo_gpgcheck: repomd.xml changed after it was signed.
    let signed = copy_devrepo(good_state, &work.join("repo-repomd"));
    let repomd = signed.join("repodata/repomd.xml");
    let text = std::fs::read_to_string(&repomd).unwrap();
    std::fs::write(&repomd, text.replacen("<revision>", "<!-- changed --><revision>", 1)).unwrap();
    let base = format!("baseurl=file://{}\n", signed.display());
    let t = tree_with_repo(
        &work,
        "repomd",
        &format!("{base}repo_gpgcheck=1\ngpgkey={dev_key}\n"),
        pkgs,
    );
    let (out, has_refs) = compose_fresh(&work, &t);
    refused(&out, has_refs, &["repomd.xml", "repository `r`", "signature check"]);
}

/// Index `dir` again as an rpm-md repository (unsigned repodata: only gpgcheck tests use it).
fn createrepo(dir: &Path) {
    pkg::createrepo(dir);
    let _ = std::fs::remove_file(dir.join("repodata/repomd.xml.asc"));
}

/// Errors are classified by origin: a compose that runs out of disk in its scratch space exits 2 (the
/// machine), not 1 (the input), and commits nothing. `$STATE/tmp` is a 1 MiB tmpfs here.
fn full_disk_is_the_machine_not_the_input() {
    let good = state_dir("compose-full-disk-source");
    // The dev repository for x86_64 (its compose is the input that does not fit).
    let out = fedostree(&good, &["devrepo", "--arch", "x86_64"]);
    assert!(out.status.success());
    let work = TestDir::fresh("compose-full-disk");
    let dev_key = format!("file://{}", good.join("devrepo/RPM-GPG-KEY-fedostree-dev").display());
    let t = tree_with_repo(
        &work,
        "full",
        &format!(
            "baseurl=file://{}\ngpgcheck=1\ngpgkey={dev_key}\n",
            good.join("devrepo/x86_64").display()
        ),
        "kernel, busybox, fedostree-base",
    );
    let state = work.join("state");
    let tmp = state.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(tmp.clone());
    let out = fedostree(&state, &["compose", "--tree", t.to_str().unwrap(), "--arch", "x86_64"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!state.join("repo/refs/heads/test").exists(), "a ref was written");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "scratch left behind");
}

/// Unsatisfiable trees, checksum mismatches and truncated RPMs fail with exit 1 and commit nothing.
fn bad_inputs(good_state: &Path) {
    let devrepo = good_state.join("devrepo/x86_64");
    let work = TestDir::fresh("compose-bad");
    let tree = |name: &str, baseurl: &str, extra: &str| -> PathBuf {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("r.repo"), format!("[r]\nbaseurl={baseurl}\n")).unwrap();
        let p = dir.join("tree.yaml");
        let packages = if extra.contains("packages") {
            ""
        } else {
            "packages: [kernel, busybox, fedostree-base]\n"
        };
        std::fs::write(&p, format!("ref: test/{name}\nrepos: [r]\n{packages}{extra}")).unwrap();
        p
    };
    let fresh_state = |name: &str| {
        let s = work.join(format!("state-{name}"));
        std::fs::create_dir_all(&s).unwrap();
        s
    };
    let refs = |s: &Path| -> String {
        if !s.join("repo/config").exists() {
            return String::new();
        }
        ostree(&s.join("repo"), &["refs"])
    };

    // Unsatisfiable: the only /bin/sh provider is excluded.
    let t = tree(
        "unsat",
        &format!("file://{}", devrepo.display()),
        "packages: [kernel, fedostree-base]\nexclude-packages: [busybox]\n",
    );
    let s = fresh_state("unsat");
    let out = fedostree(&s, &["compose", "--tree", t.to_str().unwrap(), "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing provides /bin/sh"), "{err}");
    assert!(refs(&s).is_empty());

    // Checksum mismatch: the RPM changed after repodata was written.
    let copy = work.join("repo-copy");
    assert!(Command::new("cp")
        .args(["-a"])
        .arg(&devrepo)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let base_rpm = std::fs::read_dir(copy.join("Packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("fedostree-base-"))
        .unwrap();
    let mut bytes = std::fs::read(&base_rpm).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&base_rpm, &bytes).unwrap();
    let t = tree("mismatch", &format!("file://{}", copy.display()), "");
    let s = fresh_state("mismatch");
    let out = fedostree(&s, &["compose", "--tree", t.to_str().unwrap(), "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") && err.contains("fedostree-base-"),
        "{err}"
    );
    assert!(refs(&s).is_empty());

    // http:// repositories, served by a local server.
    let fixed = work.join("repo-http");
    assert!(Command::new("cp")
        .args(["-a"])
        .arg(&devrepo)
        .arg(&fixed)
        .status()
        .unwrap()
        .success());
    let mut server = common::Server(
        Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(&fixed)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        line.split_whitespace().nth(5).unwrap().to_string()
    };
    // Signed over http:// too: the key itself is fetched from the server (gpgkey=http://…).
    std::fs::copy(
        good_state.join("devrepo/RPM-GPG-KEY-fedostree-dev"),
        fixed.join("RPM-GPG-KEY-fedostree-dev"),
    )
    .unwrap();
    let t = tree_with_repo(
        &work,
        "http",
        &format!(
            "baseurl=http://127.0.0.1:{port}\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=http://127.0.0.1:{port}/RPM-GPG-KEY-fedostree-dev\n"
        ),
        "kernel, busybox, fedostree-base",
    );
    let s = fresh_state("http");
    let out = fedostree(&s, &["compose", "--tree", t.to_str().unwrap(), "--arch", "x86_64"]);
    ok(&out);
    assert!(refs(&s).contains("test/http"));
    let good = ostree(&s.join("repo"), &["rev-parse", "test/http"]);

    // A damaged cache entry (truncated) is no longer trusted: it is evicted and fetched again, and
    // the compose succeeds with the file restored.
    let cached = std::fs::read_dir(s.join("cache/rpms"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 1_000_000)
        .unwrap();
    let intact = std::fs::read(&cached).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap()
        .set_len(intact.len() as u64 / 2)
        .unwrap();
    let out = fedostree(
        &s,
        &["compose", "--force", "--tree", t.to_str().unwrap(), "--arch", "x86_64"],
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("evicting and fetching again") && err.contains(&cached.display().to_string()),
        "{err}"
    );
    assert!(
        std::fs::read(&cached).unwrap() == intact,
        "the cache entry was not restored"
    );
    assert_ne!(
        ostree(&s.join("repo"), &["rev-parse", "test/http"]),
        good,
        "--force commits again"
    );
    assert_eq!(
        std::fs::read_dir(s.join("tmp")).unwrap().count(),
        0,
        "no leftover compose dirs"
    );
    drop(server);

    // A truncated RPM in the repository itself (repodata made for it) fails naming the file: exit 1,
    // nothing committed.
    let trunc = copy_devrepo(good_state, &work.join("repo-trunc"));
    let motd = std::fs::read_dir(trunc.join("Packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("fedostree-base-"))
        .unwrap();
    let bytes = std::fs::read(&motd).unwrap();
    std::fs::write(&motd, &bytes[..bytes.len() - 100]).unwrap();
    createrepo(&trunc);
    let t = tree("trunc", &format!("file://{}", trunc.display()), "");
    let (out, has_refs) = compose_fresh(&work, &t);
    refused(&out, has_refs, &["fedostree-base-", "repository `r`"]);
}
