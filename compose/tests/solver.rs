//! libsolv depsolving against a real rpm-md repository of real RPMs.

mod common;
use common::{createrepo, Pkg};
use fedostree_compose::repo::{fetch_metadata, RepoConfig};
use fedostree_compose::solve::{Request, SolvedPackage, Solver};
use rpm::Dependency;
use std::path::Path;

fn repo_fixture(dir: &Path) {
    let p = dir.join("Packages");
    Pkg::new("app", "1.0", "x86_64")
        .requires(Dependency::any("libfoo.so.1()(64bit)"))
        .requires(Dependency::any("/usr/bin/tool"))
        .requires(Dependency::any("/usr/share/data/only-in-filelists"))
        .requires(Dependency::any("(ext1 or ext2)"))
        .requires(Dependency::greater_eq("ver", "1:0.5"))
        .recommends(Dependency::any("extra"))
        .file("/usr/bin/app", "app", 0o755)
        .write(&p);
    Pkg::new("libfoo", "2.0", "x86_64")
        .provides(Dependency::any("libfoo.so.1()(64bit)"))
        .file("/usr/lib64/libfoo.so.1", "so", 0o755)
        .write(&p);
    Pkg::new("libfoo", "2.0", "aarch64")
        .provides(Dependency::any("libfoo.so.1()(64bit)"))
        .file("/usr/lib64/libfoo.so.1", "so", 0o755)
        .write(&p);
    Pkg::new("toolpkg", "1", "noarch")
        .file("/usr/bin/tool", "#!/bin/sh\n", 0o755)
        .write(&p);
    Pkg::new("datapkg", "1", "noarch")
        .file("/usr/share/data/only-in-filelists", "x", 0o644)
        .write(&p);
    Pkg::new("ext2", "1", "noarch").write(&p);
    Pkg::new("extra", "1", "noarch").write(&p);
    Pkg::new("ver", "9.0", "noarch").write(&p);
    Pkg::new("ver", "0.9", "noarch").epoch(1).write(&p);
    Pkg::new("broken", "1", "noarch")
        .requires(Dependency::greater_eq("nonexistent", "2"))
        .write(&p);
    createrepo(dir);
}

fn solver_for(dir: &Path, arch: &str) -> Solver {
    let cfg = RepoConfig {
        id: "t".into(),
        name: "t".into(),
        baseurl: format!("file://{}", dir.display()),
        baseurls: vec![format!("file://{}", dir.display())],
        gpgcheck: false,
        repo_gpgcheck: false,
        gpgkeys: vec![],
        source: dir.into(),
        unexpanded: None,
        ..RepoConfig::default()
    };
    let md = fetch_metadata(&cfg, None, &dir.join("cache")).unwrap();
    let mut s = Solver::new(arch);
    s.add_repo("t", &md.primary, md.filelists.as_deref()).unwrap();
    s
}

fn solve_in(
    dir: &Path,
    arch: &str,
    install: Vec<String>,
    exclude: Vec<String>,
    recommends: bool,
) -> Result<Vec<SolvedPackage>, fedostree_compose::solve::SolveError> {
    solver_for(dir, arch).solve(&Request {
        install,
        exclude,
        recommends,
    })
}

fn names(v: &[SolvedPackage]) -> Vec<String> {
    v.iter().map(|p| p.nevra()).collect()
}

#[test]
fn sonames_files_rich_weak_deps_and_epochs() {
    let d = tempfile::tempdir().unwrap();
    repo_fixture(d.path());
    let got = solve_in(d.path(), "x86_64", vec!["app".into()], vec![], true).unwrap();
    assert_eq!(
        names(&got),
        [
            "app-1.0-1.x86_64",
            "datapkg-1-1.noarch",
            "ext2-1-1.noarch",
            "extra-1-1.noarch",
            "libfoo-2.0-1.x86_64",
            "toolpkg-1-1.noarch",
            // epoch 1 beats the higher version without one
            "ver-1:0.9-1.noarch",
        ]
    );
    let app = &got[0];
    assert_eq!(app.checksum_type, "sha256");
    assert!(app.location.ends_with("app-1.0.x86_64.rpm"), "{}", app.location);
}

#[test]
fn recommends_off_and_excludes() {
    let d = tempfile::tempdir().unwrap();
    repo_fixture(d.path());
    let got = solve_in(d.path(), "x86_64", vec!["app".into()], vec![], false).unwrap();
    assert!(!names(&got).iter().any(|n| n.starts_with("extra")));
    let err = solve_in(d.path(), "x86_64", vec!["app".into()], vec!["toolpkg".into()], true).unwrap_err();
    assert!(
        err.to_string()
            .contains("nothing provides /usr/bin/tool needed by app-1.0-1.x86_64"),
        "{err}"
    );
    let err = solve_in(d.path(), "x86_64", vec!["extra".into()], vec!["extra".into()], true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no package provides `extra` in the enabled repositories"
    );
}

#[test]
fn arch_policy_picks_target_arch() {
    let d = tempfile::tempdir().unwrap();
    repo_fixture(d.path());
    let got = solve_in(
        d.path(),
        "aarch64",
        vec!["libfoo".into(), "toolpkg".into()],
        vec![],
        true,
    )
    .unwrap();
    assert_eq!(names(&got), ["libfoo-2.0-1.aarch64", "toolpkg-1-1.noarch"]);
    // app exists only for x86_64
    assert!(solve_in(d.path(), "aarch64", vec!["app".into()], vec![], true).is_err());
}

#[test]
fn unsatisfiable_names_package_and_requirement() {
    let d = tempfile::tempdir().unwrap();
    repo_fixture(d.path());
    let err = solve_in(d.path(), "x86_64", vec!["broken".into()], vec![], true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken-1-1.noarch") && err.contains("nonexistent >= 2"),
        "{err}"
    );
}

/// A cached metadata file is trusted only while it has the checksum repomd.xml gives it: a corrupt
/// one is evicted and fetched again, and solving works as before.
#[test]
fn corrupt_cached_metadata_is_fetched_again() {
    let d = tempfile::tempdir().unwrap();
    repo_fixture(d.path());
    let cfg = RepoConfig {
        id: "t".into(),
        name: "t".into(),
        baseurl: format!("file://{}", d.path().display()),
        baseurls: vec![format!("file://{}", d.path().display())],
        gpgcheck: false,
        repo_gpgcheck: false,
        gpgkeys: vec![],
        source: d.path().into(),
        unexpanded: None,
        ..RepoConfig::default()
    };
    let cache = d.path().join("cache");
    let md = fetch_metadata(&cfg, None, &cache).unwrap();
    let good = std::fs::read(&md.primary).unwrap();
    std::fs::write(&md.primary, b"not gzip at all").unwrap();
    let again = fetch_metadata(&cfg, None, &cache).unwrap();
    assert_eq!(again.primary, md.primary);
    assert_eq!(
        std::fs::read(&again.primary).unwrap(),
        good,
        "the corrupt cache entry was kept"
    );
    let mut s = Solver::new("x86_64");
    s.add_repo("t", &again.primary, again.filelists.as_deref()).unwrap();
}
