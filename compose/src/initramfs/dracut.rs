//! The tree's own dracut, and a cache of what it made.
//!
//! dracut takes 10 s of a 25 s compose under `--no-hostonly`, and most composes change packages the
//! initramfs never sees. An image is reused only when everything dracut could have looked at is
//! unchanged:
//! - the *key*: the arguments, the kernel version, the shape of the whole tree (every path with its
//!   type, mode and symlink target: dracut's module checks ask "does this binary exist?"), and the
//!   content of `/etc`, dracut's own `/usr/lib/dracut` and `/usr/lib/os-release` (configuration and
//!   the module scripts, which it reads without copying);
//! - the *manifest*: the content of every tree file at a path the image holds (libraries, units,
//!   modules, udev rules: what dracut copied or rewrote from the tree).
//!
//! A package bump that leaves the tree's shape alone and touches nothing in the image therefore
//! reuses it; any other change runs dracut again.

use crate::sandbox::{self, Usr};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bumped whenever what goes into the key or the manifest changes.
const CACHE_FORMAT: &str = "fedostree-dracut-cache-2";
/// Entries kept; the oldest (by use) go first.
const KEEP: usize = 16;

/// Run depmod and the tree's dracut for `kver` into `out` (`root`/`out_rel`, already checked to stay
/// beneath it), reusing a cached image from `cache_dir` when its inputs are unchanged. Returns whether
/// the cache answered.
pub fn generate(root: &Path, kver: &str, args: &[String], out_rel: &str, out: &Path, cache_dir: &Path) -> Result<bool> {
    // The module index the kernel package's scripts would have made (rpm-ostree runs it too).
    if sandbox::has(root, "usr/sbin/depmod") {
        sandbox::run_ok(root, Usr::Writable, &["depmod", "-a", kver], "depmod")?;
    }
    let mut argv = vec![
        "dracut",
        "--no-hostonly",
        "--reproducible",
        "--add",
        "ostree",
        "--force",
        "--kver",
        kver,
    ];
    argv.extend(args.iter().map(String::as_str));
    let key = cache_key(root, &argv).context("hashing the initramfs inputs")?;
    let entry = cache_dir.join(&key);
    // Never into an existing file (the cache's copy below, dracut's own in-place `cp`): it may be a
    // hardlink into the unpacked package cache.
    if out.symlink_metadata().is_ok() {
        fs_err::remove_file(out)?;
    }
    if let Some(image) = lookup(root, &entry)? {
        fs_err::copy(&image, out)?;
        mark_used(&entry.with_extension("manifest"));
        return Ok(true);
    }
    let dest = format!("/{out_rel}");
    argv.push(&dest);
    crate::progress::timed("dracut", || sandbox::run_ok(root, Usr::Writable, &argv, "dracut"))?;
    store(root, out, &entry).context("caching the initramfs")?;
    prune(cache_dir);
    Ok(false)
}

/// The cached image for `entry` if its manifest still matches the tree.
fn lookup(root: &Path, entry: &Path) -> Result<Option<PathBuf>> {
    let (manifest, image) = (entry.with_extension("manifest"), entry.with_extension("img"));
    let Ok(text) = fs_err::read_to_string(&manifest) else {
        return Ok(None);
    };
    if !image.exists() {
        return Ok(None);
    }
    let Ok(recorded) = serde_json::from_str::<BTreeMap<String, String>>(&text) else {
        return Ok(None);
    };
    for (rel, sum) in &recorded {
        if file_sha256(&root.join(rel))?.as_deref() != Some(sum.as_str()) {
            return Ok(None);
        }
    }
    Ok(Some(image))
}

/// Record the tree files behind `image`'s members, then the image itself (manifest last: an entry
/// without one is never used).
fn store(root: &Path, image: &Path, entry: &Path) -> Result<()> {
    let data = fs_err::read(image)?;
    let mut manifest = BTreeMap::new();
    for member in image_members(&data)? {
        // A member that is a file in the tree came from it (copied, or rewritten as udev rules are).
        let Some(path) = crate::safepath::resolve_in_tree(root, &member) else {
            continue;
        };
        if let Some(sum) = file_sha256(&path)? {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            manifest.insert(rel, sum);
        }
    }
    fs_err::create_dir_all(entry.parent().expect("entry is in the cache dir"))?;
    let tmp = entry.with_extension("tmp");
    fs_err::write(&tmp, &data)?;
    // A hit must give the image dracut wrote, mode included (0600).
    fs_err::set_permissions(&tmp, fs_err::metadata(image)?.permissions())?;
    fs_err::rename(&tmp, entry.with_extension("img"))?;
    fs_err::write(&tmp, serde_json::to_vec(&manifest)?)?;
    fs_err::rename(&tmp, entry.with_extension("manifest"))?;
    Ok(())
}

/// The regular files of a dracut image: an optional uncompressed early cpio (microcode), then the
/// main archive, compressed with whatever the tree's dracut is configured to use.
fn image_members(data: &[u8]) -> Result<Vec<String>> {
    let mut members = Vec::new();
    let mut rest = data;
    while rest.starts_with(b"07070") {
        let (files, end) = super::cpio::regular_files(rest).map_err(anyhow::Error::msg)?;
        members.extend(files);
        rest = &rest[end..];
        while let [0, tail @ ..] = rest {
            rest = tail;
        }
    }
    if rest.is_empty() {
        return Ok(members);
    }
    let tool = match rest {
        [0x1f, 0x8b, ..] => "gzip",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0xfd, b'7', b'z', b'X', b'Z', ..] => "xz",
        [0x02, 0x21, 0x4c, 0x18, ..] => "lz4",
        _ => anyhow::bail!("the initramfs is compressed in a format fedostree cannot read"),
    };
    let unpacked = decompress(tool, rest)?;
    let (files, _) = super::cpio::regular_files(&unpacked).map_err(anyhow::Error::msg)?;
    members.extend(files);
    Ok(members)
}

fn decompress(tool: &str, data: &[u8]) -> Result<Vec<u8>> {
    use fedostree_util::cmd::CommandRunExt;
    std::process::Command::new(tool)
        .arg("-dc")
        .run_with_input(data)
        .context("decompressing the initramfs")
}

/// What dracut is run with and what it can see of the tree, hashed (see the module comment).
fn cache_key(root: &Path, argv: &[&str]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT);
    for a in argv {
        h.update(a.as_bytes());
        h.update([0]);
    }
    let content_dirs = [Path::new("etc"), Path::new("usr/lib/dracut")];
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = fs_err::read_dir(root.join(&dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names.into_iter().rev() {
            let rel = dir.join(&name);
            let meta = fs_err::symlink_metadata(root.join(&rel))?;
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(format!("\0{:o}\0", meta.mode()).as_bytes());
            if meta.file_type().is_symlink() {
                h.update(fs_err::read_link(root.join(&rel))?.as_os_str().as_encoded_bytes());
            } else if meta.is_dir() {
                stack.push(rel);
            } else if content_dirs.iter().any(|d| rel.starts_with(d)) || rel == Path::new("usr/lib/os-release") {
                h.update(file_sha256(&root.join(&rel))?.unwrap_or_default());
            }
            h.update([0]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The sha256 of a regular file; None when the path is missing or not a regular file.
fn file_sha256(path: &Path) -> Result<Option<String>> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(None),
    }
    let (sum, _) = crate::repo::hex_digest_reader("sha256", fs_err::File::open(path)?, None)?;
    Ok(Some(sum))
}

/// Pruning goes by last use: a hit refreshes the manifest's mtime.
fn mark_used(manifest: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(manifest) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Keep the [`KEEP`] most recently used entries.
fn prune(cache_dir: &Path) {
    let Ok(dir) = std::fs::read_dir(cache_dir) else { return };
    let mut manifests: Vec<(std::time::SystemTime, PathBuf)> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    manifests.sort();
    let excess = manifests.len().saturating_sub(KEEP);
    for (_, m) in manifests.into_iter().take(excess) {
        let _ = std::fs::remove_file(&m);
        let _ = std::fs::remove_file(m.with_extension("img"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tree with a library the "image" holds, configuration in /etc, and an unrelated binary.
    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in [
            ("usr/lib/libc.so.6", "libc"),
            ("etc/dracut.conf.d/x.conf", "compress=gzip"),
            ("usr/bin/docker", "docker 1"),
            ("usr/lib/dracut/modules.d/99base/init.sh", "init"),
        ] {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", d.path().join("lib")).unwrap();
        d
    }

    /// What dracut writes: an uncompressed early cpio, then a gzip'd main one. The main archive
    /// names the library through the /lib symlink, as images of merged-/usr trees do.
    fn image(dir: &Path) -> PathBuf {
        let mut early = super::super::cpio::Archive::default();
        early.file("kernel/x86/microcode/GenuineIntel.bin", 0o644, b"ucode".to_vec());
        let mut main = super::super::cpio::Archive::default();
        main.dir("lib");
        main.file("lib/libc.so.6", 0o755, b"libc".to_vec());
        main.file("init", 0o755, b"generated".to_vec());
        let mut data = early.to_newc();
        data.extend([0u8; 512]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&main.to_newc()).unwrap();
        data.extend(gz.finish().unwrap());
        let p = dir.join("initramfs.img");
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn members_of_early_and_compressed_archives_are_read() {
        let d = tempfile::tempdir().unwrap();
        let data = std::fs::read(image(d.path())).unwrap();
        assert_eq!(
            image_members(&data).unwrap(),
            ["kernel/x86/microcode/GenuineIntel.bin", "init", "lib/libc.so.6"]
        );
        assert!(image_members(b"not an image").is_err());
    }

    #[test]
    fn an_image_is_reused_only_while_everything_dracut_saw_is_unchanged() {
        let t = tree();
        let scratch = tempfile::tempdir().unwrap();
        let cache = scratch.path().join("cache");
        let argv = ["dracut", "--no-hostonly"];
        let key = cache_key(t.path(), &argv).unwrap();
        let made = image(scratch.path());
        std::fs::set_permissions(&made, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        store(t.path(), &made, &cache.join(&key)).unwrap();
        let hit = lookup(t.path(), &cache.join(&key)).unwrap().expect("same tree hits");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(hit).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "the image keeps the mode dracut gave it");

        // Content dracut never reads and no image member: same key, still a hit.
        std::fs::write(t.path().join("usr/bin/docker"), "docker 2").unwrap();
        assert_eq!(cache_key(t.path(), &argv).unwrap(), key);
        assert!(lookup(t.path(), &cache.join(&key)).unwrap().is_some());

        // A file the image holds (reached through /lib → usr/lib): the manifest refuses the entry.
        std::fs::write(t.path().join("usr/lib/libc.so.6"), "libc 2").unwrap();
        assert_eq!(cache_key(t.path(), &argv).unwrap(), key);
        assert!(lookup(t.path(), &cache.join(&key)).unwrap().is_none());
        std::fs::write(t.path().join("usr/lib/libc.so.6"), "libc").unwrap();

        // Configuration, dracut's own modules, a new file anywhere, a mode, other arguments: new key.
        for what in ["etc", "dracut module", "new file", "mode"] {
            let t = tree();
            let r = t.path();
            match what {
                "etc" => std::fs::write(r.join("etc/dracut.conf.d/x.conf"), "compress=zstd").unwrap(),
                "dracut module" => std::fs::write(r.join("usr/lib/dracut/modules.d/99base/init.sh"), "v2").unwrap(),
                "new file" => std::fs::write(r.join("usr/bin/lvm"), "").unwrap(),
                _ => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(r.join("usr/bin/docker"), std::fs::Permissions::from_mode(0o700)).unwrap()
                }
            }
            assert_ne!(cache_key(r, &argv).unwrap(), key, "{what}");
        }
        assert_ne!(
            cache_key(t.path(), &["dracut", "--omit", "crypt"]).unwrap(),
            key,
            "arguments"
        );
    }
}
