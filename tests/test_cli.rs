//! `fedostree test` end to end through the real binary: compose, offline image update, real QEMU
//! boots on both architectures, installed-tests, gate and publish.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{fedostree, state_dir};

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

#[test]
fn test_publishes_passing_trees_and_gates_failing_ones() {
    let state = state_dir("test-e2e");
    let public = state.join("public");

    // The main job: both arches pass and are published.
    let out = fedostree(&state, &["test", "--tree", "dev/minimal", "--arch", "all"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    for arch in ["x86_64", "aarch64"] {
        assert!(
            err.contains(&format!("PASS [")) && err.contains(&format!("dev/minimal::{arch}::fedostree/booted-commit")),
            "{err}"
        );
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
    assert!(err.contains("Summary [") && err.contains("run directory: "), "{err}");

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
    assert_eq!(events.first().unwrap()["event"], "run-started");
    assert!(events
        .iter()
        .any(|e| e["event"] == "test-finished" && e["name"] == "fedostree/usr-readonly" && e["status"] == "pass"));

    // One package changes: the image is updated in place (incrementally) and the new commit is booted.
    assert!(fedostree(
        &state,
        &["devrepo", "--arch", "x86_64", "--bump", "fedostree-installed-tests"]
    )
    .status
    .success());
    let out = fedostree(&state, &["test", "--tree", "dev/minimal", "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(0));
    // /var in the guest still holds what the image's first deployment left in the stateroot.
    let err = String::from_utf8_lossy(&out.stderr);
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

    // dev/broken: its failing test makes the run exit 1 and nothing is published.
    let out = fedostree(&state, &["test", "--tree", "dev/broken", "--arch", "x86_64"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAIL [") && err.contains("fedostree-broken/intentional-failure"),
        "{err}"
    );
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

#[test]
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
