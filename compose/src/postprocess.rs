//! OSTree conventions applied to an assembled tree before commit: `/etc` → `/usr/etc`, `/var`
//! content → tmpfiles.d entries (so `/var` is empty in the commit), usr-merge and toplevel symlinks,
//! `remove-files`, the recorded package list, and the initramfs next to the kernel.

use crate::import::ImportedPackage;
use crate::linesafe;
use crate::safepath::{beneath, parent_beneath};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

/// Where the package list is recorded in the tree (one line per package: `NEVRA path-or--`).
pub const PKGLIST_PATH: &str = "usr/lib/fedostree/pkglist";
/// The tmpfiles.d snippet that recreates the packages' `/var` content at boot.
pub const VAR_TMPFILES_PATH: &str = "usr/lib/tmpfiles.d/fedostree-var.conf";
/// The tmpfiles.d snippet for `/opt` and `/usr/local` (rpm-ostree's `opt-usrlocal`).
pub const OPT_USRLOCAL_TMPFILES_PATH: &str = "usr/lib/tmpfiles.d/fedostree-opt-usrlocal.conf";

/// The treefile's `remove-files`, before the postprocess scripts run (as in rpm-ostree).
pub fn remove_files(root: &Path, remove_files: &[String]) -> Result<()> {
    for rel in remove_files {
        let p = parent_beneath(root, rel)?;
        match fs_err::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs_err::remove_dir_all(&p)?,
            Ok(_) => fs_err::remove_file(&p)?,
            Err(_) => tracing::warn!("remove-files: /{rel} is not in the tree"),
        }
    }
    Ok(())
}

/// The treefile's choices about the tree's layout.
pub struct Layout<'a> {
    /// Extra arguments for the tree's dracut.
    pub initramfs_args: &'a [String],
    /// `tmp-is-dir`: `/tmp` a directory (tmpfs mounted at boot) rather than rpm-ostree's default
    /// link to `sysroot/tmp`.
    pub tmp_is_dir: bool,
    pub boot_location: crate::treefile::BootLocation,
    /// False for `container: true`: no kernel is looked for and no initramfs made.
    pub bootable: bool,
    pub opt_usrlocal: crate::treefile::OptUsrLocal,
}

/// Run every other step in order on the tree at `root`; returns the kernel version of a bootable tree.
pub fn postprocess(
    root: &Path,
    pkgs: &[ImportedPackage],
    layout: &Layout,
    initramfs_cache: &Path,
) -> Result<Option<String>> {
    // Every later step writes below these: none may be a package-planted symlink.
    for d in [
        "usr",
        "usr/lib",
        "usr/lib/fedostree",
        "usr/lib/tmpfiles.d",
        "etc",
        "var",
    ] {
        beneath(root, d)?;
    }
    usr_merge(root)?;
    // dracut reads /etc (its configuration): before /etc moves.
    let kver = match layout.bootable {
        false => None,
        true => {
            let kver = find_kernel(root)?;
            crate::initramfs::generate(root, &kver, layout.initramfs_args, initramfs_cache)
                .context("generating the initramfs")?;
            if layout.boot_location == crate::treefile::BootLocation::New {
                link_ostree_boot(root, &kver)?;
            }
            Some(kver)
        }
    };
    move_etc(root)?;
    var_to_tmpfiles(root)?;
    opt_and_usr_local(root, layout.opt_usrlocal)?;
    toplevel_layout(root, layout.tmp_is_dir, layout.opt_usrlocal)?;
    write_pkglist(root, pkgs)?;
    fs_err::create_dir_all(root.join("boot"))?;
    Ok(kver)
}

/// `/bin`, `/sbin`, `/lib`, `/lib64` must be symlinks into `/usr`; content a package put in the real
/// directory moves into `/usr` first.
fn usr_merge(root: &Path) -> Result<()> {
    for d in ["bin", "sbin", "lib", "lib64"] {
        let top = root.join(d);
        let usr = beneath(root, format!("usr/{d}"))?;
        match fs_err::symlink_metadata(&top) {
            Ok(m) if m.file_type().is_symlink() => continue,
            Ok(m) if m.is_dir() => {
                fs_err::create_dir_all(&usr)?;
                move_entries(&top, &usr, &format!("/{d}"), &format!("/usr/{d}"))?;
            }
            Ok(_) => fedostree_util::bail_input!("usr-merge: /{d} is a regular file"),
            Err(_) if !usr.exists() => continue,
            Err(_) => {}
        }
        symlink(format!("usr/{d}"), &top)?;
    }
    Ok(())
}

fn move_etc(root: &Path) -> Result<()> {
    let etc = root.join("etc");
    if !etc.exists() {
        return Ok(());
    }
    let usr_etc = beneath(root, "usr/etc")?;
    // A tree of a few packages (`container: true`) may have no /usr yet.
    fs_err::create_dir_all(root.join("usr"))?;
    if !usr_etc.exists() {
        return fs_err::rename(&etc, &usr_etc).context("moving /etc to /usr/etc");
    }
    // A package may own the (empty) /usr/etc directory itself; anything more is a conflict.
    move_entries(&etc, &usr_etc, "/etc", "/usr/etc")
}

/// Move every entry of `from` into `to` and remove `from`; a name present in both is a conflict.
fn move_entries(from: &Path, to: &Path, from_name: &str, to_name: &str) -> Result<()> {
    for e in fs_err::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if dest.symlink_metadata().is_ok() {
            fedostree_util::bail_input!(
                "both {from_name}/{0} and {to_name}/{0} exist in the tree",
                e.file_name().to_string_lossy()
            );
        }
        fs_err::rename(e.path(), dest)?;
    }
    fs_err::remove_dir(from)?;
    Ok(())
}

/// Packages' `/var` content is only created at deploy time by tmpfiles (as rpm-ostree does):
/// directories become `d`, symlinks `L`; regular files cannot be represented and are dropped.
fn var_to_tmpfiles(root: &Path) -> Result<()> {
    let var = root.join("var");
    let mut lines = Vec::new();
    if var.exists() {
        lines = to_tmpfiles(&var, Path::new("/var"))?;
        fs_err::remove_dir_all(&var)?;
    }
    fs_err::create_dir(&var)?;
    lines.sort();
    if !lines.is_empty() {
        let conf = beneath(root, VAR_TMPFILES_PATH)?;
        fs_err::create_dir_all(conf.parent().unwrap())?;
        crate::safepath::replace_file(&conf, lines.join("\n") + "\n")?;
    }
    Ok(())
}

/// tmpfiles.d lines that recreate the directories and symlinks under `dir` at `at` on the booted
/// system; regular files are dropped with a warning naming them.
fn to_tmpfiles(dir: &Path, at: &Path) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    walk(dir, &mut |p, m| {
        let rel = at.join(p.strip_prefix(dir).unwrap());
        if m.file_type().is_symlink() {
            let target = fs_err::read_link(p)?;
            let arg = linesafe::tmpfiles_argument(&target, &rel)?;
            lines.push(format!("L {} - - - - {arg}", linesafe::tmpfiles_path(&rel)));
        } else if m.is_dir() {
            lines.push(format!(
                "d {} {:04o} {} {} - -",
                linesafe::tmpfiles_path(&rel),
                m.permissions().mode() & 0o7777,
                m.uid(),
                m.gid()
            ));
        } else {
            tracing::warn!(
                "dropping {} (only directories and symlinks can live in {})",
                rel.display(),
                at.display()
            );
        }
        Ok(())
    })?;
    Ok(lines)
}

/// rpm-ostree's `/opt` and `/usr/local`. Packages' `/opt/NAME` content was imported into
/// `/usr/lib/opt/NAME`: tmpfiles links `/opt/NAME` to it at boot. With `opt-usrlocal: var` (the
/// default) `/usr/local` becomes a link to `../var/usrlocal`, whose directories and links tmpfiles
/// makes at boot (files there are dropped, named); with `root` both stay plain directories.
fn opt_and_usr_local(root: &Path, mode: crate::treefile::OptUsrLocal) -> Result<()> {
    let mut lines = Vec::new();
    let usr_local = parent_beneath(root, "usr/local")?;
    if mode == crate::treefile::OptUsrLocal::Var {
        // rpm-ostree's integration tmpfiles: the targets of the /opt and /usr/local links.
        lines.push("d /var/opt 0755 0 0 - -".to_owned());
        lines.push("d /var/usrlocal 0755 0 0 - -".to_owned());
        match fs_err::symlink_metadata(&usr_local) {
            Ok(m) if m.is_dir() => {
                lines.extend(to_tmpfiles(&usr_local, Path::new("/var/usrlocal"))?);
                fs_err::remove_dir_all(&usr_local)?;
            }
            Ok(_) => fs_err::remove_file(&usr_local)?,
            Err(_) => {}
        }
        symlink("../var/usrlocal", &usr_local)?;
    } else if usr_local.symlink_metadata().is_err() {
        fs_err::create_dir(&usr_local)?;
    }
    let opt = beneath(root, "usr/lib/opt")?;
    if opt.is_dir() {
        let mut names: Vec<_> = fs_err::read_dir(&opt)?.collect::<Result<_, _>>()?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = Path::new("/opt").join(e.file_name());
            let target = Path::new("../../usr/lib/opt").join(e.file_name());
            let arg = linesafe::tmpfiles_argument(&target, &name)?;
            lines.push(format!("L {} - - - - {arg}", linesafe::tmpfiles_path(&name)));
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    let conf = beneath(root, OPT_USRLOCAL_TMPFILES_PATH)?;
    fs_err::create_dir_all(conf.parent().unwrap())?;
    crate::safepath::replace_file(&conf, lines.join("\n") + "\n")
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<()>) -> Result<()> {
    let mut entries: Vec<_> = fs_err::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let m = e.path().symlink_metadata()?;
        f(&e.path(), &m)?;
        if m.is_dir() {
            walk(&e.path(), f)?;
        }
    }
    Ok(())
}

/// `boot-location: new`: the kernel and initramfs also in `/usr/lib/ostree-boot`, named with the
/// boot checksum (sha256 of the kernel then the initramfs), as hardlinks like rpm-ostree makes them.
fn link_ostree_boot(root: &Path, kver: &str) -> Result<()> {
    use sha2::Digest;
    let modules = beneath(root, format!("usr/lib/modules/{kver}"))?;
    let (kernel, initramfs) = (modules.join("vmlinuz"), modules.join("initramfs.img"));
    let mut h = sha2::Sha256::new();
    for f in [&kernel, &initramfs] {
        std::io::copy(&mut fs_err::File::open(f)?, &mut h)?;
    }
    let csum = hex::encode(h.finalize());
    let dir = beneath(root, "usr/lib/ostree-boot")?;
    if dir.exists() {
        fs_err::remove_dir_all(&dir)?;
    }
    fs_err::create_dir_all(&dir)?;
    fs_err::hard_link(&kernel, dir.join(format!("vmlinuz-{kver}-{csum}")))?;
    fs_err::hard_link(&initramfs, dir.join(format!("initramfs-{kver}.img-{csum}")))?;
    Ok(())
}

/// The toplevel an OSTree deployment expects: API mount points, `/sysroot`, `/tmp`, and the links
/// that put mutable state under `/var`.
fn toplevel_layout(root: &Path, tmp_is_dir: bool, opt_usrlocal: crate::treefile::OptUsrLocal) -> Result<()> {
    for d in ["dev", "proc", "sys", "run", "sysroot", "boot", "usr/lib/fedostree"] {
        fs_err::create_dir_all(beneath(root, d)?)?;
    }
    let tmp = parent_beneath(root, "tmp")?;
    match (tmp_is_dir, fs_err::symlink_metadata(&tmp)) {
        (true, Ok(m)) if m.is_dir() => {}
        (true, Ok(_)) => fs_err::remove_file(&tmp)?,
        (false, Ok(m)) if m.is_dir() && fs_err::read_dir(&tmp)?.next().is_some() => {
            fedostree_util::bail_input!("/tmp has content; with tmp-is-dir false it becomes a symlink to sysroot/tmp")
        }
        (false, Ok(m)) if m.is_dir() => fs_err::remove_dir(&tmp)?,
        (false, Ok(_)) => fs_err::remove_file(&tmp)?,
        (_, Err(_)) => {}
    }
    if tmp_is_dir {
        if tmp.symlink_metadata().is_err() {
            fs_err::create_dir(&tmp)?;
        }
        fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    } else {
        symlink("sysroot/tmp", &tmp)?;
    }
    let opt_is_dir = opt_usrlocal == crate::treefile::OptUsrLocal::Root;
    if opt_is_dir {
        let opt = parent_beneath(root, "opt")?;
        match fs_err::symlink_metadata(&opt) {
            Ok(m) if m.is_dir() => {}
            // The sandbox's link to /usr/lib/opt (see `sandbox`).
            Ok(m) if m.file_type().is_symlink() => {
                fs_err::remove_file(&opt)?;
                fs_err::create_dir(&opt)?;
            }
            Ok(_) => fedostree_util::bail_input!("/opt is not a directory (opt-usrlocal: root)"),
            Err(_) => fs_err::create_dir(&opt)?,
        }
    }
    let links = [
        ("ostree", "sysroot/ostree"),
        ("home", "var/home"),
        ("root", "var/roothome"),
        ("mnt", "var/mnt"),
        ("opt", "var/opt"),
        ("srv", "var/srv"),
        ("media", "run/media"),
    ];
    for (link, target) in links.into_iter().filter(|(l, _)| !(opt_is_dir && *l == "opt")) {
        let p = root.join(link);
        match fs_err::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => fs_err::remove_file(&p)?,
            Ok(m) if m.is_dir() && fs_err::read_dir(&p)?.next().is_none() => fs_err::remove_dir(&p)?,
            Ok(_) => fedostree_util::bail_input!("/{link} has content; OSTree needs it to be a symlink to {target}"),
            Err(_) => {}
        }
        symlink(target, &p)?;
    }
    Ok(())
}

fn write_pkglist(root: &Path, pkgs: &[ImportedPackage]) -> Result<()> {
    let mut s = String::new();
    for p in pkgs {
        if !linesafe::is_plain_field(&p.nevra) {
            fedostree_util::bail_input!("package {:?}: whitespace or control characters in its NEVRA", p.nevra);
        }
        // import only picks plain paths as samples; check again rather than trust it.
        let sample = p
            .sample_path
            .as_deref()
            .filter(|s| linesafe::is_plain_field(s))
            .unwrap_or("-");
        writeln!(s, "{} {}", p.nevra, sample).unwrap();
    }
    crate::safepath::replace_file(&beneath(root, PKGLIST_PATH)?, s)?;
    Ok(())
}

/// The single kernel the tree ships, `usr/lib/modules/$KVER/vmlinuz`.
fn find_kernel(root: &Path) -> Result<String> {
    let dir = beneath(root, "usr/lib/modules")?;
    let mut found = Vec::new();
    for e in fs_err::read_dir(&dir)
        .map_err(|_| fedostree_util::InputError::new("no kernel in the tree: /usr/lib/modules is missing"))?
    {
        let e = e?;
        let rel = Path::new("usr/lib/modules").join(e.file_name()).join("vmlinuz");
        if e.path().join("vmlinuz").symlink_metadata().is_ok() && beneath(root, &rel)?.is_file() {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => fedostree_util::bail_input!("no kernel in the tree: no /usr/lib/modules/*/vmlinuz (add a kernel package, or set `container: true` for a tree that is not booted)"),
        _ => fedostree_util::bail_input!("more than one kernel in the tree: {}", found.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_symlinks_cannot_redirect_compose_writes() {
        for planted in ["usr/lib/fedostree", "usr/lib/tmpfiles.d", "etc"] {
            let d = tempfile::tempdir().unwrap();
            let (root, outside) = (d.path().join("root"), d.path().join("outside"));
            std::fs::create_dir_all(root.join("usr/lib")).unwrap();
            std::fs::create_dir_all(root.join("var/lib/x")).unwrap();
            std::fs::create_dir_all(&outside).unwrap();
            std::os::unix::fs::symlink(&outside, root.join(planted)).unwrap();
            let layout = Layout {
                initramfs_args: &[],
                tmp_is_dir: true,
                boot_location: crate::treefile::BootLocation::Modules,
                bootable: true,
                opt_usrlocal: crate::treefile::OptUsrLocal::Var,
            };
            let err = postprocess(&root, &[], &layout, &d.path().join("cache"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("symlink"), "{planted}: {err}");
            assert_eq!(
                std::fs::read_dir(&outside).unwrap().count(),
                0,
                "{planted}: wrote outside the tree"
            );
        }
    }

    #[test]
    fn etc_moves_to_usr_etc_and_var_becomes_tmpfiles() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "h\n").unwrap();
        std::fs::create_dir_all(root.join("usr/etc")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/app")).unwrap();
        std::os::unix::fs::symlink("../run", root.join("var/run")).unwrap();
        move_etc(root).unwrap();
        var_to_tmpfiles(root).unwrap();
        assert!(!root.join("etc").exists() && root.join("usr/etc/hostname").is_file());
        assert_eq!(std::fs::read_dir(root.join("var")).unwrap().count(), 0);
        let conf = std::fs::read_to_string(root.join(VAR_TMPFILES_PATH)).unwrap();
        assert!(
            conf.contains("d /var/lib/app 0755 0 0 - -") && conf.contains("L /var/run - - - - ../run"),
            "{conf}"
        );
    }

    #[test]
    fn packaged_var_names_cannot_inject_tmpfiles_lines() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("var/lib/x\nr! /etc/shadow")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/with space")).unwrap();
        var_to_tmpfiles(root).unwrap();
        let conf = std::fs::read_to_string(root.join(VAR_TMPFILES_PATH)).unwrap();
        // Every line is one `d` directive with its seven fields: nothing was split off the path.
        for line in conf.lines() {
            assert_eq!(line.split_whitespace().count(), 7, "{conf}");
            assert!(line.starts_with("d /var/"), "{conf}");
        }
        assert!(conf.contains("d /var/lib/x\\x0ar!\\x20/etc/shadow 0755"), "{conf}");
        assert!(conf.contains("d /var/lib/with\\x20space 0755"), "{conf}");

        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var")).unwrap();
        std::os::unix::fs::symlink("x\nL+ /etc/passwd - - - - /tmp/p", d.path().join("var/l")).unwrap();
        let e = var_to_tmpfiles(d.path()).unwrap_err().to_string();
        assert!(e.contains("/var/l") && e.contains("control characters"), "{e}");
    }

    #[test]
    fn pkglist_lines_are_one_package_each() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib/fedostree")).unwrap();
        let pkg = |nevra: &str, sample: Option<&str>| ImportedPackage {
            name: "p".into(),
            nevra: nevra.into(),
            sample_path: sample.map(Into::into),
            owners: vec![],
            scriptlets: vec![],
            caps: vec![],
        };
        write_pkglist(
            d.path(),
            &[
                pkg("a-1-1.x86_64", Some("/usr/a\nevil-1-1.x86_64 /x")),
                pkg("b-1-1.noarch", None),
            ],
        )
        .unwrap();
        let list = std::fs::read_to_string(d.path().join(PKGLIST_PATH)).unwrap();
        assert_eq!(list, "a-1-1.x86_64 -\nb-1-1.noarch -\n");
        let e = write_pkglist(d.path(), &[pkg("a\nb-1-1.x86_64", None)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("control characters"), "{e}");
    }
}
