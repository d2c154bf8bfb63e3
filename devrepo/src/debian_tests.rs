//! Tests of the Debian repository on Debian's real packages (apt's lists, `apt-get download`):
//! version ordering, the closure against apt's and libsolv's, conversion rules read back from the
//! RPMs, and byte-for-byte reproducibility.

use crate::closure::{closure, depends};
use crate::debian_index::{Universe, APT_LISTS};
use crate::{debian_repo, sets};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::state::StateDir;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn roots(debarch: &str) -> Vec<String> {
    sets::load_roots(&checkout().join("devrepo/sets"), debarch).unwrap().0
}

/// Every version of every package of the real set, and every version its relations name, orders
/// the same under dpkg and (mapped) under rpmvercmp.
#[test]
fn real_versions_order_the_same_in_rpm_and_dpkg() {
    for debarch in ["amd64", "arm64"] {
        let u = Universe::load(Path::new(APT_LISTS), debarch).unwrap();
        let set = closure(&u, &roots(debarch)).unwrap();
        let mut by_name: std::collections::BTreeMap<&str, Vec<debversion::Version>> = Default::default();
        for p in &set {
            by_name
                .entry(&p.name)
                .or_default()
                .extend(u.versions(&p.name).into_iter().cloned());
            for g in depends(p) {
                for r in g {
                    if let Some((_, v)) = &r.version {
                        by_name.entry(&r.name).or_default().push(v.clone());
                    }
                }
            }
        }
        let n: usize = by_name.values().map(Vec::len).sum();
        assert!(n > set.len(), "{debarch}: only {n} versions for {} packages", set.len());
        for vs in by_name.values() {
            crate::convert::version::tests::assert_same_order(vs);
        }
    }
}

/// What `apt-get install --no-install-recommends ROOTS` installs on an empty system.
fn apt_closure(debarch: &str, roots: &[String]) -> BTreeSet<String> {
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("apt-get")
        .args([
            "-s",
            "-q",
            "install",
            "--no-install-recommends",
            "-o",
            "Debug::NoLocking=1",
        ])
        .arg(format!("-o=Dir::State::status={}", empty.path().display()))
        .arg(format!("-o=APT::Architecture={debarch}"))
        .arg(format!("-o=APT::Architectures={debarch}"))
        .args(roots)
        .run_get_string()
        .unwrap();
    out.lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn closure_matches_apt_on_both_arches() {
    for debarch in ["amd64", "arm64"] {
        let u = Universe::load(Path::new(APT_LISTS), debarch).unwrap();
        let r = roots(debarch);
        let ours: BTreeSet<String> = closure(&u, &r).unwrap().iter().map(|p| p.name.clone()).collect();
        let apt = apt_closure(debarch, &r);
        assert_eq!(
            ours.symmetric_difference(&apt).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{debarch}: our closure vs apt's"
        );
    }
}

fn rpm_query(rpm: &Path, fmt: &str) -> String {
    Command::new("rpm")
        .args(["-qp", "--nosignature", "--nodigest", "--queryformat", fmt])
        .arg(rpm)
        .run_get_string()
        .unwrap()
}

fn find_rpm(dir: &Path, name: &str) -> PathBuf {
    fs_err::read_dir(dir.join("Packages"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let f = p.file_name().unwrap().to_string_lossy();
            f.strip_prefix(&format!("{name}-"))
                .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()))
        })
        .unwrap_or_else(|| panic!("no {name} RPM"))
}

/// The whole x86_64 repository, built twice from scratch: byte-identical; libsolv's solution of the
/// roots on it is apt's closure; the conversion rules hold on real packages.
#[test]
fn debian_repo_is_reproducible_solvable_and_faithful() {
    let tmp = tempfile::tempdir().unwrap();
    let a = StateDir::new(tmp.path().join("a"));
    let b = StateDir::new(tmp.path().join("b"));
    let built = debian_repo::build(&a, fedostree_util::Arch::X86_64, &checkout()).unwrap();
    debian_repo::build(&b, fedostree_util::Arch::X86_64, &checkout()).unwrap();
    let (da, db) = (
        debian_repo::repo_dir(&a, fedostree_util::Arch::X86_64),
        debian_repo::repo_dir(&b, fedostree_util::Arch::X86_64),
    );
    for sub in ["Packages", "repodata"] {
        let mut names: Vec<_> = fs_err::read_dir(da.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            assert!(
                fs_err::read(da.join(sub).join(&n)).unwrap() == fs_err::read(db.join(sub).join(&n)).unwrap(),
                "{sub}/{} differs between two builds",
                n.to_string_lossy()
            );
        }
    }
    // A second build of the same state converts nothing.
    assert!(debian_repo::build(&a, fedostree_util::Arch::X86_64, &checkout())
        .unwrap()
        .iter()
        .all(|p| !p.rebuilt));

    // libsolv on the converted repo picks exactly apt's closure.
    let r = roots("amd64");
    let mut solver = fedostree_compose::solve::Solver::new("x86_64");
    let md = |kind: &str| {
        fs_err::read_dir(da.join("repodata"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(&format!("-{kind}.xml.gz")))
            .unwrap()
    };
    solver
        .add_repo("debian", &md("primary"), Some(&md("filelists")))
        .unwrap();
    let solved = solver
        .solve(&fedostree_compose::solve::Request {
            install: r.clone(),
            exclude: vec![],
            recommends: false,
        })
        .unwrap();
    let libsolv: BTreeSet<String> = solved.iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        libsolv,
        apt_closure("amd64", &r),
        "libsolv on the converted repo vs apt"
    );
    assert_eq!(libsolv.len(), built.len());

    // Conversion rules, read back with rpm.
    let docker = find_rpm(&da, "docker.io");
    let reqs = rpm_query(&docker, "[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]");
    assert!(reqs.contains("containerd >= 1.4~"), "{reqs}");
    assert!(rpm_query(&docker, "%{ARCH}") == "x86_64");
    let docker_files = rpm_query(&docker, "[%{FILENAMES}\n]");
    assert!(
        docker_files.contains("/usr/lib/sysusers.d/50-deb-docker.io.conf"),
        "{docker_files}"
    );
    assert!(docker_files.contains("/usr/lib/systemd/system-preset/50-deb-docker.io.preset"));
    // Conffiles are %config(noreplace) (flags 1|16).
    let conf = rpm_query(&find_rpm(&da, "dbus"), "[%{FILENAMES} %{FILEFLAGS}\n]");
    assert!(
        conf.lines().any(|l| l.starts_with("/etc/default/dbus 17")),
        "dbus conffiles: {conf}"
    );
    // Merged /usr: nothing under /bin, /sbin or /lib in any package but base-files' symlinks.
    let coreutils = rpm_query(&find_rpm(&da, "coreutils"), "[%{FILENAMES}\n]");
    assert!(coreutils.lines().any(|l| l == "/usr/bin/ls"));
    assert!(!coreutils.lines().any(|l| l.starts_with("/bin/")));
    let base = rpm_query(&find_rpm(&da, "base-files"), "[%{FILENAMES} -> %{FILELINKTOS}\n]");
    assert!(base.contains("/bin -> usr/bin"), "{base}");
    // The set's highest-priority alternative is a plain symlink: iptables → the nft variant.
    let ipt = rpm_query(&find_rpm(&da, "iptables"), "[%{FILENAMES} -> %{FILELINKTOS}\n]");
    assert!(ipt.contains("/usr/sbin/iptables -> /usr/sbin/iptables-nft"), "{ipt}");
    // Hardlinks stay hardlinks (perl-base ships one): two paths, one inode.
    let perl = rpm_query(&find_rpm(&da, "perl-base"), "[%{FILEINODES} %{FILENAMES}\n]");
    let mut inodes: Vec<&str> = perl.lines().filter_map(|l| l.split_whitespace().next()).collect();
    let n = inodes.len();
    inodes.sort();
    inodes.dedup();
    assert!(inodes.len() < n, "perl-base: no shared inode");
    // Dropped maintainer-script commands are named in the description.
    let desc = rpm_query(&find_rpm(&da, "systemd"), "%{DESCRIPTION}");
    assert!(
        desc.contains("not carried over") && desc.contains("postinst:"),
        "{desc}"
    );
}
