//! The libguestfs appliance needs a host kernel for supermin. Machines without one in /boot (VMs booted
//! with an external kernel) get one prepared from a Debian `linux-image-*` package in the dev repo's deb
//! cache: extracted + `depmod` into `$STATE/cache/supermin-kernel/`, then passed as SUPERMIN_KERNEL /
//! SUPERMIN_MODULES.

use anyhow::{bail, Context, Result};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::state::StateDir;
use std::path::{Path, PathBuf};
use std::process::Command;

fn host_has_kernel() -> bool {
    fs_err::read_dir("/boot")
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz"))
        })
        .unwrap_or(false)
}

/// (vmlinuz, modules dir) of a prepared kernel tree.
fn find_prepared(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let rd = fs_err::read_dir(root.join("lib/modules")).ok()?;
    for e in rd.flatten() {
        let kver = e.file_name().to_string_lossy().into_owned();
        let k = root.join("boot").join(format!("vmlinuz-{kver}"));
        if k.is_file() && e.path().join("modules.dep").is_file() {
            return Some((k, e.path()));
        }
    }
    None
}

/// Environment for guestfish/guestmount so supermin finds a kernel; empty when the host has one.
pub fn supermin_env(state: &StateDir) -> Result<Vec<(&'static str, PathBuf)>> {
    if std::env::var_os("SUPERMIN_KERNEL").is_some() || host_has_kernel() {
        return Ok(vec![]);
    }
    let root = state.root().join("cache/supermin-kernel");
    if find_prepared(&root).is_none() {
        let debarch = fedostree_util::Arch::host()
            .map(fedostree_util::Arch::debian)
            .context("no Debian architecture for this host")?;
        let dir = state.deb_cache().join(debarch);
        let deb = fs_err::read_dir(&dir).ok().and_then(|rd| {
            let mut v: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy();
                    // linux-image-6.1.0-…: the kernel itself, not a metapackage (linux-image-cloud-amd64)
                    // that the Debian repository also caches here.
                    n.strip_prefix("linux-image-")
                        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                        && n.ends_with(".deb")
                        && !n.contains("-dbg")
                })
                .collect();
            v.sort();
            v.pop()
        });
        let Some(deb) = deb else {
            bail!(
                "libguestfs needs a kernel: none in /boot, SUPERMIN_KERNEL unset, and no linux-image-*.deb in {} \
                 (install linux-image-cloud-{debarch}, or build the dev repo first)",
                dir.display()
            );
        };
        let tmp = root.with_extension(format!("tmp{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&tmp);
        fs_err::create_dir_all(&tmp)?;
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp).run()?;
        // usrmerge packages ship usr/lib/modules
        if !tmp.join("lib/modules").exists() && tmp.join("usr/lib/modules").exists() {
            fs_err::create_dir_all(tmp.join("lib"))?;
            fs_err::rename(tmp.join("usr/lib/modules"), tmp.join("lib/modules"))?;
        }
        let kver = fs_err::read_dir(tmp.join("lib/modules"))?
            .flatten()
            .next()
            .context("kernel package has no modules")?
            .file_name();
        Command::new("depmod").arg("-b").arg(&tmp).arg(&kver).run()?;
        let _ = fs_err::remove_dir_all(&root);
        fs_err::rename(&tmp, &root)?;
    }
    let (k, m) = find_prepared(&root).context("prepared supermin kernel is incomplete")?;
    // supermin lstat()s the host's /lib/modules while copying modules into the appliance
    if !Path::new("/lib/modules").exists() {
        fs_err::create_dir_all("/lib/modules").context("creating /lib/modules for supermin")?;
    }
    Ok(vec![("SUPERMIN_KERNEL", k), ("SUPERMIN_MODULES", m)])
}
