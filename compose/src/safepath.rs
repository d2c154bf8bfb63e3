//! Paths into an assembled tree. The tree's content came from untrusted packages, so after import
//! every host-side read or write into it must not follow a symlink a package planted (a symlinked
//! `/usr/lib/fedostree` must not redirect compose's writes onto the build host).

use anyhow::Result;
use std::path::{Component, Path, PathBuf};

/// `root/rel`, refusing `..`, absolute paths, and any existing component (the last one included)
/// that is a symlink.
pub fn beneath(root: &Path, rel: impl AsRef<Path>) -> Result<PathBuf> {
    check(root, rel.as_ref(), true)
}

/// Like [`beneath`], but the last component may itself be a symlink (to remove or replace it).
pub fn parent_beneath(root: &Path, rel: impl AsRef<Path>) -> Result<PathBuf> {
    check(root, rel.as_ref(), false)
}

fn check(root: &Path, rel: &Path, last_too: bool) -> Result<PathBuf> {
    let comps: Vec<Component> = rel.components().collect();
    if comps.is_empty() || !comps.iter().all(|c| matches!(c, Component::Normal(_))) {
        fedostree_util::bail_input!("/{}: not a plain path inside the tree", rel.display());
    }
    let mut cur = root.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let is_last = i + 1 == comps.len();
        match fs_err::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || last_too) => {
                let target = fs_err::read_link(&cur).unwrap_or_default();
                fedostree_util::bail_input!(
                    "/{} is a symlink (to {}) where compose needs a real directory or file: refusing to follow it",
                    cur.strip_prefix(root).unwrap().display(),
                    target.display()
                );
            }
            Ok(_) => {}
            Err(_) => break, // nothing below can be a planted symlink
        }
    }
    Ok(root.join(rel))
}

/// Where `rel` leads inside the tree, following symlinks the way the tree's own programs would see
/// them with the tree as `/` (absolute targets from the root, `..` never above it). None when a
/// component is missing or the links loop.
pub fn resolve_in_tree(root: &Path, rel: impl AsRef<Path>) -> Option<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = rel.as_ref().components().rev().map(|c| c.as_os_str().into()).collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.to_str() {
            Some("/") | Some(".") => continue,
            Some("..") => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        cur.push(&c);
        let meta = fs_err::symlink_metadata(root.join(&cur)).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = fs_err::read_link(root.join(&cur)).ok()?;
            cur.pop();
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            pending.extend(target.components().rev().map(|c| c.as_os_str().into()));
        }
    }
    Some(root.join(cur))
}

/// Write `path` by replacing it (a new file renamed over the old one) rather than writing into it:
/// the old file may be a hardlink into the unpacked package cache. Keeps the old mode.
pub fn replace_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    replace_file_with(path, |f| std::io::Write::write_all(f, contents.as_ref()))
}

/// [`replace_file`] with the new content written by `write`. The new file gets a fresh random name
/// (created exclusively, so a planted symlink is never followed). A file that did not exist gets 0644,
/// not the 0600 of a temporary file: `/etc/passwd` written first by the accounts seed was unreadable
/// to every user but root (the lifecycle scenario's delta check found it changing mode between composes).
pub fn replace_file_with(path: &Path, write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match fs_err::symlink_metadata(path) {
        Ok(old) if old.is_file() => old.permissions().mode(),
        _ => 0o644,
    };
    fedostree_util::atomic::replace_with(path, mode, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_new_one_is_0644() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let new = d.path().join("passwd");
        replace_file(&new, "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(mode(&new), 0o644);
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&new, "root:x:0:0::/root:/bin/bash\n").unwrap();
        assert_eq!(mode(&new), 0o640);
        assert_eq!(std::fs::read_to_string(&new).unwrap(), "root:x:0:0::/root:/bin/bash\n");
    }

    #[test]
    fn symlinked_components_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("usr/lib/fedostree")).unwrap();
        assert!(beneath(d.path(), "usr/lib/fedostree/pkglist").is_err());
        assert!(beneath(d.path(), "usr/lib/fedostree").is_err());
        assert!(parent_beneath(d.path(), "usr/lib/fedostree").is_ok());
        assert!(beneath(d.path(), "usr/lib/new/file").is_ok());
        assert!(beneath(d.path(), "../x").is_err());
        assert!(beneath(d.path(), "/etc").is_err());
    }

    #[test]
    fn resolving_follows_links_as_seen_from_inside_the_tree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib/x")).unwrap();
        std::fs::write(d.path().join("usr/lib/x/f"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", d.path().join("lib")).unwrap();
        std::os::unix::fs::symlink("/lib/x/f", d.path().join("usr/lib/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", d.path().join("usr/lib/up")).unwrap();
        std::os::unix::fs::symlink("loop", d.path().join("loop")).unwrap();
        let r = |p: &str| resolve_in_tree(d.path(), p);
        assert_eq!(r("lib/x/f"), Some(d.path().join("usr/lib/x/f")));
        assert_eq!(r("lib/abs"), Some(d.path().join("usr/lib/x/f")));
        // `..` stops at the tree's root: the host's /etc/passwd is never reached.
        assert_eq!(r("usr/lib/up"), None);
        assert_eq!(r("loop"), None);
        assert_eq!(r("usr/missing"), None);
    }
}
