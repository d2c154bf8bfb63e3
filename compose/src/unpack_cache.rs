//! Packages unpacked once, merged into every later compose's tree by hardlinks (the idea of
//! rpm-ostree's pkgcache, kept as a directory per package).
//!
//! Unpacking the 187 packages of server/docker-io (decompressing, writing 640 MB in 30 000 new
//! files) took 3–10 s of every compose, and a compose after one changed package needs exactly one
//! of them unpacked again. An entry is `<key>/files/` (the payload, root-owned, modes applied) and
//! `<key>/unpacked.json` (the entries [`import::merge`] replays, and a stamp of every regular file).
//! The key covers the RPM's sha256, whether documentation is kept, and the keys its signature was
//! checked against, so a stricter repository setting never reuses an unchecked unpack.
//!
//! The tree's files are the cache's own inodes, so anything that writes one in place would change
//! the cache. fedostree's own steps replace files instead of writing into them (ownership is applied
//! to a copy: [`import::apply_owners`]); scriptlets run in the sandbox could still do it, so an entry
//! is trusted only while every file still matches its stamp (inode, size, mtime, mode, owner: checked
//! before each use), and after each commit the content checksums of the files that are still shared
//! are compared with the stamps' (computed when unpacking; files the compose removed from the tree are
//! hashed again). A mismatch evicts the entry: the compose that changed the file committed what it
//! made, and the next one unpacks the package afresh. A compose that stops before that check leaves
//! `in-use.json`, and the next one hashes those entries again before using them.
//! An entry's files have plain names (`0`, `1`, …): payload paths are resolved only in the tree.

use crate::import::{self, Entry, ImportOptions, Unpacked};
use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped whenever the layout of an entry or what an unpack produces changes.
const FORMAT: &str = "fedostree-unpacked-5";
/// The entries a compose is merging from, until its commit has been checked.
const IN_USE: &str = "in-use.json";
/// Entries not used for this long are removed after a compose.
const KEEP_UNUSED: std::time::Duration = std::time::Duration::from_secs(3 * 24 * 3600);

pub struct UnpackCache {
    dir: PathBuf,
}

/// What a regular file of an entry looked like when it was unpacked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    mode: u32,
    uid: u32,
    gid: u32,
    /// The OSTree content checksum (see [`crate::write_tree`]).
    checksum: String,
}

impl Stamp {
    /// `m` as a stamp with `checksum` (stamps compare equal when the file is as it was).
    fn of(m: &cap_std::fs::Metadata, checksum: String) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            checksum,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    unpacked: Unpacked,
    stamps: BTreeMap<PathBuf, Stamp>,
}

/// One package as this compose uses it.
pub struct CachedPackage {
    pub unpacked: Unpacked,
    /// The directory to merge from.
    pub files: PathBuf,
    pub hit: bool,
    entry: PathBuf,
    stamps: BTreeMap<PathBuf, Stamp>,
}

impl UnpackCache {
    /// Open (creating) the cache at `dir`; unpacks a killed compose left half-done go now.
    pub fn open(dir: &Path) -> Result<UnpackCache> {
        fs_err::create_dir_all(dir)?;
        for e in fs_err::read_dir(dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                fs_err::remove_dir_all(e.path())?;
            }
        }
        // A compose that stopped between merging and checking its commit: check what it used.
        if let Ok(text) = fs_err::read(dir.join(IN_USE)) {
            for entry in serde_json::from_slice::<Vec<PathBuf>>(&text).unwrap_or_default() {
                let intact = fs_err::read(entry.join("unpacked.json"))
                    .ok()
                    .and_then(|t| serde_json::from_slice::<Manifest>(&t).ok())
                    .is_some_and(|m| contents_hold(&entry.join("files"), &m.stamps, |_| true));
                if !intact && entry.starts_with(dir) && entry.exists() {
                    let msg = format!(
                        "unpacked package cache: {} was changed by an unfinished compose; removing it",
                        entry.display()
                    );
                    fedostree_util::events::notice(fedostree_util::events::Stage::Compose, msg);
                    fs_err::remove_dir_all(&entry)?;
                }
            }
            fs_err::remove_file(dir.join(IN_USE))?;
        }
        Ok(UnpackCache { dir: dir.to_path_buf() })
    }

    /// `rpm` (whose sha256 is `rpm_sha256`) unpacked, from the cache when a trusted entry exists.
    /// `keys_id` names the keys the signature must verify against ("" when the repository asks for
    /// no signature check).
    pub fn get(&self, rpm: &Path, rpm_sha256: &str, opts: ImportOptions, keys_id: &str) -> Result<CachedPackage> {
        let mut h = Sha256::new();
        for part in [
            FORMAT,
            rpm_sha256,
            if opts.documentation { "docs" } else { "nodocs" },
            keys_id,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        if opts.readonly_executables {
            h.update(b"readonly-executables\0");
        }
        let entry = self.dir.join(hex::encode(h.finalize()));
        if let Some(found) = load(&entry)? {
            return Ok(found);
        }
        if entry.exists() {
            fs_err::remove_dir_all(&entry)?;
        }
        let tmp = self
            .dir
            .join(format!(".tmp-{}", entry.file_name().unwrap().to_string_lossy()));
        if tmp.exists() {
            fs_err::remove_dir_all(&tmp)?;
        }
        fs_err::create_dir_all(tmp.join("files"))?;
        let made = (|| -> Result<Manifest> {
            let unpacked = import::unpack_rpm(rpm, &tmp.join("files"), opts)?;
            let stamps = stamp_files(&tmp.join("files"), &unpacked.entries)?;
            Ok(Manifest { unpacked, stamps })
        })();
        let manifest = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = fs_err::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        fs_err::write(tmp.join("unpacked.json"), serde_json::to_vec(&manifest)?)?;
        fs_err::rename(&tmp, &entry)?;
        // Stamps carry the inode numbers: the rename kept them.
        Ok(CachedPackage {
            files: entry.join("files"),
            hit: false,
            unpacked: manifest.unpacked,
            stamps: manifest.stamps,
            entry,
        })
    }

    /// After the commit: evict every used entry one of whose files the compose changed (by the
    /// checksums `write_tree` computed for inodes the tree shares), mark the others used, and
    /// remove entries unused for a while. Returns the packages evicted.
    pub fn after_commit(
        &self,
        used: &[CachedPackage],
        shared_inodes: &crate::write_tree::InodeChecksums,
    ) -> Result<Vec<String>> {
        let mut evicted = Vec::new();
        for p in used {
            let changed = p
                .stamps
                .values()
                .any(|s| shared_inodes.get(&(s.dev, s.ino)).is_some_and(|sum| *sum != s.checksum))
                || !stamps_hold(&p.files, &p.stamps)?
                || !contents_hold(&p.files, &p.stamps, |s| !shared_inodes.contains_key(&(s.dev, s.ino)));
            if changed {
                let msg = format!(
                    "unpacked package cache: the compose changed files of {} in place; it will be unpacked again",
                    p.unpacked.package.nevra
                );
                fedostree_util::events::notice(fedostree_util::events::Stage::Compose, msg);
                fs_err::remove_dir_all(&p.entry)?;
                evicted.push(p.unpacked.package.nevra.clone());
            } else if let Ok(f) = std::fs::File::options()
                .append(true)
                .open(p.entry.join("unpacked.json"))
            {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
        }
        let _ = fs_err::remove_file(self.dir.join(IN_USE));
        self.prune();
        Ok(evicted)
    }

    /// Record the entries a compose is about to merge: if it never reaches [`Self::after_commit`]
    /// (an error, a kill), the next [`Self::open`] checks their content before anything uses them.
    pub fn mark_in_use(&self, used: &[CachedPackage]) -> Result<()> {
        let names: Vec<&Path> = used.iter().map(|p| p.entry.as_path()).collect();
        fedostree_util::atomic::write(&self.dir.join(IN_USE), serde_json::to_vec(&names)?)
    }

    fn prune(&self) {
        let Ok(dir) = fs_err::read_dir(&self.dir) else { return };
        for e in dir.flatten() {
            let used = e.path().join("unpacked.json");
            let age = fs_err::metadata(&used)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a > KEEP_UNUSED) {
                let _ = fs_err::remove_dir_all(e.path());
            }
        }
    }
}

/// A stored entry, if it is complete and every file still matches its stamp.
fn load(entry: &Path) -> Result<Option<CachedPackage>> {
    let Ok(text) = fs_err::read(entry.join("unpacked.json")) else {
        return Ok(None);
    };
    let Ok(m) = serde_json::from_slice::<Manifest>(&text) else {
        return Ok(None);
    };
    let files = entry.join("files");
    if !stamps_hold(&files, &m.stamps)? {
        let msg = format!(
            "unpacked package cache: files of {} changed since they were unpacked; unpacking again",
            m.unpacked.package.nevra
        );
        fedostree_util::events::notice(fedostree_util::events::Stage::Compose, msg);
        return Ok(None);
    }
    Ok(Some(CachedPackage {
        files,
        hit: true,
        unpacked: m.unpacked,
        stamps: m.stamps,
        entry: entry.to_path_buf(),
    }))
}

fn stamps_hold(files: &Path, stamps: &BTreeMap<PathBuf, Stamp>) -> Result<bool> {
    let Ok(dir) = Dir::open_ambient_dir(files, ambient_authority()) else {
        return Ok(false);
    };
    for (path, s) in stamps {
        let Ok(m) = dir.metadata(path) else {
            return Ok(false);
        };
        if Stamp::of(&m, s.checksum.clone()) != *s {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Stamp every content file the entries name (once per file: hardlink set members share one).
fn stamp_files(files: &Path, entries: &[Entry]) -> Result<BTreeMap<PathBuf, Stamp>> {
    let dir = Dir::open_ambient_dir(files, ambient_authority())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut stamps = BTreeMap::new();
    for e in entries {
        let Entry::File { content, .. } = e else { continue };
        let name = PathBuf::from(content);
        if stamps.contains_key(&name) {
            continue;
        }
        let at = || format!("{}: {content}", files.display());
        let m = dir.metadata(&name).with_context(at)?;
        let checksum = checksum_of(&dir, &name, &m, &mut buf).with_context(at)?;
        stamps.insert(name, Stamp::of(&m, checksum));
    }
    Ok(stamps)
}

fn checksum_of(dir: &Dir, name: &Path, m: &cap_std::fs::Metadata, buf: &mut [u8]) -> Result<String> {
    crate::write_tree::content_checksum(dir.open(name)?, m.uid(), m.gid(), m.mode(), m.size(), buf)
}

/// The checksums of the stamps `only` selects, computed again from the files (for what the commit
/// could not see: files a compose removed from the tree, or a compose that never committed).
fn contents_hold(files: &Path, stamps: &BTreeMap<PathBuf, Stamp>, only: impl Fn(&Stamp) -> bool) -> bool {
    let Ok(dir) = Dir::open_ambient_dir(files, ambient_authority()) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 20];
    stamps.iter().filter(|(_, s)| only(s)).all(|(name, s)| {
        dir.metadata(name)
            .ok()
            .and_then(|m| checksum_of(&dir, name, &m, &mut buf).ok())
            .is_some_and(|sum| sum == s.checksum)
    })
}
