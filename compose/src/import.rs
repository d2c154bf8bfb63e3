//! Importing RPM payloads into a tree root, in two steps: [`unpack_rpm`] writes one package's payload
//! into a directory of its own and lists its entries in payload order; [`merge`] replays that list
//! into the tree, regular files as hardlinks to the unpacked ones (so an unpacked package can be kept
//! and merged again by the next compose: see `unpack_cache.rs`). Payload paths are untrusted:
//! every path is resolved with cap-std beneath the directory written to, so `..`, absolute names and
//! symlinked parents (this package's or an earlier one's) can never escape it. Keeps modes,
//! ownership, symlinks, hardlinks and empty directories.

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, Permissions};
use cap_std::fs::{OpenOptionsExt, PermissionsExt};
use fedostree_util::error::io_is_infra;
use fedostree_util::{bail_input, InputError};
use rpm::{FileFlags, FileType, IndexTag};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// What one imported package contributed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImportedPackage {
    pub name: String,
    pub nevra: String,
    /// One path the package owns (a file or symlink), absolute in the tree; None for metapackages.
    pub sample_path: Option<String>,
    /// Files not owned by root, to chown once the tree's passwd/group exist.
    pub owners: Vec<(PathBuf, String, String)>,
    /// `%pre`, `%post` and `%posttrans`, run by [`crate::scriptlets`] once every payload is in.
    pub scriptlets: Vec<crate::scriptlets::Scriptlet>,
    /// Regular files with capabilities (`%caps`): the `security.capability` value the commit gives
    /// them (see `filecaps.rs`), by path as imported.
    #[serde(default)]
    pub caps: Vec<(PathBuf, Vec<u8>)>,
}

/// One payload entry as [`merge`] replays it; paths are relative and already checked.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    Dir {
        path: PathBuf,
        mode: u32,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// `content` names the file in the unpacked directory (members of a hardlink set share one).
    File {
        path: PathBuf,
        content: String,
        /// rpm's file colour (1: ELF32, 2: ELF64, 0: neither): multilib packages may both ship a
        /// path in different colours (see `file_conflicts.rs`).
        #[serde(default, skip_serializing_if = "is_uncoloured")]
        color: u32,
    },
}

fn is_uncoloured(color: &u32) -> bool {
    *color == 0
}

impl Entry {
    pub fn path(&self) -> &Path {
        match self {
            Entry::Dir { path, .. } | Entry::Symlink { path, .. } | Entry::File { path, .. } => path,
        }
    }
}

/// A package unpacked into its own directory: the content of its regular files, each under a plain
/// name of its own (no payload path is resolved there: every path is resolved once, in the tree).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Unpacked {
    pub package: ImportedPackage,
    pub entries: Vec<Entry>,
    /// The RPM and package, for error messages.
    pub what: String,
}

/// Options that change what is imported.
#[derive(Clone, Copy)]
pub struct ImportOptions<'a> {
    /// False drops files flagged %doc (treefile `documentation: false`).
    pub documentation: bool,
    /// The package's repository sets `gpgcheck`: its signature must verify before anything is written.
    pub verify: Option<&'a crate::gpg::RepoKeys>,
    /// Treefile `readonly-executables`: executables lose their write bits (rpm-ostree's importer).
    pub readonly_executables: bool,
}

/// The mode a regular file is written with.
fn file_mode(perms: u32, opts: ImportOptions) -> u32 {
    if opts.readonly_executables && perms & 0o111 != 0 {
        perms & !0o222
    } else {
        perms
    }
}

/// rpm-ostree's translation of payload paths: `/opt` content lives in `/usr/lib/opt`, which the
/// tree links `/opt/NAME` to at boot (see `postprocess`).
fn translate_for_ostree(rel: PathBuf) -> PathBuf {
    match rel.strip_prefix("opt") {
        Ok(rest) if rest.as_os_str().is_empty() => PathBuf::from("usr/lib/opt"),
        Ok(rest) => Path::new("usr/lib/opt").join(rest),
        Err(_) => rel,
    }
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

/// One member of a hardlink set: its path, its content if this member carries it, its mode.
type HardlinkMember = (PathBuf, Option<Vec<u8>>, u16);

/// The first path of a package that can stand in the package list as one field (see `linesafe`).
fn note_sample(sample: &mut Option<String>, rel: &Path) {
    if sample.is_none() {
        let p = format!("/{}", rel.display());
        if crate::linesafe::is_plain_field(&p) {
            *sample = Some(p);
        }
    }
}

/// Open an RPM, check its digests (and its signature when the repository asks), and name it.
fn open_verified(rpm_path: &Path, opts: ImportOptions) -> Result<(rpm::Package, String, String)> {
    let pkg = rpm::Package::open(rpm_path).map_err(|e| match e {
        rpm::Error::Io(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            anyhow::Error::new(io).context(format!("reading {}", rpm_path.display()))
        }
        e => InputError::new(format!("{}: not a valid RPM: {e}", rpm_path.display())),
    })?;
    match opts.verify {
        // The signature check verifies the header and payload digests too: hash the payload once.
        Some(keys) => {
            let what = format!(
                "{} ({})",
                pkg.metadata.get_nevra().map(|n| n.to_string()).unwrap_or_default(),
                rpm_path.display()
            );
            keys.verify_rpm(&pkg, &what)?;
        }
        None => pkg
            .verify_digests()
            .map_err(|e| InputError::new(format!("{}: RPM digest check failed: {e}", rpm_path.display())))?,
    }
    let md = &pkg.metadata;
    let header = |e: rpm::Error| InputError::new(format!("{}: invalid RPM header: {e}", rpm_path.display()));
    let name = md.get_name().map_err(header)?.to_string();
    let nevra = crate::solve::nevra(
        &name,
        md.get_epoch().unwrap_or(0),
        md.get_version().map_err(header)?,
        md.get_release().map_err(header)?,
        md.get_arch().map_err(header)?,
    );
    Ok((pkg, name, nevra))
}

/// Import `rpm_path` into `root`: unpacked beside the root, merged, and the unpacked copy removed.
/// Errors name the RPM file, the package and the payload path.
pub fn import_rpm(rpm_path: &Path, root: &Path, opts: ImportOptions) -> Result<ImportedPackage> {
    let parent = root.parent().unwrap_or(Path::new("."));
    let private = tempfile::Builder::new().prefix(".unpack-").tempdir_in(parent)?;
    let unpacked = unpack_rpm(rpm_path, private.path(), opts)?;
    merge(root, private.path(), &unpacked)?;
    Ok(unpacked.package)
}

/// Write `rpm_path`'s payload into `dest` (an empty directory) and list what `merge` replays.
pub fn unpack_rpm(rpm_path: &Path, dest: &Path, opts: ImportOptions) -> Result<Unpacked> {
    let (pkg, name, nevra) = open_verified(rpm_path, opts)?;
    let md = &pkg.metadata;
    let what = format!("{}: {nevra}", rpm_path.display());
    let at = |path: &str| format!("{what}: {path}");

    let header_error = |e: rpm::Error| InputError::new(format!("{}: {e}", rpm_path.display()));
    // The header's file list, parsed once for the hardlink sets and the colours.
    let listed = md.get_file_entries().map_err(header_error)?;
    let identities = hardlink_identities(md, &listed);
    let colors = file_colors(md, &listed);

    let dest_dir =
        Dir::open_ambient_dir(dest, ambient_authority()).with_context(|| format!("opening {}", dest.display()))?;
    let mut payload = PayloadWriter {
        dest_dir,
        opts,
        identities,
        colors,
        owners: Vec::new(),
        caps: Vec::new(),
        sample_path: None,
        entries: Vec::new(),
        links: BTreeMap::new(),
        contents: 0,
    };

    let files = pkg
        .files()
        .map_err(|e| InputError::new(format!("{}: reading payload: {e}", rpm_path.display())))?;
    for f in files {
        let f = f.map_err(|e| {
            InputError::new(format!(
                "{}: {nevra}: corrupt or truncated payload: {e}",
                rpm_path.display()
            ))
        })?;
        payload.unpack_entry(&f, &at)?;
    }
    let mut entries = payload.entries;
    for (content, members) in write_hardlink_sets(&payload.dest_dir, payload.links, payload.contents, &at)? {
        entries.extend(members.into_iter().map(|path| Entry::File {
            color: payload.colors.get(&path).copied().unwrap_or(0),
            path,
            content: content.clone(),
        }));
    }
    let scriptlets = crate::scriptlets::read(md);
    Ok(Unpacked {
        package: ImportedPackage {
            name,
            nevra,
            sample_path: payload.sample_path,
            owners: payload.owners,
            scriptlets,
            caps: payload.caps,
        },
        entries,
        what,
    })
}

/// What [`unpack_rpm`] gathers while it writes one package's payload, entry by entry.
struct PayloadWriter<'a> {
    /// The directory the regular files' content is written to.
    dest_dir: Dir,
    opts: ImportOptions<'a>,
    identities: Identities,
    /// Non-zero file colours by path as imported.
    colors: HashMap<PathBuf, u32>,
    owners: Vec<(PathBuf, String, String)>,
    caps: Vec<(PathBuf, Vec<u8>)>,
    sample_path: Option<String>,
    entries: Vec<Entry>,
    /// Hardlink members collected per identity: (path, content if this member carries it, mode).
    links: BTreeMap<(u32, u32), Vec<HardlinkMember>>,
    /// How many content names are taken.
    contents: usize,
}

impl PayloadWriter<'_> {
    /// Check and list one payload entry (ghosts and unwanted %doc skipped), noting a non-root owner.
    fn unpack_entry(&mut self, f: &rpm::RpmFile<'_>, at: &dyn Fn(&str) -> String) -> Result<()> {
        let meta = &f.metadata;
        let raw = meta.path().to_string_lossy().into_owned();
        if meta.flags().contains(FileFlags::GHOST)
            || (!self.opts.documentation && meta.flags().contains(FileFlags::DOC))
        {
            return Ok(());
        }
        let rel = safe_relative(&raw)
            .map(translate_for_ostree)
            .ok_or_else(|| InputError::new(format!("{}: refusing payload path: it escapes the tree root", at(&raw))))?;
        let perms = meta.permissions() as u32;
        let file_perms = file_mode(perms, self.opts);
        let entry = match meta.file_type() {
            FileType::Dir => Some(Entry::Dir {
                path: rel.clone(),
                mode: perms,
            }),
            FileType::SymbolicLink => {
                let target = meta
                    .linkto()
                    .ok_or_else(|| InputError::new(format!("{}: symlink without a target", at(&raw))))?;
                note_sample(&mut self.sample_path, &rel);
                Some(Entry::Symlink {
                    path: rel.clone(),
                    target: PathBuf::from(target),
                })
            }
            FileType::Regular => self.regular_file(f, &rel, file_perms, &|| at(&raw))?,
            other => bail_input!(
                "{}: unsupported file type {other:?} (devices, fifos and sockets are not allowed)",
                at(&raw)
            ),
        };
        self.entries.extend(entry);
        if meta.user() != "root" || meta.group() != "root" {
            self.owners
                .push((rel, meta.user().to_string(), meta.group().to_string()));
        }
        Ok(())
    }

    /// A regular file: caps noted, written under the next content name, or held back (None) in its hardlink set.
    fn regular_file(
        &mut self,
        f: &rpm::RpmFile<'_>,
        rel: &Path,
        file_perms: u32,
        here: &dyn Fn() -> String,
    ) -> Result<Option<Entry>> {
        let meta = &f.metadata;
        let escape = |e| write_error(e, &here());
        note_sample(&mut self.sample_path, rel);
        if let Some(text) = meta.caps().filter(|t| !t.trim().is_empty()) {
            let value = crate::filecaps::xattr_for(text)
                .map_err(|e| InputError::new(format!("{}: invalid file capabilities `{text}`: {e}", here())))?;
            self.caps.push((rel.to_path_buf(), value));
        }
        let (identity, group_size) = &self.identities;
        let id = identity.get(&meta.path()).copied();
        if let Some(id) = id.filter(|id| group_size.get(id).copied().unwrap_or(0) > 1) {
            // Written once the whole set is known (after the payload, by `unpack_rpm`).
            let carries = f.content().filter(|c| c.len() == meta.size()).map(<[u8]>::to_vec);
            self.links
                .entry(id)
                .or_default()
                .push((rel.to_path_buf(), carries, file_perms as u16));
            Ok(None)
        } else {
            let content = self.contents.to_string();
            self.contents += 1;
            write_file(
                &self.dest_dir,
                Path::new(&content),
                f.content().unwrap_or_default(),
                file_perms,
            )
            .map_err(escape)?;
            Ok(Some(Entry::File {
                path: rel.to_path_buf(),
                content,
                color: self.colors.get(rel).copied().unwrap_or(0),
            }))
        }
    }
}

/// Replay `unpacked` (written into `from` by [`unpack_rpm`]) into the tree at `root`: regular files
/// become hardlinks to the unpacked ones (copies across filesystems).
pub fn merge(root: &Path, from: &Path, unpacked: &Unpacked) -> Result<()> {
    let root_dir = Dir::open_ambient_dir(root, ambient_authority())
        .with_context(|| format!("opening tree root {}", root.display()))?;
    let from_dir =
        Dir::open_ambient_dir(from, ambient_authority()).with_context(|| format!("opening {}", from.display()))?;
    for e in &unpacked.entries {
        let at = format!("{}: /{}", unpacked.what, e.path().display());
        apply_entry(&root_dir, &from_dir, e, &at)?;
    }
    Ok(())
}

/// One entry into `dir`, resolved beneath it; file content comes from `from`. `at` names the entry.
fn apply_entry(dir: &Dir, from: &Dir, e: &Entry, at: &str) -> Result<()> {
    let escape = |e: std::io::Error| write_error(e, at);
    match e {
        Entry::Dir { path, mode } => {
            match dir.symlink_metadata(path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail_input!("{at}: a directory in this package is a file or symlink in another"),
                Err(_) => dir.create_dir_all(path).map_err(escape)?,
            }
            dir.set_permissions(path, Permissions::from_mode(*mode))
                .map_err(escape)?;
        }
        Entry::Symlink { path, target } => {
            let parent = parent_dir(dir, path).map_err(escape)?;
            let (_, base) = split_parent(path);
            remove_existing(&parent, base).map_err(escape)?;
            // The link's own location was resolved safely; its target is data, not followed here.
            parent.symlink_contents(target, base).map_err(escape)?;
        }
        Entry::File { path, content, .. } => {
            let parent = parent_dir(dir, path).map_err(escape)?;
            let (_, base) = split_parent(path);
            remove_existing(&parent, base).map_err(escape)?;
            match from.hard_link(content, &parent, base) {
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    copy_file(from, Path::new(content), &parent, base).map_err(escape)?
                }
                r => r.map_err(escape)?,
            }
        }
    }
    Ok(())
}

/// A copy keeping the mode (for an unpacked directory on another filesystem than the tree).
fn copy_file(from: &Dir, path: &Path, to: &Dir, base: &std::ffi::OsStr) -> std::io::Result<()> {
    let mut src = from.open(path)?;
    let mode = src.metadata()?.permissions().mode();
    let mut dst = to.open_with(base, OpenOptions::new().write(true).create_new(true).mode(0o600))?;
    std::io::copy(&mut src, &mut dst)?;
    dst.set_permissions(Permissions::from_mode(mode))?;
    Ok(())
}

/// A write beneath the root failed: a full or failing disk is the machine's fault; anything else (an
/// escape, a file where a directory must be) is the package's.
fn write_error(e: std::io::Error, at: &str) -> anyhow::Error {
    let msg = if at.is_empty() {
        "cannot write beneath the tree root".to_string()
    } else {
        format!("{at}: cannot write beneath the tree root")
    };
    if io_is_infra(&e) {
        anyhow::Error::new(e).context(msg)
    } else {
        InputError::new(format!("{msg}: {e}"))
    }
}

/// Regular files' hardlink identities, `(device, inode)` in header order, and each identity's size.
type Identities = (HashMap<PathBuf, (u32, u32)>, HashMap<(u32, u32), usize>);

fn hardlink_identities(md: &rpm::PackageMetadata, entries: &[rpm::FileEntry]) -> Identities {
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
    (identity, group_size)
}

/// Regular files' non-zero colours (`RPMTAG_FILECOLORS`), by path as imported.
fn file_colors(md: &rpm::PackageMetadata, entries: &[rpm::FileEntry]) -> HashMap<PathBuf, u32> {
    let Ok(colors) = md.header.get_entry_data_as_u32_array(IndexTag::RPMTAG_FILECOLORS) else {
        return HashMap::new();
    };
    entries
        .iter()
        .zip(colors)
        .filter(|(_, c)| *c != 0)
        .filter_map(|(e, c)| {
            let raw = e.path().to_string_lossy().into_owned();
            Some((safe_relative(&raw).map(translate_for_ostree)?, c))
        })
        .collect()
}

/// Write each hardlink set's content once, under the next free content name; returns each set's
/// content name and member paths.
fn write_hardlink_sets(
    dir: &Dir,
    links: BTreeMap<(u32, u32), Vec<HardlinkMember>>,
    mut next: usize,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut sets = Vec::new();
    for (_, members) in links {
        let Some(content) = members.iter().find_map(|(_, c, _)| c.clone()) else {
            bail_input!("{}: hardlink set has no content", at(&members[0].0.to_string_lossy()));
        };
        let (first, _, mode) = &members[0];
        let name = next.to_string();
        next += 1;
        write_file(dir, Path::new(&name), &content, *mode as u32)
            .map_err(|e| write_error(e, &at(&first.to_string_lossy())))?;
        sets.push((name, members.into_iter().map(|(p, _, _)| p).collect()));
    }
    Ok(sets)
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
    // The first file naming an account wins.
    let ids = |files: &[&str]| -> HashMap<String, u32> {
        let mut m = HashMap::new();
        for f in files {
            let text = fs_err::read_to_string(root.join(f)).unwrap_or_default();
            for (n, id) in crate::accounts::ids(&text) {
                m.entry(n).or_insert(id);
            }
        }
        m
    };
    let users = ids(&["usr/lib/passwd", "etc/passwd"]);
    let groups = ids(&["usr/lib/group", "etc/group"]);
    let root_canon = root.canonicalize()?;
    // A file about to be chowned gets an inode of its own first: the tree's file may be the unpacked
    // package cache's. Members of a hardlink set are linked to the one copy.
    let mut copies: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for p in pkgs {
        for (rel, user, group) in &p.owners {
            let uid = *users
                .get(user)
                .ok_or_else(|| InputError::new(format!("{}: /{}: unknown user `{user}`", p.nevra, rel.display())))?;
            let gid = *groups
                .get(group)
                .ok_or_else(|| InputError::new(format!("{}: /{}: unknown group `{group}`", p.nevra, rel.display())))?;
            let full = root.join(rel);
            let parent = full.parent().unwrap_or(root).canonicalize()?;
            if !parent.starts_with(&root_canon) {
                bail_input!("{}: /{}: parent resolves outside the tree", p.nevra, rel.display());
            }
            let meta = fs_err::symlink_metadata(&full)?;
            if meta.is_file() {
                detach(&full, &meta, &mut copies).with_context(|| format!("{}: /{}", p.nevra, rel.display()))?;
            }
            std::os::unix::fs::lchown(&full, Some(uid), Some(gid))
                .with_context(|| format!("{}: chown /{}", p.nevra, rel.display()))?;
            // chown clears setuid/setgid: put the packaged mode back.
            if !meta.file_type().is_symlink() {
                fs_err::set_permissions(&full, meta.permissions())?;
            }
        }
    }
    Ok(())
}

/// Give `path` an inode not shared outside the tree: a copy of the first member of its set, to which
/// later members are linked. A file with no other link stays as it is.
fn detach(path: &Path, meta: &std::fs::Metadata, copies: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    let id = (meta.dev(), meta.ino());
    if let Some(copy) = copies.get(&id) {
        fs_err::remove_file(path)?;
        fs_err::hard_link(copy, path)?;
        return Ok(());
    }
    if meta.nlink() == 1 {
        return Ok(());
    }
    let mut src = fs_err::File::open(path)?;
    crate::safepath::replace_file_with(path, |f| std::io::copy(&mut src, f).map(|_| ()))?;
    copies.insert(id, path.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_content_moves_under_usr_lib() {
        assert_eq!(translate_for_ostree("opt".into()), PathBuf::from("usr/lib/opt"));
        assert_eq!(
            translate_for_ostree("opt/app/bin/x".into()),
            PathBuf::from("usr/lib/opt/app/bin/x")
        );
        assert_eq!(translate_for_ostree("optional/x".into()), PathBuf::from("optional/x"));
        assert_eq!(translate_for_ostree("usr/opt".into()), PathBuf::from("usr/opt"));
    }

    #[test]
    fn safe_relative_refuses_escapes() {
        assert_eq!(safe_relative("/usr/bin/x"), Some(PathBuf::from("usr/bin/x")));
        assert_eq!(safe_relative("./usr/bin/x"), Some(PathBuf::from("usr/bin/x")));
        for bad in ["/../etc/passwd", "/usr/../../x", "//etc/passwd", "/", ""] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }
}
