//! RPM scriptlets at compose time: every package's `%pre`, then every `%post`, then every
//! `%posttrans`, each in install order, each with its own interpreter, in the sandbox with the tree
//! as `/` and — once the packages are installed — `/usr` read-only, as on an rpm-ostree system.
//! A failing scriptlet fails the compose, naming the package, the scriptlet and its output.
//! (rpm runs `%pre` before a package's own payload; here all payloads are in first, as in
//! rpm-ostree, which unpacks everything before running scripts.)

use crate::import::ImportedPackage;
use crate::sandbox::{self, Usr};
use anyhow::Result;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    Pre,
    Post,
    PostTrans,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Pre => "%pre",
            Phase::Post => "%post",
            Phase::PostTrans => "%posttrans",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Scriptlet {
    pub phase: Phase,
    /// Interpreter and its arguments (`/bin/sh` when the header names none).
    pub program: Vec<String>,
    pub body: String,
}

/// The scriptlets an RPM header carries.
pub fn read(md: &rpm::PackageMetadata) -> Vec<Scriptlet> {
    let mut out = Vec::new();
    for (phase, s) in [
        (Phase::Pre, md.get_pre_install_script()),
        (Phase::Post, md.get_post_install_script()),
        (Phase::PostTrans, md.get_post_trans_script()),
    ] {
        if let Ok(s) = s {
            let program = s
                .program
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into()]);
            // An interpreter-only scriptlet (`%post -p /sbin/ldconfig`) has an empty body.
            out.push(Scriptlet {
                phase,
                program,
                body: s.script,
            });
        }
    }
    out
}

/// Run every scriptlet of `pkgs` (in install order) against the tree at `root`.
pub fn run_all(root: &Path, pkgs: &[ImportedPackage]) -> Result<usize> {
    let mut n = 0;
    for phase in [Phase::Pre, Phase::Post, Phase::PostTrans] {
        for p in pkgs {
            for s in p.scriptlets.iter().filter(|s| s.phase == phase) {
                run_one(root, p, s)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

fn run_one(root: &Path, p: &ImportedPackage, s: &Scriptlet) -> Result<()> {
    let interp = s.program[0].trim_start_matches('/');
    if !sandbox::has(root, interp) {
        fedostree_util::bail_input!(
            "{}: {} needs the interpreter {}, which the tree does not have",
            p.nevra,
            s.phase.name(),
            s.program[0]
        );
    }
    if s.program[0] == "<lua>" {
        fedostree_util::bail_input!(
            "{}: {} is a Lua scriptlet, which fedostree cannot run",
            p.nevra,
            s.phase.name()
        );
    }
    let usr = if s.phase == Phase::Pre {
        Usr::Writable
    } else {
        Usr::ReadOnly
    };
    let mut argv: Vec<&str> = s.program.iter().map(String::as_str).collect();
    // As rpm does: the script as a file argument, then the install count ("1": a fresh install).
    let file = tempfile::NamedTempFile::new()?;
    fs_err::write(file.path(), &s.body)?;
    const INSIDE: &str = "/run/fedostree-scriptlet";
    if !s.body.is_empty() {
        argv.push(INSIDE);
    }
    argv.push("1");
    let what = format!("{}: {} scriptlet", p.nevra, s.phase.name());
    sandbox::run_ok_with(root, usr, &argv, &[(file.path(), INSIDE)], &what)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree whose /bin/sh is the host's static busybox: enough to run shell scriptlets for real.
    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for dir in ["usr/bin", "etc", "var", "tmp", "run", "proc", "dev"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        std::fs::copy("/bin/busybox", r.join("usr/bin/busybox")).expect("busybox-static (ci/setup)");
        for applet in ["sh", "touch", "echo", "cat", "grep", "tail", "ls"] {
            std::os::unix::fs::symlink("busybox", r.join("usr/bin").join(applet)).unwrap();
        }
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        d
    }

    fn pkg(scripts: &[(Phase, &str)]) -> ImportedPackage {
        ImportedPackage {
            name: "p".into(),
            nevra: "p-1-1.noarch".into(),
            sample_path: None,
            owners: vec![],
            scriptlets: scripts
                .iter()
                .map(|(phase, body)| Scriptlet {
                    phase: *phase,
                    program: vec!["/bin/sh".into()],
                    body: body.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn scriptlets_run_in_phase_order_with_usr_read_only_after_install() {
        let t = tree();
        let p = pkg(&[
            (Phase::PostTrans, "echo posttrans >> /etc/order"),
            (Phase::Post, "echo post >> /etc/order; [ \"$1\" = 1 ]"),
            (Phase::Pre, "echo pre >> /etc/order; touch /usr/pre-may-write"),
        ]);
        assert_eq!(run_all(t.path(), &[p]).unwrap(), 3);
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/order")).unwrap(),
            "pre\npost\nposttrans\n"
        );
        assert!(t.path().join("usr/pre-may-write").exists());

        let e = run_all(t.path(), &[pkg(&[(Phase::Post, "touch /usr/nope")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("p-1-1.noarch: %post scriptlet failed"), "{e}");
        assert!(e.contains("Read-only file system"), "{e}");
        assert!(!t.path().join("usr/nope").exists());
    }

    #[test]
    fn a_failing_scriptlet_names_package_scriptlet_and_output() {
        let t = tree();
        let e = run_all(t.path(), &[pkg(&[(Phase::PostTrans, "echo broken setup >&2; exit 3")])])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p-1-1.noarch: %posttrans scriptlet failed (exit Some(3))"),
            "{e}"
        );
        assert!(e.contains("broken setup"), "{e}");
        // No network in the sandbox: only the loopback device exists.
        let e = run_all(
            t.path(),
            &[pkg(&[(Phase::Post, "ls /sys/class/net 2>/dev/null; cat /proc/net/dev | grep -v lo: | tail -n +3 | grep . && exit 9; exit 0")])],
        );
        assert!(e.is_ok(), "{e:?}");
        let e = run_all(
            t.path(),
            &[pkg(&[(Phase::Post, "exit 0")]), {
                let mut p = pkg(&[(Phase::Post, "")]);
                p.scriptlets[0].program = vec!["/usr/bin/python3".into()];
                p
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs the interpreter /usr/bin/python3"), "{e}");
    }
}
