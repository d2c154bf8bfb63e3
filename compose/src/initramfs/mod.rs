//! The initramfs of composed trees. A tree that ships dracut gets its own dracut's image (cached by
//! its inputs, see [`dracut`]); the dev trees get a small one of busybox, the virtio/ext4 kernel
//! modules and a shell `/init` ([`INIT_SCRIPT`]) that does OSTree's prepare-root, packed as a
//! reproducible gzip'd newc cpio.
//!
//! Everything is read from the assembled tree on the host and nothing from the tree is executed, so an
//! aarch64 tree builds on x86_64. Same tree → byte-identical image (fixed mtimes, sorted entries, gzip
//! without name or time): otherwise every deploy would copy tens of MB more into /boot.

mod cpio;
mod dracut;
mod modules;
#[cfg(test)]
mod tests;

use anyhow::{Context, Result};
use flate2::{Compression, GzBuilder};
use std::io::Write;
use std::path::Path;

/// The `/init` of the initramfs; compose hashes it into the tree's input hash.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// Modules the guest needs to reach its root filesystem and the results port, in the order asked for.
pub const WANTED_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_console", "virtio_mmio", "ext4"];

/// busybox applets `/init` runs. A fixed list (not `busybox --list`) because the target binary is never
/// run on the host, and because that list contains `busybox` itself: a self-link loops (ELOOP).
pub const APPLETS: &[&str] = &[
    "cat",
    "cut",
    "echo",
    "findfs",
    "grep",
    "insmod",
    "ls",
    "mkdir",
    "mount",
    "poweroff",
    "readlink",
    "rmdir",
    "sh",
    "sleep",
    "switch_root",
    "touch",
    "umount",
    "usleep",
];

/// Directories the initramfs starts with (mount points and the module directory).
const DIRS: &[&str] = &[
    "bin",
    "dev",
    "etc",
    "lib",
    "lib/modules",
    "proc",
    "run",
    "sys",
    "sysroot",
];

/// gzip level: 6 is zlib's default and costs ~0.1 s on the ~4 MB payload.
const GZIP_LEVEL: u32 = 6;

/// Write `usr/lib/modules/$KVER/initramfs.img`: made by the tree's own dracut when it ships one
/// (as rpm-ostree does: `--no-hostonly --reproducible --add ostree`, plus the treefile's
/// `initramfs-args`), else the small busybox image of [`build`].
pub fn generate(tree_root: &Path, kver: &str, args: &[String], cache_dir: &Path) -> Result<()> {
    let rel = format!("usr/lib/modules/{kver}/initramfs.img");
    let out = crate::safepath::beneath(tree_root, &rel)?;
    if crate::sandbox::has(tree_root, "usr/bin/dracut") {
        if dracut::generate(tree_root, kver, args, &rel, &out, cache_dir)? {
            fedostree_util::events::step(
                fedostree_util::events::Stage::Compose,
                "dracut: inputs unchanged, image reused from the cache",
                None,
            );
        }
        return Ok(());
    }
    if !args.is_empty() {
        fedostree_util::bail_input!("`initramfs-args` needs dracut in the tree (no /usr/bin/dracut)");
    }
    crate::safepath::replace_file(&out, build(tree_root, kver)?)?;
    Ok(())
}

/// The kernel modules the initramfs loads, in load order, with their dependency closure.
///
/// `modules_dir` is a tree's `/usr/lib/modules/$KVER`; names come back in kernel spelling (`virtio_blk`).
/// Modules listed in `modules.builtin` are skipped; a module in neither file is an error naming it.
pub fn module_closure(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<String>> {
    modules::ModulesDep::load(modules_dir)?.closure(wanted)
}

/// Build a reproducible gzip'd newc cpio initramfs for the tree at `tree_root` (an assembled OS tree,
/// host-side; no target binary runs, so an aarch64 tree works on x86_64).
#[tracing::instrument(skip_all, fields(tree = %tree_root.display(), kver))]
pub fn build(tree_root: &Path, kver: &str) -> Result<Vec<u8>> {
    let mut archive = cpio::Archive::default();
    for d in DIRS {
        archive.dir(d);
    }
    // The kernel opens /dev/console for /init's stdio before devtmpfs is mounted; without the node,
    // early errors from /init would go nowhere.
    archive.char_dev("dev/console", 0o600, 5, 1);
    archive.file("init", 0o755, INIT_SCRIPT.as_bytes().to_vec());

    // Paths inside the tree are package content: never follow a symlink out of it.
    let busybox = crate::safepath::beneath(tree_root, "usr/bin/busybox")?;
    let data = fs_err::read(&busybox)
        .with_context(|| format!("initramfs needs busybox from the tree, reading {}", busybox.display()))?;
    archive.file("bin/busybox", 0o755, data);
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }

    let modules_dir = crate::safepath::beneath(tree_root, Path::new("usr/lib/modules").join(kver))?;
    let dep = modules::ModulesDep::load(&modules_dir)?;
    let mut load_order = String::new();
    for name in dep.closure(WANTED_MODULES)? {
        let rel = &dep.modules[&name].0;
        let src = crate::safepath::beneath(&modules_dir, rel)
            .with_context(|| format!("modules.dep entry `{rel}` of {kver}"))?;
        let data = fs_err::read(&src).with_context(|| format!("reading kernel module {}", src.display()))?;
        // Keep the file name (with any .xz/.zst suffix): insmod and the kernel decide what they can load.
        let file = rel.rsplit('/').next().unwrap_or(rel);
        archive.file(&format!("lib/modules/{file}"), 0o644, data);
        load_order.push_str(file);
        load_order.push('\n');
    }
    archive.file("lib/modules/load-order", 0o644, load_order.into_bytes());
    tracing::debug!(entries = archive.entries.len(), "initramfs assembled");

    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    gz.write_all(&archive.to_newc())?;
    Ok(gz.finish()?)
}
