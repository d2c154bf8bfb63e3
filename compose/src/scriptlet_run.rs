//! RPM scriptlets at compose time: every package's `%pre`, then every `%post`, then every
//! `%posttrans`, then every `%transfiletriggerin`, each in install order, each with its own
//! interpreter, in the sandbox with the tree as `/` and — once the packages are installed — `/usr`
//! read-only, as on an rpm-ostree system, with a timeout. A failing scriptlet fails the compose,
//! naming the package, the scriptlet and its output; what a scriptlet prints is in the compose log.
//! (rpm runs `%pre` before a package's own payload; here all payloads are in first, as in
//! rpm-ostree, which unpacks everything before running scripts.) Lua scriptlets (`-p <lua>`) are
//! refused by name: there is no Lua interpreter outside librpm.
//!
//! `%transfiletriggerin` as rpm-ostree runs it: every file (not directory) in the tree beneath the
//! trigger's paths, one per line on the script's stdin; a trigger matching nothing does not run,
//! and paths outside `/usr` (or in `/usr/local`) never match.

use crate::import::ImportedPackage;
use crate::sandbox::{self, Usr};
use crate::scriptlets::{Phase, Scriptlet};
use anyhow::Result;
use std::path::Path;

/// Files beneath a trigger's paths, as rpm-ostree lists them: `/usr` only, not `/usr/local`; every
/// entry that is not a directory, depth first, in directory order sorted by name.
fn trigger_matches(root: &Path, patterns: &[String]) -> Result<Vec<String>> {
    fn walk(dir: &Path, shown: &str, out: &mut Vec<String>) -> Result<()> {
        let mut names: Vec<_> = fs_err::read_dir(dir)?.collect::<std::io::Result<_>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = format!("{shown}/{name}");
            if e.file_type()?.is_dir() {
                walk(&e.path(), &child, out)?;
            } else {
                out.push(child);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in patterns {
        let rel = p.trim_start_matches('/').trim_end_matches('/');
        if !rel.starts_with("usr/") || rel.starts_with("usr/local") {
            continue;
        }
        // Symlinks on the way are followed as the tree itself would (`/usr/lib64` may be one).
        let Some(full) = crate::safepath::resolve_in_tree(root, rel) else {
            continue;
        };
        if full.is_dir() {
            walk(&full, &format!("/{rel}"), &mut out)?;
        } else {
            out.push(format!("/{rel}"));
        }
    }
    Ok(out)
}

/// Run every scriptlet of `pkgs` (in install order) against the tree at `root`.
pub fn run_all(root: &Path, pkgs: &[ImportedPackage]) -> Result<usize> {
    let mut n = 0;
    let timeout = sandbox::default_timeout();
    for phase in [Phase::Pre, Phase::Post, Phase::PostTrans, Phase::TransFileTriggerIn] {
        for p in pkgs {
            for s in p.scriptlets.iter().filter(|s| s.phase == phase) {
                if run_one(root, p, s, timeout)? {
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Run one scriptlet; false when it had nothing to do (a file trigger that matched no file).
fn run_one(root: &Path, p: &ImportedPackage, s: &Scriptlet, timeout: std::time::Duration) -> Result<bool> {
    if s.program[0] == "<lua>" {
        fedostree_util::bail_input!(
            "{}: {} is a Lua scriptlet (-p <lua>), which fedostree cannot run",
            p.nevra,
            s.phase.name()
        );
    }
    if s.needs_expansion {
        fedostree_util::bail_input!(
            "{}: {} asks rpm to expand macros or query formats in its body, which fedostree cannot do",
            p.nevra,
            s.phase.name()
        );
    }
    let interp = s.program[0].trim_start_matches('/');
    if !sandbox::has(root, interp) {
        fedostree_util::bail_input!(
            "{}: {} needs the interpreter {}, which the tree does not have",
            p.nevra,
            s.phase.name(),
            s.program[0]
        );
    }
    let stdin = if s.phase == Phase::TransFileTriggerIn {
        let files = trigger_matches(root, &s.patterns)?;
        if files.is_empty() {
            return Ok(false);
        }
        let mut list = tempfile::tempfile()?;
        use std::io::{Seek, Write};
        list.write_all((files.join("\n") + "\n").as_bytes())?;
        list.rewind()?;
        Some(list)
    } else {
        None
    };
    let usr = if s.phase == Phase::Pre {
        Usr::Writable
    } else {
        Usr::ReadOnly
    };
    let mut argv: Vec<&str> = s.program.iter().map(String::as_str).collect();
    // As rpm does: the script as a file argument, then the install count (below).
    let file = tempfile::NamedTempFile::new()?;
    fs_err::write(file.path(), &s.body)?;
    const INSIDE: &str = "/run/fedostree-scriptlet";
    if !s.body.is_empty() {
        argv.push(INSIDE);
    }
    // As rpm does: the install count ("1": a fresh install); a file trigger gets none, as in
    // rpm-ostree.
    if s.phase != Phase::TransFileTriggerIn {
        argv.push("1");
    }
    let what = format!("{}: {} scriptlet", p.nevra, s.phase.name());
    let outcome = sandbox::run_with(root, usr, &argv, &[(file.path(), INSIDE)], stdin, timeout)?;
    let output = sandbox::checked(outcome, &what)?;
    for line in output.lines() {
        fedostree_util::events::step(fedostree_util::events::Stage::Compose, format!("{what}: {line}"), None);
    }
    Ok(true)
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
                    patterns: vec![],
                    needs_expansion: false,
                })
                .collect(),
            caps: vec![],
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

    #[test]
    fn lua_and_macro_expanding_scriptlets_are_refused_by_name() {
        let t = tree();
        let mut p = pkg(&[(Phase::Post, "print('hello')")]);
        p.scriptlets[0].program = vec!["<lua>".into()];
        let e = run_all(t.path(), &[p]).unwrap_err().to_string();
        assert!(e.contains("p-1-1.noarch: %post is a Lua scriptlet"), "{e}");
        let mut p = pkg(&[(Phase::PostTrans, "echo %{_libdir}")]);
        p.scriptlets[0].needs_expansion = true;
        let e = run_all(t.path(), &[p]).unwrap_err().to_string();
        assert!(e.contains("p-1-1.noarch: %posttrans asks rpm to expand macros"), "{e}");
    }

    #[test]
    fn a_scriptlet_that_hangs_is_killed_at_the_timeout() {
        let t = tree();
        let p = pkg(&[(Phase::Post, "echo started; sleep 30")]);
        let started = std::time::Instant::now();
        let e = run_one(t.path(), &p, &p.scriptlets[0], std::time::Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "not killed");
        assert!(e.contains("p-1-1.noarch: %post scriptlet timed out after 1 s"), "{e}");
        assert!(e.contains("started"), "{e}");
    }

    #[test]
    fn file_triggers_get_the_matching_files_on_stdin_and_skip_when_none_match() {
        let t = tree();
        let r = t.path();
        for f in [
            "usr/lib/plug.d/a.conf",
            "usr/lib/plug.d/sub/b.conf",
            "usr/local/lib/plug.d/c.conf",
        ] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), "x").unwrap();
        }
        std::os::unix::fs::symlink("lib", r.join("usr/lib64")).unwrap();
        let trigger = |patterns: &[&str], body: &str| Scriptlet {
            phase: Phase::TransFileTriggerIn,
            program: vec!["/bin/sh".into()],
            body: body.into(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            needs_expansion: false,
        };
        let mut p = pkg(&[]);
        p.scriptlets = vec![
            trigger(
                &["/usr/lib64/plug.d/", "/usr/local/lib/plug.d"],
                "cat > /etc/seen; echo \"$#\" > /etc/args",
            ),
            trigger(&["/usr/lib/none.d", "/etc"], "touch /etc/must-not-run"),
        ];
        assert_eq!(run_all(r, &[p]).unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(r.join("etc/seen")).unwrap(),
            "/usr/lib64/plug.d/a.conf\n/usr/lib64/plug.d/sub/b.conf\n"
        );
        assert_eq!(std::fs::read_to_string(r.join("etc/args")).unwrap(), "0\n");
        assert!(!r.join("etc/must-not-run").exists());
    }
}
