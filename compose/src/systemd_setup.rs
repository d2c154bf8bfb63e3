//! What a systemd tree needs evaluated at compose time, by the tree's own tools in the sandbox:
//! `systemctl preset-all` (then the treefile's `units` and `default-target`), tmpfiles for /etc,
//! the dynamic linker cache, and `/etc/machine-id` per `machineid-compat`.

use crate::sandbox::{self, Usr};
use anyhow::Result;
use std::path::Path;

pub struct Settings<'a> {
    pub units: &'a [String],
    pub default_target: Option<&'a str>,
    /// rpm-ostree's default (true): an empty `/etc/machine-id`; false: none. Never an id.
    pub machineid_compat: bool,
}

pub fn apply(root: &Path, s: &Settings) -> Result<()> {
    if sandbox::has(root, "usr/bin/systemctl") {
        sandbox::run_ok(
            root,
            Usr::ReadOnly,
            &["systemctl", "preset-all"],
            "systemctl preset-all",
        )?;
        if !s.units.is_empty() {
            let mut argv = vec!["systemctl", "enable"];
            argv.extend(s.units.iter().map(String::as_str));
            sandbox::run_ok(root, Usr::ReadOnly, &argv, "enabling the treefile's `units`")?;
        }
        if let Some(t) = s.default_target {
            sandbox::run_ok(root, Usr::ReadOnly, &["systemctl", "set-default", t], "default-target")?;
        }
    } else if !s.units.is_empty() || s.default_target.is_some() {
        fedostree_util::bail_input!("`units`/`default-target` need systemd in the tree (no /usr/bin/systemctl)");
    }
    if sandbox::has(root, "usr/bin/systemd-tmpfiles") {
        // Only /etc: /var is rebuilt from tmpfiles.d at boot, /run and /tmp are empty in a commit.
        sandbox::run_ok(
            root,
            Usr::ReadOnly,
            &["systemd-tmpfiles", "--create", "--prefix=/etc"],
            "systemd-tmpfiles --create --prefix=/etc",
        )?;
    }
    if sandbox::has(root, "usr/sbin/ldconfig") {
        sandbox::run_ok(root, Usr::ReadOnly, &["ldconfig"], "ldconfig")?;
    }
    let mid = crate::safepath::beneath(root, "etc/machine-id")?;
    if mid.symlink_metadata().is_ok() {
        fs_err::remove_file(&mid)?;
    }
    if s.machineid_compat && root.join("etc").is_dir() {
        fs_err::write(&mid, "")?;
    }
    Ok(())
}
