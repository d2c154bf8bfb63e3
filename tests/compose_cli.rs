//! End-to-end compose through the real `fedostree` binary: dev repository of real RPMs → libsolv →
//! import → libostree commits for both architectures, checked with the `ostree` CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{fedostree, state_dir};

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

#[test]
fn compose_both_arches_noop_bump_and_diff() {
    let state = state_dir("compose-e2e");
    let repo = state.join("repo");
    let cj = state.join("compose.json");
    ok(&compose_minimal(&state, "all", &cj));
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
    let out = compose_minimal(&state, "x86_64", &cj);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no changes since"));
    let r = json(&cj);
    assert_eq!(r["changed"], false);
    assert_eq!(r["ostree-commit"], results[0]["ostree-commit"]);

    // One package bumped in the dev repo: a new commit whose diff is exactly that upgrade.
    ok(&fedostree(
        &state,
        &["devrepo", "--arch", "x86_64", "--bump", "fedostree-base"],
    ));
    ok(&compose_minimal(&state, "x86_64", &cj));
    let r = json(&cj);
    assert_eq!(r["changed"], true);
    assert_eq!(r["parent"], results[0]["ostree-commit"]);
    let reff = "fedostree/dev/x86_64/minimal";
    let diff: serde_json::Value = serde_json::from_str(&ok(&fedostree(
        &state,
        &["db", "diff", "--json", &format!("{reff}^"), reff],
    )))
    .unwrap();
    assert_eq!(diff["upgraded"].as_array().unwrap().len(), 1, "{diff}");
    assert_eq!(diff["upgraded"][0]["name"], "fedostree-base");
    assert_eq!(diff["upgraded"][0]["from"], "1.0-1");
    assert_eq!(diff["upgraded"][0]["to"], "1.0-2");
    assert!(diff["added"].as_array().unwrap().is_empty() && diff["removed"].as_array().unwrap().is_empty());
    let text = ok(&fedostree(&state, &["db", "diff", &format!("{reff}^"), reff]));
    assert!(text.contains("Upgraded:\n  fedostree-base 1.0-1 -> 1.0-2"), "{text}");

    // Dry run resolves and commits nothing.
    let before = ostree(&repo, &["rev-parse", reff]);
    let dry = ok(&fedostree(
        &state,
        &["compose", "--tree", "dev/broken", "--arch", "x86_64", "--dry-run"],
    ));
    assert!(dry.contains("fedostree-installed-tests-broken-"), "{dry}");
    assert_eq!(ostree(&repo, &["rev-parse", reff]), before);
    assert!(!ostree(&repo, &["refs"]).contains("broken"));

    bad_inputs(&state);
}

/// Unsatisfiable trees, checksum mismatches and truncated RPMs fail with exit 1 and commit nothing.
fn bad_inputs(good_state: &Path) {
    let devrepo = good_state.join("devrepo/x86_64");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compose-bad");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
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
    let mut server = KillOnDrop(
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
    let t = tree("http", &format!("http://127.0.0.1:{port}"), "");
    let s = fresh_state("http");
    let out = fedostree(&s, &["compose", "--tree", t.to_str().unwrap(), "--arch", "x86_64"]);
    ok(&out);
    assert!(refs(&s).contains("test/http"));
    let good = ostree(&s.join("repo"), &["rev-parse", "test/http"]);

    // A truncated RPM (here: a damaged cache entry) fails the compose naming the file; the ref stays.
    let cached = std::fs::read_dir(s.join("cache/rpms"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 1_000_000)
        .unwrap();
    let len = std::fs::metadata(&cached).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = fedostree(
        &s,
        &["compose", "--force", "--tree", t.to_str().unwrap(), "--arch", "x86_64"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&cached.display().to_string()), "{err}");
    assert_eq!(
        ostree(&s.join("repo"), &["rev-parse", "test/http"]),
        good,
        "ref did not move"
    );
    assert_eq!(
        std::fs::read_dir(s.join("tmp")).unwrap().count(),
        0,
        "no leftover compose dirs"
    );
}

/// The local HTTP server must not outlive the test, even when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
