//! The tree's RPM database in `/usr/share/rpm`, read-only with the rest of /usr as ostree wants:
//! written by rpm itself (`--justdb`: headers only, payloads are already in) so that `rpm -qa
//! --dbpath /usr/share/rpm` in the guest lists exactly the commit's packages.

use anyhow::Result;
use fedostree_util::cmd::CommandRunExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Install time recorded in the database: fixed, so the same packages give the same database.
pub const SOURCE_DATE_EPOCH: u64 = 1_704_067_200;

pub const DBPATH: &str = "/usr/share/rpm";

pub fn write(root: &Path, rpms: &[PathBuf]) -> Result<()> {
    fs_err::create_dir_all(crate::safepath::beneath(root, "usr/share/rpm")?)?;
    let rpm = |c: &mut Command| {
        c.arg(format!("--root={}", root.display()))
            .arg(format!("--dbpath={DBPATH}"))
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string());
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
