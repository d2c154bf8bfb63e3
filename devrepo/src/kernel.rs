//! The kernel packages from Debian's cloud kernel: kernel-core (vmlinuz, the modules a VM needs to
//! boot, module metadata), kernel-modules (the rest) and the `kernel` metapackage, split the way
//! Fedora splits its kernel.

use super::debian::{self, Deb, DebVersion};
use super::spec::PkgSpec;
use anyhow::{anyhow, bail, Context, Result};
use fedostree_util::cmd::CommandRunExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Modules kernel-core carries (with their dependency closure) so a VM boots from it alone:
/// virtio transport, disk, console, network, and the root filesystem.
pub(crate) const BOOT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_net",
    "virtio_mmio",
    "ext4",
];

/// An extracted kernel deb rearranged into `<root>/usr/lib/modules/<kver>/` with depmod run over
/// all of its modules, shared by kernel-core and kernel-modules.
pub(crate) struct KernelStage {
    _tmp: tempfile::TempDir,
    pub kver: String,
    /// `<root>/usr/lib/modules/<kver>`
    pub moddir: PathBuf,
    copyright: Option<PathBuf>,
    /// Paths relative to moddir, `kernel/...ko`, that go to kernel-core.
    core_modules: BTreeSet<String>,
}

pub(crate) fn stage(deb: &Deb, tmp_parent: &Path) -> Result<KernelStage> {
    let ctx = || format!("staging kernel from {}", deb.path.display());
    let tmp = tempfile::tempdir_in(tmp_parent).with_context(ctx)?;
    let x = tmp.path().join("deb");
    debian::extract(deb, &x).with_context(ctx)?;
    let mut kvers: Vec<String> = fs_err::read_dir(x.join("lib/modules"))
        .with_context(ctx)?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    let kver = match kvers.as_mut_slice() {
        [k] => std::mem::take(k),
        _ => bail!(
            "{}: expected one /lib/modules/<kver>, found {kvers:?}",
            deb.path.display()
        ),
    };
    let usr = tmp.path().join("root/usr");
    let moddir = usr.join("lib/modules").join(&kver);
    fs_err::create_dir_all(usr.join("lib/modules"))?;
    fs_err::rename(x.join("lib/modules").join(&kver), &moddir).with_context(ctx)?;
    let vmlinuz = x.join(format!("boot/vmlinuz-{kver}"));
    fs_err::rename(&vmlinuz, moddir.join("vmlinuz"))
        .with_context(|| format!("{}: no {}", deb.path.display(), vmlinuz.display()))?;
    let config = x.join(format!("boot/config-{kver}"));
    if config.exists() {
        fs_err::rename(&config, moddir.join("config"))?;
    }
    // Debian generates modules.dep at install time; generate it here, once, over every module, so
    // kernel-core and kernel-modules ship one consistent set of module indexes.
    Command::new("depmod")
        .arg("-b")
        .arg(&usr)
        .arg(&kver)
        .run()
        .with_context(ctx)?;
    let dep = read(&moddir.join("modules.dep"))?;
    let builtin = read(&moddir.join("modules.builtin"))?;
    let core_modules =
        boot_closure(&dep, &builtin, BOOT_MODULES).with_context(|| format!("{}: kernel {kver}", deb.path.display()))?;
    let copyright = x.join(format!("usr/share/doc/{}/copyright", deb.package));
    let copyright = copyright.exists().then_some(copyright);
    Ok(KernelStage {
        _tmp: tmp,
        kver,
        moddir,
        copyright,
        core_modules,
    })
}

fn read(p: &Path) -> Result<String> {
    fs_err::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

/// A module's name as modprobe sees it: `kernel/fs/ext4/ext4.ko` → `ext4`, `-` and `_` alike.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// The module files (relative paths) needed to load `wanted`, following modules.dep; a wanted
/// module that is built in needs no file. A name found in neither is an error.
pub(crate) fn boot_closure(modules_dep: &str, modules_builtin: &str, wanted: &[&str]) -> Result<BTreeSet<String>> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for line in modules_dep.lines().filter(|l| !l.trim().is_empty()) {
        let (m, rest) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("modules.dep: bad line {line:?}"))?;
        by_name.insert(module_name(m), m.to_string());
        deps.insert(m.to_string(), rest.split_whitespace().map(str::to_string).collect());
    }
    let builtin: BTreeSet<String> = modules_builtin.lines().map(module_name).collect();
    let mut out = BTreeSet::new();
    let mut todo = Vec::new();
    for w in wanted {
        let n = w.replace('-', "_");
        match by_name.get(&n) {
            Some(path) => todo.push(path.clone()),
            None if builtin.contains(&n) => {}
            None => bail!("boot module {w} is neither in modules.dep nor in modules.builtin"),
        }
    }
    while let Some(m) = todo.pop() {
        if out.insert(m.clone()) {
            let d = deps
                .get(&m)
                .ok_or_else(|| anyhow!("modules.dep: {m} is a dependency but has no line"))?;
            todo.extend(d.iter().cloned());
        }
    }
    Ok(out)
}

/// RPM metadata shared by the three kernel packages.
pub(crate) struct KernelMeta {
    pub arch: String,
    pub v: DebVersion,
}

impl KernelMeta {
    fn base(&self, name: &str, summary: &str) -> PkgSpec {
        PkgSpec {
            name: name.into(),
            epoch: self.v.epoch,
            version: self.v.version.clone(),
            release: self.v.release.clone(),
            arch: self.arch.clone(),
            summary: summary.into(),
            license: "GPL-2.0-only".into(),
            ..Default::default()
        }
    }
    fn vr(&self) -> String {
        super::spec::evr(self.v.epoch, &self.v.version, &self.v.release)
    }
    pub fn core_skeleton(&self) -> PkgSpec {
        self.base(
            "kernel-core",
            "The Linux kernel and the modules a virtual machine needs to boot",
        )
    }
    pub fn modules_skeleton(&self) -> PkgSpec {
        self.base("kernel-modules", "Kernel modules to match the core kernel")
    }
    pub fn meta(&self) -> PkgSpec {
        let mut s = self.base("kernel", "The Linux kernel (metapackage)");
        s.requires = vec![
            format!("kernel-core = {}", self.vr()),
            format!("kernel-modules = {}", self.vr()),
        ];
        s
    }

    pub fn core(&self, st: &KernelStage, shared: &BTreeSet<String>) -> Result<PkgSpec> {
        let mut s = self.core_skeleton();
        s.provides = vec![
            format!("kernel-uname-r = {}", st.kver),
            format!("kernel = {}", self.vr()),
        ];
        s.requires = vec!["fedostree-base".into()];
        let dest = format!("/usr/lib/modules/{}", st.kver);
        for e in fs_err::read_dir(&st.moddir)? {
            let e = e?;
            let name = e
                .file_name()
                .into_string()
                .map_err(|n| anyhow!("non-UTF-8 name {n:?}"))?;
            if e.file_type()?.is_file() {
                s.file(&format!("{dest}/{name}"), e.path(), 0o644)?;
            }
        }
        for m in &st.core_modules {
            s.file(&format!("{dest}/{m}"), st.moddir.join(m), 0o644)?;
        }
        if let Some(c) = &st.copyright {
            s.file("/usr/share/doc/kernel-core/copyright", c, 0o644)?;
        }
        s.dir(&dest, 0o755)?;
        s.own_parents(shared)?;
        Ok(s)
    }

    pub fn modules(&self, st: &KernelStage, shared: &BTreeSet<String>) -> Result<PkgSpec> {
        let mut s = self.modules_skeleton();
        s.requires = vec![format!("kernel-core = {}", self.vr())];
        let dest = format!("/usr/lib/modules/{}/kernel", st.kver);
        let core = &st.core_modules;
        s.tree(&st.moddir.join("kernel"), &dest, &|p: &str| {
            let rel = p.strip_prefix(&format!("/usr/lib/modules/{}/", st.kver)).unwrap_or(p);
            (!core.contains(rel)).then(|| p.to_string())
        })?;
        s.own_parents(shared)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/virtio/virtio.ko:\n\
        kernel/drivers/virtio/virtio_ring.ko:\n\
        kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
        kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\n\
        kernel/net/core/failover.ko:\n\
        kernel/sound/snd.ko:\n";

    #[test]
    fn closure_follows_deps_and_skips_builtins() {
        let got = boot_closure(DEP, "kernel/fs/ext4/ext4.ko\n", &["virtio_pci", "virtio-net", "ext4"]).unwrap();
        let want = [
            "kernel/drivers/net/virtio_net.ko",
            "kernel/drivers/virtio/virtio.ko",
            "kernel/drivers/virtio/virtio_pci.ko",
            "kernel/drivers/virtio/virtio_ring.ko",
            "kernel/net/core/failover.ko",
        ];
        assert_eq!(got.iter().map(String::as_str).collect::<Vec<_>>(), want);
    }

    #[test]
    fn unknown_boot_module_is_an_error() {
        let err = boot_closure(DEP, "", &["virtio_blk"]).unwrap_err();
        assert!(format!("{err:#}").contains("virtio_blk"), "{err:#}");
    }
}
