//! The project's own packages, as a table: the base filesystem, motd, the in-guest test runner and
//! the installed-tests suites. File contents live in the source tree (devrepo/own/<name>/root/
//! overlays, tests-suite/), never in Rust strings, so they are reviewable.

use super::spec::PkgSpec;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;

pub(crate) const OWN_VERSION: &str = "1.0";
pub(crate) const OWN_RELEASE: &str = "1";

pub(crate) enum Source {
    /// Only the overlay (plus the skeleton, for fedostree-base).
    Overlay,
    /// Files from the source tree, relative to the checkout.
    Files(&'static [OwnFile]),
    /// A GNOME installed-tests suite directory, relative to the checkout: `*.test` keyfiles go to
    /// /usr/share/installed-tests/<suite>/, everything else to /usr/libexec/installed-tests/<suite>/.
    InstalledTests { dir: &'static str, suite: &'static str },
}

pub(crate) struct OwnFile {
    pub src: &'static str,
    pub dest: &'static str,
    pub mode: u16,
}

pub(crate) struct OwnPackage {
    pub name: &'static str,
    pub summary: &'static str,
    pub provides: &'static [&'static str],
    pub requires: &'static [&'static str],
    pub recommends: &'static [&'static str],
    /// `%post` scriptlet (run by /bin/sh at compose time).
    pub post: Option<&'static str>,
    /// `%posttrans` scriptlet: after every package's `%post`.
    pub posttrans: Option<&'static str>,
    pub source: Source,
}

pub(crate) const OWN_PACKAGES: &[OwnPackage] = &[
    OwnPackage {
        name: "fedostree-base",
        summary: "fedostree dev base filesystem: directory skeleton, accounts, os-release and init",
        provides: &[],
        requires: &["/bin/sh"],
        recommends: &["fedostree-motd"],
        post: None,
        posttrans: None,
        source: Source::Overlay,
    },
    OwnPackage {
        name: "fedostree-motd",
        summary: "fedostree dev message of the day (a weak dependency of fedostree-base)",
        provides: &[],
        requires: &[],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::Overlay,
    },
    OwnPackage {
        name: "fedostree-release",
        summary: "fedostree release policy for real trees: systemd presets and DHCP networking",
        provides: &[],
        requires: &[],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::Overlay,
    },
    OwnPackage {
        name: "fedostree-selinux",
        summary: "fedostree's SELinux for real trees: Debian's reference policy, enforcing, chosen by a kernel argument",
        provides: &[],
        requires: &["selinux-policy-default", "policycoreutils", "selinux-utils"],
        recommends: &[],
        post: None,
        // After every %post: the policy package's has built the store this module joins.
        posttrans: Some("semodule -n -s default -X 400 -i /usr/share/selinux/fedostree/fedostree-local.cil\n"),
        source: Source::Overlay,
    },
    OwnPackage {
        name: "fedostree-test-runner",
        summary: "Runs the installed-tests and the base checks inside a fedostree guest and reports the results",
        provides: &[],
        requires: &["/bin/sh"],
        recommends: &[],
        // What Fedora's %systemd_post does; trees without systemd (dev) have no systemctl.
        post: Some("if command -v systemctl >/dev/null; then systemctl --no-reload preset fedostree-installed-tests.service; fi\n"),
        posttrans: None,
        source: Source::Files(&[
            OwnFile {
                src: "tests-suite/guest/installed-tests-runner.sh",
                dest: "/usr/libexec/fedostree/installed-tests-runner",
                mode: 0o755,
            },
            OwnFile {
                src: "tests-suite/guest/base-checks.sh",
                dest: "/usr/libexec/fedostree/base-checks",
                mode: 0o755,
            },
        ]),
    },
    OwnPackage {
        name: "fedostree-installed-tests",
        summary: "fedostree's installed-tests for dev trees",
        provides: &[],
        // /usr/lib/os-release resolves only through filelists: deliberate, it exercises them.
        requires: &["fedostree-test-runner >= 1.0", "/usr/lib/os-release"],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::InstalledTests {
            dir: "tests-suite/installed-tests/fedostree",
            suite: "fedostree",
        },
    },
    OwnPackage {
        name: "fedostree-installed-tests-system",
        summary: "fedostree's installed-tests for real trees: systemd, rpmdb, accounts, machine-id, ostree client",
        provides: &[],
        requires: &["fedostree-test-runner >= 1.0", "systemd", "rpm", "ostree"],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::InstalledTests {
            dir: "tests-suite/installed-tests/system",
            suite: "fedostree-system",
        },
    },
    OwnPackage {
        name: "fedostree-installed-tests-lifecycle",
        summary: "fedostree's client lifecycle scenario: upgrade, rollback and switch over HTTP across reboots",
        provides: &[],
        // python3-gi + the OSTree typelib: the rollback reorders deployments through libostree.
        requires: &["fedostree-test-runner >= 1.0", "ostree", "gpg", "python3-gi", "gir1.2-ostree-1.0"],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::InstalledTests {
            dir: "tests-suite/installed-tests/lifecycle",
            suite: "fedostree-lifecycle",
        },
    },
    OwnPackage {
        name: "fedostree-installed-tests-selinux",
        summary: "fedostree's installed-tests for SELinux: enforcing with the tree's policy, every file labelled",
        provides: &[],
        requires: &["fedostree-test-runner >= 1.0", "fedostree-selinux", "policycoreutils", "selinux-utils"],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::InstalledTests {
            dir: "tests-suite/installed-tests/selinux",
            suite: "fedostree-selinux",
        },
    },
    OwnPackage {
        name: "fedostree-installed-tests-docker",
        summary: "fedostree's installed-tests for server/docker-io: the engine answers and runs a local image",
        provides: &[],
        requires: &["fedostree-test-runner >= 1.0", "docker.io", "tar"],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::InstalledTests {
            dir: "tests-suite/installed-tests/docker",
            suite: "fedostree-docker",
        },
    },
    OwnPackage {
        name: "fedostree-installed-tests-broken",
        summary: "Deliberately failing installed-tests that prove the gate stops a bad tree",
        provides: &[],
        requires: &["fedostree-test-runner"],
        recommends: &[],
        post: None,
        posttrans: None,
        source: Source::InstalledTests {
            dir: "tests-suite/installed-tests/fedostree-broken",
            suite: "fedostree-broken",
        },
    },
];

/// Directories fedostree-base owns, with their modes; every other package owns only the directories
/// below these. Empty ones must be in the RPM: nothing else would create them.
pub(crate) const SKELETON: &[(&str, u16)] = &[
    ("/usr", 0o755),
    ("/usr/bin", 0o755),
    ("/usr/sbin", 0o755),
    ("/usr/lib", 0o755),
    ("/usr/lib/modules", 0o755),
    ("/usr/lib64", 0o755),
    ("/usr/libexec", 0o755),
    ("/usr/share", 0o755),
    ("/usr/share/doc", 0o755),
    ("/usr/share/man", 0o755),
    ("/usr/etc", 0o755),
    ("/etc", 0o755),
    ("/var", 0o755),
    ("/var/lib", 0o755),
    ("/var/log", 0o755),
    ("/var/tmp", 0o1777),
    ("/var/cache", 0o755),
    ("/tmp", 0o1777),
    ("/root", 0o700),
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/dev", 0o755),
    ("/run", 0o755),
    ("/boot", 0o755),
    ("/sysroot", 0o755),
];

/// Fedora's usr-merge links, owned by the base package.
const USR_MERGE_LINKS: &[(&str, &str)] = &[
    ("/bin", "usr/bin"),
    ("/sbin", "usr/sbin"),
    ("/lib", "usr/lib"),
    ("/lib64", "usr/lib64"),
];

const BASE_LINKS: &[(&str, &str)] = &[("/etc/os-release", "../usr/lib/os-release")];

/// Overlay files whose `@VERSION@` is replaced by the package version.
const TEMPLATED: &[&str] = &["/usr/lib/os-release"];

pub(crate) fn shared_dirs() -> BTreeSet<String> {
    SKELETON.iter().map(|(d, _)| d.to_string()).collect()
}

#[cfg(test)]
pub(crate) fn find(name: &str) -> Option<&'static OwnPackage> {
    OWN_PACKAGES.iter().find(|p| p.name == name)
}

pub(crate) fn overlay_dir(source_dir: &Path, name: &str) -> std::path::PathBuf {
    source_dir.join("devrepo/own").join(name).join("root")
}

/// The complete package (files read from `source_dir`) with `release` (base release plus bumps).
pub(crate) fn spec(p: &OwnPackage, source_dir: &Path, release: &str) -> Result<PkgSpec> {
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut s = PkgSpec {
        name: p.name.into(),
        version: OWN_VERSION.into(),
        release: release.into(),
        arch: "noarch".into(),
        summary: p.summary.into(),
        license: "MIT OR Apache-2.0".into(),
        provides: strs(p.provides),
        requires: strs(p.requires),
        recommends: strs(p.recommends),
        post: p.post.map(str::to_string),
        posttrans: p.posttrans.map(str::to_string),
        ..Default::default()
    };
    let overlay = overlay_dir(source_dir, p.name);
    if overlay.is_dir() {
        s.tree(&overlay, "", &|d: &str| Some(d.to_string()))?;
        for t in TEMPLATED {
            if let Some(e) = s.entries.get_mut(*t) {
                if let super::spec::Content::File(src) = &e.content {
                    let text = std::fs::read_to_string(src)
                        .with_context(|| format!("{}: reading {}", p.name, src.display()))?;
                    e.content = super::spec::Content::Bytes(text.replace("@VERSION@", OWN_VERSION).into_bytes());
                }
            }
        }
    }
    add_source(&mut s, p, source_dir)?;
    if p.name == "fedostree-base" {
        for (d, mode) in SKELETON {
            s.dir(d, *mode)?;
        }
        for (l, t) in USR_MERGE_LINKS.iter().chain(BASE_LINKS) {
            s.symlink(l, t)?;
        }
        s.own_parents(&BTreeSet::new())?;
    } else {
        s.own_parents(&shared_dirs())?;
    }
    Ok(s)
}

/// The files of `p.source` (its source files, or its installed-tests suite) into `s`.
fn add_source(s: &mut PkgSpec, p: &OwnPackage, source_dir: &Path) -> Result<()> {
    match &p.source {
        Source::Overlay => {}
        Source::Files(files) => {
            for f in *files {
                let path = source_dir.join(f.src);
                if !path.is_file() {
                    bail!("{}: source file {} does not exist", p.name, path.display());
                }
                s.file(f.dest, path, f.mode)?;
            }
        }
        Source::InstalledTests { dir, suite } => {
            let path = source_dir.join(dir);
            if !path.is_dir() {
                bail!(
                    "{}: installed-tests directory {} does not exist",
                    p.name,
                    path.display()
                );
            }
            let before = s.entries.len();
            s.tree(&path, "", &|rel: &str| {
                Some(if rel.ends_with(".test") {
                    format!("/usr/share/installed-tests/{suite}{rel}")
                } else {
                    format!("/usr/libexec/installed-tests/{suite}{rel}")
                })
            })?;
            // Test programs and their helpers are all run directly by the runner.
            for (path, e) in s.entries.iter_mut() {
                if path.starts_with("/usr/libexec/installed-tests/")
                    && matches!(e.content, super::spec::Content::File(_))
                {
                    e.mode = 0o755;
                }
            }
            if s.entries.len() == before {
                bail!("{}: {} holds no files", p.name, path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    OWN_PACKAGES.iter().map(|p| p.name)
}
