//! The tree's RPM database in `/usr/share/rpm`, read-only with the rest of /usr as ostree wants:
//! written by rpm itself (`--justdb`: headers only, payloads are already in) so that `rpm -qa
//! --dbpath /usr/share/rpm` in the guest lists exactly the commit's packages.

use crate::treefile::RpmdbBackend;
use anyhow::Result;
use fedostree_util::cmd::CommandRunExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::epoch::SOURCE_DATE_EPOCH;

pub const DBPATH: &str = "/usr/share/rpm";

/// The database backend the tree's own rpm reads (`%_db_backend`), asked of that rpm in the
/// sandbox; None when the tree has no rpm (the host's default is as good as any then). Busybox's
/// `rpm` applet is no librpm: the macros file tells them apart.
fn target_backend(root: &Path) -> Result<Option<String>> {
    if !crate::sandbox::has(root, "usr/bin/rpm") || !crate::sandbox::has(root, "usr/lib/rpm/macros") {
        return Ok(None);
    }
    let out = crate::sandbox::run_ok(
        root,
        crate::sandbox::Usr::ReadOnly,
        &["rpm", "--eval", "%{?_db_backend}"],
        "asking the tree's rpm for its database backend",
    )?;
    Ok(Some(out.trim().to_owned()).filter(|b| !b.is_empty()))
}

/// Write the database of `rpms` into the tree; `backend` is the treefile's `rpmdb`.
pub fn write(root: &Path, rpms: &[PathBuf], backend: RpmdbBackend) -> Result<()> {
    fs_err::create_dir_all(crate::safepath::beneath(root, "usr/share/rpm")?)?;
    let db_backend = if backend.is_target() {
        target_backend(root)?
    } else {
        None
    };
    let rpm = |c: &mut Command| {
        c.arg(format!("--root={}", root.display()))
            .arg(format!("--dbpath={DBPATH}"))
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string());
        if let Some(b) = &db_backend {
            c.args(["--define", &format!("_db_backend {b}")]);
        }
    };
    let mut init = Command::new("rpm");
    rpm(&mut init);
    init.arg("--initdb").run()?;
    let mut c = Command::new("rpm");
    rpm(&mut c);
    // Signatures were verified by the import already (with the repositories' own keys).
    c.args([
        "-i",
        "--justdb",
        "--nodeps",
        "--noscripts",
        "--notriggers",
        "--nosignature",
        "--nodigest",
        "--ignorearch",
        "--ignoreos",
        "--replacefiles",
        "--replacepkgs",
    ])
    .args(rpms)
    .run()
}
