//! Tests of the dev repo builder against real RPM files read back with the rpm crate: reproducible
//! own packages, bumps, and a whole x86_64 repo from Debian's archive built twice, byte for byte.

use super::*;
use rpm::{DependencyFlags, FileType, Package};
use std::collections::BTreeMap;
use std::fs;

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A source tree with the real package overlays and placeholder tests-suite files: those belong
/// to another part of the project and tests must not depend on their current content.
fn fake_source(root: &Path) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(src.join("devrepo")).unwrap();
    fedostree_util::cmd::CommandRunExt::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(checkout().join("devrepo/own"))
            .arg(src.join("devrepo/")),
    )
    .unwrap();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    write(
        "tests-suite/guest/installed-tests-runner.sh",
        "#!/bin/sh\necho placeholder runner\n",
    );
    write(
        "tests-suite/guest/base-checks.sh",
        "#!/bin/sh\necho placeholder base checks\n",
    );
    write(
        "tests-suite/installed-tests/fedostree/hello.test",
        "[Test]\nType=session\nExec=/usr/libexec/installed-tests/fedostree/hello.sh\n",
    );
    write("tests-suite/installed-tests/fedostree/hello.sh", "#!/bin/sh\necho ok\n");
    write(
        "tests-suite/installed-tests/fedostree-broken/fail.test",
        "[Test]\nType=session\nExec=/usr/libexec/installed-tests/fedostree-broken/fail.sh\n",
    );
    write(
        "tests-suite/installed-tests/fedostree-broken/fail.sh",
        "#!/bin/sh\nexit 1\n",
    );
    for suite in ["system", "docker", "lifecycle", "selinux"] {
        write(
            &format!("tests-suite/installed-tests/{suite}/a.test"),
            &format!("[Test]\nType=session\nExec=/usr/libexec/installed-tests/fedostree-{suite}/a.sh\n"),
        );
        write(
            &format!("tests-suite/installed-tests/{suite}/a.sh"),
            "#!/bin/sh\necho ok\n",
        );
    }
    src
}

/// Per path: type, permissions, symlink target, content.
type Files = BTreeMap<String, (FileType, u16, Option<String>, Option<Vec<u8>>)>;

fn files(pkg: &Package) -> Files {
    pkg.files()
        .unwrap()
        .map(|f| {
            let f = f.unwrap();
            let m = &f.metadata;
            assert_eq!((m.user(), m.group()), ("root", "root"), "{}", m.path().display());
            assert_eq!(u32::from(m.modified_at()), spec::SOURCE_DATE, "{}", m.path().display());
            let v = (
                m.file_type(),
                m.permissions(),
                m.linkto().map(str::to_string),
                f.content().map(<[u8]>::to_vec),
            );
            (m.path().to_string_lossy().into_owned(), v)
        })
        .collect()
}

fn deps(d: Vec<rpm::Dependency>) -> Vec<String> {
    d.into_iter()
        .filter(|d| !d.name.starts_with("rpmlib("))
        .map(|d| {
            let op = if d.flags.contains(DependencyFlags::GE) {
                " >= "
            } else if d.flags.contains(DependencyFlags::EQUAL) {
                " = "
            } else {
                ""
            };
            format!("{}{op}{}", d.name, d.version).trim().to_string()
        })
        .collect()
}

#[test]
fn own_package_is_reproducible_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fake_source(tmp.path());
    let base = own::find("fedostree-base").unwrap();
    let (a, b) = (tmp.path().join("a.rpm"), tmp.path().join("b.rpm"));
    own::spec(base, &src, "1").unwrap().write_rpm(&a).unwrap();
    // A fresh checkout has other mtimes and may have another umask: neither may show.
    let init = own::overlay_dir(&src, "fedostree-base").join("usr/sbin/init");
    fs::File::options()
        .append(true)
        .open(&init)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o775)).unwrap();
    own::spec(base, &src, "1").unwrap().write_rpm(&b).unwrap();
    assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap(), "two builds differ");

    let pkg = Package::open(&a).unwrap();
    let md = &pkg.metadata;
    assert_eq!(md.get_nevra().unwrap().to_string(), "fedostree-base-1.0-1.noarch");
    assert_eq!(md.get_build_time().unwrap(), u64::from(spec::SOURCE_DATE));
    assert_eq!(deps(md.get_requires().unwrap()), ["/bin/sh"]);
    assert_eq!(deps(md.get_recommends().unwrap()), ["fedostree-motd"]);
    let f = files(&pkg);
    let get = |p: &str| f.get(p).unwrap_or_else(|| panic!("{p} missing from {:?}", f.keys()));
    assert_eq!(get("/tmp").0, FileType::Dir);
    assert_eq!(get("/tmp").1, 0o1777);
    assert_eq!(get("/sysroot").0, FileType::Dir);
    assert_eq!(get("/proc").1, 0o555);
    assert_eq!(get("/bin").2.as_deref(), Some("usr/bin"));
    assert_eq!(get("/lib64").2.as_deref(), Some("usr/lib64"));
    assert_eq!(get("/etc/os-release").0, FileType::SymbolicLink);
    assert_eq!(get("/etc/os-release").2.as_deref(), Some("../usr/lib/os-release"));
    assert_eq!(
        (get("/usr/sbin/init").0, get("/usr/sbin/init").1),
        (FileType::Regular, 0o755)
    );
    assert_eq!(
        get("/etc/passwd").3.as_deref(),
        Some(&b"root:x:0:0:root:/root:/bin/sh\n"[..])
    );
    let osr = String::from_utf8(get("/usr/lib/os-release").3.clone().unwrap()).unwrap();
    assert!(
        osr.contains("VERSION_ID=1.0\n") && osr.contains("ID=fedostree\n"),
        "{osr}"
    );
    assert_eq!(get("/etc/fstab").3.as_deref(), Some(&b""[..]));
}

#[test]
fn installed_tests_layout_and_deps() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fake_source(tmp.path());
    let out = tmp.path().join("t.rpm");
    own::spec(own::find("fedostree-installed-tests").unwrap(), &src, "1")
        .unwrap()
        .write_rpm(&out)
        .unwrap();
    let pkg = Package::open(&out).unwrap();
    assert_eq!(
        deps(pkg.metadata.get_requires().unwrap()),
        ["/usr/lib/os-release", "fedostree-test-runner >= 1.0"]
    );
    let f = files(&pkg);
    assert_eq!(f["/usr/share/installed-tests/fedostree/hello.test"].1, 0o644);
    assert_eq!(f["/usr/libexec/installed-tests/fedostree/hello.sh"].1, 0o755);
    assert_eq!(f["/usr/libexec/installed-tests/fedostree"].0, FileType::Dir);
    // Directories of the base package stay its own.
    assert!(
        !f.contains_key("/usr/libexec") && !f.contains_key("/usr/share"),
        "{:?}",
        f.keys()
    );

    let err = own::spec(own::find("fedostree-test-runner").unwrap(), tmp.path(), "1").unwrap_err();
    assert!(format!("{err:#}").contains("installed-tests-runner.sh"), "{err:#}");
}

#[test]
fn bump_raises_exactly_one_release() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path());
    let src = fake_source(tmp.path());
    let release = |b: &Bumps, name: &str| bumped_release(own::OWN_RELEASE, b.count(bump_key(name)));
    let b = apply_bumps(&state, &[]).unwrap();
    assert!(own::names().all(|n| release(&b, n) == "1"));

    apply_bumps(&state, &["fedostree-motd".into()]).unwrap();
    let b = apply_bumps(&state, &["fedostree-motd".into(), "kernel-core".into()]).unwrap();
    for n in own::names() {
        assert_eq!(release(&b, n), if n == "fedostree-motd" { "3" } else { "1" }, "{n}");
    }
    let motd = own::spec(
        own::find("fedostree-motd").unwrap(),
        &src,
        &release(&b, "fedostree-motd"),
    )
    .unwrap();
    assert_eq!(motd.nevra(), "fedostree-motd-1.0-3.noarch");
    // The kernel packages require each other at the exact EVR: they move together.
    assert_eq!(b.count("kernel"), 1);
    assert_eq!(Bumps::load(&state.devrepo_root()).unwrap().0, b.0, "counts persist");

    let err = apply_bumps(&state, &["fedostree-motd".into(), "no-such-pkg".into()]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no-such-pkg") && msg.contains("fedostree-base") && msg.contains("kernel-modules"),
        "{msg}"
    );
    assert_eq!(
        Bumps::load(&state.devrepo_root()).unwrap().0,
        b.0,
        "a rejected bump changes nothing"
    );
}

/// A state dir whose Debian downloads are shared with every other test run (the CLI tests use the
/// same `target/tmp/deb-cache`): they are the slow part and never change.
fn state_sharing_debs(root: &Path) -> StateDir {
    let debs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/deb-cache");
    fs::create_dir_all(&debs).unwrap();
    fs::create_dir_all(root.join("cache")).unwrap();
    std::os::unix::fs::symlink(debs.canonicalize().unwrap(), root.join("cache/debs")).unwrap();
    StateDir::new(root)
}

/// Every file of a built dev repo (RPMs, repodata, its signature) with its sha256.
fn repo_digests(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for sub in ["Packages", "repodata"] {
        for e in fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let d = hex::encode(Sha256::digest(fs::read(&p).unwrap()));
            out.insert(format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()), d);
        }
    }
    out
}

/// The whole x86_64 repo from Debian's archive (kernel, modules and busybox too): incremental, and
/// byte-identical when built again from scratch in another state directory, signatures included.
#[test]
fn full_build_is_incremental_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let state = state_sharing_debs(&tmp.path().join("state"));
    let source = fake_source(tmp.path());
    let opts = |bump: &[&str]| DevRepoOptions {
        arches: vec![fedostree_util::Arch::X86_64],
        bump: bump.iter().map(|s| s.to_string()).collect(),
        source_dir: source.clone(),
    };
    let first = build(&state, &opts(&[])).unwrap();
    let pkgs = &first[0].1;
    assert_eq!(pkgs.len(), package_names().len());
    assert!(pkgs.iter().all(|p| p.rebuilt));
    assert!(is_built(&state, Arch::X86_64));

    // Built again from nothing elsewhere: the same bytes, kernel and busybox packages included.
    let again = state_sharing_debs(&tmp.path().join("again"));
    build(&again, &opts(&[])).unwrap();
    let (a, b) = (
        repo_digests(&state.devrepo(fedostree_util::Arch::X86_64)),
        repo_digests(&again.devrepo(fedostree_util::Arch::X86_64)),
    );
    assert!(a.keys().any(|k| k.starts_with("Packages/kernel-core-")), "{a:?}");
    assert!(a.keys().any(|k| k.starts_with("Packages/busybox-")), "{a:?}");
    assert!(a.contains_key("repodata/repomd.xml.asc"), "{a:?}");
    assert_eq!(a, b, "two builds from the same inputs differ");

    // Every package is signed by the dev key and verifies against the key the dev trees name.
    let key = fs::read_to_string(state.devrepo_root().join(crate::dev_key::DEV_KEY_FILE)).unwrap();
    let verifier = rpm::signature::pgp::Verifier::from_asc(&key).unwrap();
    for p in pkgs {
        Package::open(&p.path).unwrap().verify_signature(&verifier).unwrap();
    }

    let core = pkgs.iter().find(|p| p.name == "kernel-core").unwrap();
    let paths = Package::open(&core.path).unwrap().metadata.get_file_paths().unwrap();
    let has = |suffix: &str| paths.iter().any(|p| p.to_string_lossy().ends_with(suffix));
    assert!(
        has("/vmlinuz") && has("/modules.dep") && has("/virtio_blk.ko"),
        "{paths:?}"
    );
    let bb = pkgs.iter().find(|p| p.name == "busybox").unwrap();
    let f = files(&Package::open(&bb.path).unwrap());
    assert_eq!(f["/usr/bin/sh"].2.as_deref(), Some("busybox"));
    assert_eq!(f["/usr/bin/busybox"].0, FileType::Regular);

    let second = build(&state, &opts(&[])).unwrap();
    assert!(second[0].1.iter().all(|p| !p.rebuilt));

    let third = build(&state, &opts(&["fedostree-motd"])).unwrap();
    let rebuilt: Vec<_> = third[0]
        .1
        .iter()
        .filter(|p| p.rebuilt)
        .map(|p| p.nevra.as_str())
        .collect();
    assert_eq!(rebuilt, ["fedostree-motd-1.0-2.noarch"]);
    let rpms = fs::read_dir(state.devrepo(fedostree_util::Arch::X86_64).join("Packages"))
        .unwrap()
        .count();
    assert_eq!(rpms, package_names().len(), "the old motd RPM is gone");
}
