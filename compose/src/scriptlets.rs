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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

#[derive(Debug, Clone)]
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
    let o = sandbox::run(root, usr, &argv, &[(file.path(), INSIDE)])?;
    if !o.success {
        fedostree_util::bail_input!(
            "{}: {} scriptlet failed (exit {:?}):\n{}",
            p.nevra,
            s.phase.name(),
            o.code,
            sandbox::tail(&o.output)
        );
    }
    Ok(())
}
