//! busybox from Debian's static build: /usr/bin/busybox plus one symlink per applet, the dev
//! trees' whole userland and /bin/sh.

use super::debian::{self, Deb};
use super::spec::PkgSpec;
use anyhow::{Context, Result};
use fedostree_util::cmd::CommandRunExt;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The package without files; `bumps` raises the Debian revision.
pub(crate) fn skeleton(arch: &str, deb: &Deb, bumps: u32) -> Result<PkgSpec> {
    let v = debian::split_version(&deb.version)?;
    Ok(PkgSpec {
        name: "busybox".into(),
        epoch: v.epoch,
        version: v.version,
        release: super::repo::bumped_release(&v.release, bumps),
        arch: arch.into(),
        summary: "Statically linked binary providing simplified versions of system commands".into(),
        license: "GPL-2.0-only".into(),
        provides: vec!["/bin/sh".into(), "/usr/bin/sh".into(), "sh".into()],
        ..Default::default()
    })
}

/// Applet names from `busybox --list`. The binary can only run on its own architecture, so the
/// list comes from `host_deb` (the host's build of the same Debian version: same applets).
fn applets(host_deb: &Deb, tmp: &Path) -> Result<BTreeSet<String>> {
    let x = tmp.join("host-busybox");
    debian::extract(host_deb, &x)?;
    let out = Command::new(x.join("bin/busybox")).arg("--list").run_get_string()?;
    Ok(out
        .lines()
        .map(str::trim)
        // `busybox` itself is listed: a busybox -> busybox link would loop (ELOOP).
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect())
}

pub(crate) fn spec(
    arch: &str,
    deb: &Deb,
    bumps: u32,
    host_deb: &Deb,
    shared: &BTreeSet<String>,
    tmp: &Path,
) -> Result<PkgSpec> {
    let mut s = skeleton(arch, deb, bumps)?;
    let x = tmp.join("busybox");
    debian::extract(deb, &x)?;
    s.tree(&x, "", &|p: &str| {
        let p = debian::usr_merge(p);
        if p == "/usr/bin/busybox" {
            return Some(p);
        }
        debian::keep_share(&p, &deb.package, "busybox")
    })
    .with_context(|| format!("busybox: packing {}", deb.path.display()))?;
    s.entries
        .get("/usr/bin/busybox")
        .context("busybox: the deb has no /bin/busybox")?;
    for a in applets(host_deb, tmp)? {
        let path = format!("/usr/bin/{a}");
        if !s.entries.contains_key(&path) {
            s.symlink(&path, "busybox")?;
        }
    }
    s.own_parents(shared)?;
    Ok(s)
}
