//! Importing RPM payloads into a tree root. Payload paths are untrusted: every path is resolved with
//! cap-std beneath the root, so `..`, absolute names and symlinked parents can never escape it.
//! Keeps modes, ownership, symlinks, hardlinks and empty directories.

use anyhow::{anyhow, bail, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, Permissions};
use cap_std::fs::{OpenOptionsExt, PermissionsExt};
use rpm::{FileFlags, FileType, IndexTag};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// What one imported package contributed.
#[derive(Debug, Clone)]
pub struct ImportedPackage {
    pub name: String,
    pub nevra: String,
    /// One path the package owns (a file or symlink), absolute in the tree; None for metapackages.
    pub sample_path: Option<String>,
    /// Files not owned by root, to chown once the tree's passwd/group exist.
    pub owners: Vec<(PathBuf, String, String)>,
}

/// Options that change what is imported.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// False drops files flagged %doc (treefile `documentation: false`).
    pub documentation: bool,
}

/// A payload path checked to stay beneath the root: relative, only normal components.
fn safe_relative(raw: &str) -> Option<PathBuf> {
    let rel = raw.strip_prefix('/').unwrap_or(raw);
    let rel = rel.strip_prefix("./").unwrap_or(rel);
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(p.to_path_buf())
}

fn split_parent(rel: &Path) -> (&Path, &std::ffi::OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().expect("normal path has a file name"),
    )
}

/// Open (creating as needed) the parent directory of `rel` beneath `root`.
fn parent_dir(root: &Dir, rel: &Path) -> std::io::Result<Dir> {
    let (parent, _) = split_parent(rel);
    if parent.as_os_str().is_empty() {
        return root.try_clone();
    }
    root.create_dir_all(parent)?;
    root.open_dir(parent)
}

fn remove_existing(dir: &Dir, name: &std::ffi::OsStr) -> std::io::Result<()> {
    match dir.symlink_metadata(name) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => dir.remove_file(name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Import `rpm_path` into `root`. Errors name the RPM file, the package and the payload path.
pub fn import_rpm(rpm_path: &Path, root: &Path, opts: ImportOptions) -> Result<ImportedPackage> {
    let pkg = rpm::Package::open(rpm_path).map_err(|e| anyhow!("{}: not a valid RPM: {e}", rpm_path.display()))?;
    pkg.verify_digests()
        .map_err(|e| anyhow!("{}: RPM digest check failed: {e}", rpm_path.display()))?;
    let md = &pkg.metadata;
    let header = |e: rpm::Error| anyhow!("{}: invalid RPM header: {e}", rpm_path.display());
    let name = md.get_name().map_err(header)?.to_string();
    let nevra = crate::solve::nevra(
        &name,
        md.get_epoch().unwrap_or(0),
        md.get_version().map_err(header)?,
        md.get_release().map_err(header)?,
        md.get_arch().map_err(header)?,
    );
    let at = |path: &str| format!("{}: {nevra}: {path}", rpm_path.display());

    // Hardlink sets are identified by (device, inode) in header order.
    let entries = md
        .get_file_entries()
        .map_err(|e| anyhow!("{}: {e}", rpm_path.display()))?;
    let devices = md
        .header
        .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEDEVICES)
        .unwrap_or_default();
    let inodes = md
        .header
        .get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEINODES)
        .unwrap_or_default();
    let mut identity: HashMap<PathBuf, (u32, u32)> = HashMap::new();
    let mut group_size: HashMap<(u32, u32), usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.file_type() == FileType::Regular {
            if let (Some(d), Some(n)) = (devices.get(i), inodes.get(i)) {
                identity.insert(e.path(), (*d, *n));
                *group_size.entry((*d, *n)).or_default() += 1;
            }
        }
    }

    let root_dir = Dir::open_ambient_dir(root, ambient_authority())
        .with_context(|| format!("opening tree root {}", root.display()))?;
    let mut owners = Vec::new();
    let mut sample_path = None;
    // Hardlink members collected per identity: (path, content if this member carries it, mode).
    let mut links: BTreeMap<(u32, u32), Vec<(PathBuf, Option<Vec<u8>>, u16)>> = BTreeMap::new();

    let files = pkg
        .files()
        .map_err(|e| anyhow!("{}: reading payload: {e}", rpm_path.display()))?;
    for f in files {
        let f = f.map_err(|e| anyhow!("{}: {nevra}: corrupt or truncated payload: {e}", rpm_path.display()))?;
        let meta = &f.metadata;
        let raw = meta.path().to_string_lossy().into_owned();
        if meta.flags().contains(FileFlags::GHOST) || (!opts.documentation && meta.flags().contains(FileFlags::DOC)) {
            continue;
        }
        let rel = safe_relative(&raw)
            .ok_or_else(|| anyhow!("{}: refusing payload path: it escapes the tree root", at(&raw)))?;
        let perms = meta.permissions() as u32;
        let escape = |e: std::io::Error| anyhow!("{}: cannot write beneath the tree root: {e}", at(&raw));
        match meta.file_type() {
            FileType::Dir => {
                match root_dir.symlink_metadata(&rel) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => bail!(
                        "{}: a directory in this package is a file or symlink in another",
                        at(&raw)
                    ),
                    Err(_) => root_dir.create_dir_all(&rel).map_err(escape)?,
                }
                root_dir
                    .set_permissions(&rel, Permissions::from_mode(perms))
                    .map_err(escape)?;
            }
            FileType::SymbolicLink => {
                let target = meta
                    .linkto()
                    .ok_or_else(|| anyhow!("{}: symlink without a target", at(&raw)))?;
                let dir = parent_dir(&root_dir, &rel).map_err(escape)?;
                let (_, base) = split_parent(&rel);
                remove_existing(&dir, base).map_err(escape)?;
                // The link's own location was resolved safely; its target is data, not followed here.
                dir.symlink_contents(target, base).map_err(escape)?;
                sample_path.get_or_insert_with(|| format!("/{}", rel.display()));
            }
            FileType::Regular => {
                let id = identity.get(&meta.path()).copied();
                if let Some(id) = id.filter(|id| group_size.get(id).copied().unwrap_or(0) > 1) {
                    let carries = f.content().filter(|c| c.len() == meta.size()).map(<[u8]>::to_vec);
                    links
                        .entry(id)
                        .or_default()
                        .push((rel.clone(), carries, meta.permissions()));
                } else {
                    write_file(&root_dir, &rel, f.content().unwrap_or_default(), perms).map_err(escape)?;
                }
                sample_path.get_or_insert_with(|| format!("/{}", rel.display()));
            }
            other => bail!(
                "{}: unsupported file type {other:?} (devices, fifos and sockets are not allowed)",
                at(&raw)
            ),
        }
        if meta.user() != "root" || meta.group() != "root" {
            owners.push((rel, meta.user().to_string(), meta.group().to_string()));
        }
    }
    for (_, members) in links {
        let Some(content) = members.iter().find_map(|(_, c, _)| c.clone()) else {
            bail!(
                "{}: {nevra}: hardlink set {} has no content",
                rpm_path.display(),
                members[0].0.display()
            );
        };
        let (first, _, mode) = &members[0];
        let escape = |e: std::io::Error| {
            anyhow!(
                "{}: cannot write beneath the tree root: {e}",
                at(&first.to_string_lossy())
            )
        };
        write_file(&root_dir, first, &content, *mode as u32).map_err(escape)?;
        for (other, _, _) in &members[1..] {
            let dir = parent_dir(&root_dir, other).map_err(escape)?;
            let (_, base) = split_parent(other);
            remove_existing(&dir, base).map_err(escape)?;
            root_dir.hard_link(first, &root_dir, other).map_err(escape)?;
        }
    }
    Ok(ImportedPackage {
        name,
        nevra,
        sample_path,
        owners,
    })
}

fn write_file(root: &Dir, rel: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = parent_dir(root, rel)?;
    let (_, base) = split_parent(rel);
    remove_existing(&dir, base)?;
    let mut f = dir.open_with(base, OpenOptions::new().write(true).create_new(true).mode(0o600))?;
    f.write_all(content)?;
    // Explicitly, so the umask cannot strip bits (setuid, group-write) the package asks for.
    f.set_permissions(Permissions::from_mode(mode))?;
    Ok(())
}

/// Apply non-root ownership once the tree's passwd and group files exist (nss-altfiles' /usr/lib
/// files first, then /etc). Unknown users or groups are an error naming the package file.
pub fn apply_owners(root: &Path, pkgs: &[ImportedPackage]) -> Result<()> {
    if pkgs.iter().all(|p| p.owners.is_empty()) {
        return Ok(());
    }
    let ids = |files: &[&str]| -> HashMap<String, u32> {
        let mut m = HashMap::new();
        for f in files {
            for line in std::fs::read_to_string(root.join(f)).unwrap_or_default().lines() {
                let cols: Vec<&str> = line.split(':').collect();
                if let (Some(n), Some(id)) = (cols.first(), cols.get(2).and_then(|s| s.parse().ok())) {
                    m.entry(n.to_string()).or_insert(id);
                }
            }
        }
        m
    };
    let users = ids(&["usr/lib/passwd", "etc/passwd"]);
    let groups = ids(&["usr/lib/group", "etc/group"]);
    let root_canon = root.canonicalize()?;
    for p in pkgs {
        for (rel, user, group) in &p.owners {
            let uid = *users
                .get(user)
                .ok_or_else(|| anyhow!("{}: /{}: unknown user `{user}`", p.nevra, rel.display()))?;
            let gid = *groups
                .get(group)
                .ok_or_else(|| anyhow!("{}: /{}: unknown group `{group}`", p.nevra, rel.display()))?;
            let full = root.join(rel);
            let parent = full.parent().unwrap_or(root).canonicalize()?;
            if !parent.starts_with(&root_canon) {
                bail!("{}: /{}: parent resolves outside the tree", p.nevra, rel.display());
            }
            let meta = std::fs::symlink_metadata(&full)?;
            std::os::unix::fs::lchown(&full, Some(uid), Some(gid))
                .with_context(|| format!("{}: chown /{}", p.nevra, rel.display()))?;
            // chown clears setuid/setgid: put the packaged mode back.
            if !meta.file_type().is_symlink() {
                std::fs::set_permissions(&full, meta.permissions())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_relative_refuses_escapes() {
        assert_eq!(safe_relative("/usr/bin/x"), Some(PathBuf::from("usr/bin/x")));
        assert_eq!(safe_relative("./usr/bin/x"), Some(PathBuf::from("usr/bin/x")));
        for bad in ["/../etc/passwd", "/usr/../../x", "//etc/passwd", "/", ""] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }
}
