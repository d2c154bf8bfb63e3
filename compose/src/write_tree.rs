//! Writing a composed tree into the build repo as an OSTree tree, checksumming here.
//!
//! libostree's `write_directory_to_mtree` streams every file into a temporary object while it hashes
//! it, and its SHA-256 (GLib/GnuTLS on Debian) runs at ~100 MB/s on this kind of machine: 7–9 s for
//! the 640 MB docker-io tree, every compose, although all but a few objects already exist. Here the
//! content checksums are computed with the `sha2` crate (SHA-NI when the CPU has it) on every core,
//! and only objects the repo lacks are written, each with its expected checksum so that libostree
//! verifies ours. The result is the same tree, object for object (tested against libostree).
//!
//! The checksum of a content object is SHA-256 over the file header (the GVariant
//! `(uuuusa(ayay))`: uid, gid, mode, rdev, symlink target, xattrs; integers big-endian), preceded by
//! its size as a big-endian u32 and four zero bytes, then the file's bytes (none for a symlink).
//! Extended attributes come from the caller ([`XattrSource`]), not from the filesystem the tree was
//! assembled on (whose own attributes, like the host's, are not the tree's): the `security.capability`
//! of files packages give capabilities (see [`crate::filecaps`]) and, for `selinux: true`, the
//! `security.selinux` label of every file, directory and symlink (see [`crate::selinux`]).

use anyhow::{bail, Context, Result};
use ostree::gio;
use ostree::gio::prelude::OutputStreamExtManual;
use ostree::glib::{self, prelude::*};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the walk found beneath one directory.
struct Dir {
    meta: std::fs::Metadata,
    xattrs: XattrList,
    entries: BTreeMap<OsString, Entry>,
}

enum Entry {
    Dir(Dir),
    /// Index into the list of regular files hashed in parallel.
    File(usize),
    Symlink {
        meta: std::fs::Metadata,
        target: PathBuf,
        xattrs: XattrList,
    },
}

struct RegularFile {
    path: PathBuf,
    meta: std::fs::Metadata,
    /// The `a(ayay)` list, sorted by name.
    xattrs: XattrList,
}

/// libostree's `a(ayay)`: each name NUL-terminated, sorted by name, but the SELinux label last.
type XattrList = Vec<(Vec<u8>, Vec<u8>)>;

/// Extended attributes by path relative to the root, as committed: `(name, value)` pairs.
pub type Xattrs = HashMap<PathBuf, Vec<(String, Vec<u8>)>>;

/// Content checksums by `(dev, ino)`.
pub type InodeChecksums = HashMap<(u64, u64), String>;

/// Where the committed extended attributes come from.
#[derive(Clone, Copy)]
pub struct XattrSource<'a> {
    /// By path: the packages' file capabilities.
    pub by_path: &'a Xattrs,
    /// The tree's SELinux policy, labelling every entry (`selinux: true`).
    pub labels: Option<&'a crate::selinux::Labeller>,
}

impl XattrSource<'_> {
    /// The attributes of `rel` (mode `mode`), in libostree's form.
    fn of(&self, rel: &Path, mode: u32) -> Result<XattrList> {
        let mut list: XattrList = self
            .by_path
            .get(rel)
            .into_iter()
            .flatten()
            .map(|(name, value)| (nul_terminated(name), value.clone()))
            .collect();
        list.sort();
        // After the others, as libostree's commit modifier appends it: the same objects.
        if let Some(label) = self.labels.map(|l| l.label(rel, mode)).transpose()?.flatten() {
            let name = nul_terminated(crate::selinux::XATTR);
            list.retain(|(n, _)| *n != name);
            list.push((name, label));
        }
        Ok(list)
    }
}

fn nul_terminated(name: &str) -> Vec<u8> {
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    n
}

/// The tree written by [`write_tree`].
pub struct WrittenTree {
    /// The root of the tree as libostree's `write_mtree` gives it.
    pub root: gio::File,
    /// Content checksums of the files whose inode has other links, by `(dev, ino)`, as if they had no
    /// extended attributes: the unpacked package cache checks with them that the compose left its
    /// files alone.
    pub shared_inodes: InodeChecksums,
}

/// Write `root` into `repo` (inside the caller's transaction).
pub fn write_tree(repo: &ostree::Repo, root: &Path, xattrs: XattrSource) -> Result<WrittenTree> {
    let mut files = Vec::new();
    let top = walk(root, Path::new(""), xattrs, &mut files)?;
    let sums = checksum_files(&files)?;
    let mtree = ostree::MutableTree::new();
    add_dir(repo, &mtree, &top, &files, &sums)?;
    let shared_inodes = files
        .iter()
        .zip(&sums)
        .filter(|(f, _)| f.meta.nlink() > 1)
        .map(|(f, sum)| {
            (
                (f.meta.dev(), f.meta.ino()),
                sum.plain.clone().unwrap_or_else(|| sum.full.clone()),
            )
        })
        .collect();
    Ok(WrittenTree {
        root: repo.write_mtree(&mtree, gio::Cancellable::NONE)?,
        shared_inodes,
    })
}

fn walk(path: &Path, rel: &Path, xattrs: XattrSource, files: &mut Vec<RegularFile>) -> Result<Dir> {
    let meta = fs_err::symlink_metadata(path)?;
    let dir_xattrs = xattrs.of(rel, meta.mode())?;
    let mut entries = BTreeMap::new();
    for e in fs_err::read_dir(path)? {
        let e = e?;
        let child = e.path();
        let child_rel = rel.join(e.file_name());
        let m = fs_err::symlink_metadata(&child)?;
        let ft = m.file_type();
        let entry = if ft.is_dir() {
            Entry::Dir(walk(&child, &child_rel, xattrs, files)?)
        } else if ft.is_file() {
            files.push(RegularFile {
                path: child,
                xattrs: xattrs.of(&child_rel, m.mode())?,
                meta: m,
            });
            Entry::File(files.len() - 1)
        } else if ft.is_symlink() {
            Entry::Symlink {
                target: fs_err::read_link(&child)?,
                xattrs: xattrs.of(&child_rel, m.mode())?,
                meta: m,
            }
        } else {
            bail!(
                "{}: unsupported file type (only files, directories and symlinks can be committed)",
                child.display()
            );
        };
        entries.insert(e.file_name(), entry);
    }
    Ok(Dir {
        meta,
        xattrs: dir_xattrs,
        entries,
    })
}

/// The file header a content checksum starts with.
fn file_header(uid: u32, gid: u32, mode: u32, symlink_target: &str, xattrs: &[(Vec<u8>, Vec<u8>)]) -> glib::Variant {
    (
        uid.to_be(),
        gid.to_be(),
        mode.to_be(),
        0u32,
        symlink_target,
        xattrs.to_vec(),
    )
        .to_variant()
}

fn header_hasher(uid: u32, gid: u32, mode: u32, symlink_target: &str, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Sha256 {
    let header = file_header(uid, gid, mode, symlink_target, xattrs);
    let mut h = Sha256::new();
    h.update((header.size() as u32).to_be_bytes());
    h.update([0u8; 4]);
    h.update(header.data());
    h
}

fn symlink_checksum(meta: &std::fs::Metadata, target: &str, xattrs: &[(Vec<u8>, Vec<u8>)]) -> String {
    hex::encode(header_hasher(meta.uid(), meta.gid(), meta.mode(), target, xattrs).finalize())
}

/// A regular file's content checksum, and for a file that shares its inode and has extended
/// attributes, also the one it would have without them (what the unpacked package cache stamped).
struct FileSums {
    full: String,
    plain: Option<String>,
}

fn file_checksum(f: &RegularFile, buf: &mut [u8]) -> Result<FileSums> {
    let m = &f.meta;
    let src = fs_err::File::open(&f.path)?;
    let mut full = header_hasher(m.uid(), m.gid(), m.mode(), "", &f.xattrs);
    let mut plain = (m.nlink() > 1 && !f.xattrs.is_empty()).then(|| header_hasher(m.uid(), m.gid(), m.mode(), "", &[]));
    let mut hashers: Vec<&mut Sha256> = std::iter::once(&mut full).chain(plain.as_mut()).collect();
    hash_body(src, m.len(), buf, &mut hashers).with_context(|| f.path.display().to_string())?;
    Ok(FileSums {
        full: hex::encode(full.finalize()),
        plain: plain.map(|h| hex::encode(h.finalize())),
    })
}

/// The content checksum of a regular file with this owner, mode and size, and no extended
/// attributes, whose bytes `src` reads.
pub fn content_checksum(src: impl Read, uid: u32, gid: u32, mode: u32, size: u64, buf: &mut [u8]) -> Result<String> {
    let mut h = header_hasher(uid, gid, mode, "", &[]);
    hash_body(src, size, buf, &mut [&mut h])?;
    Ok(hex::encode(h.finalize()))
}

/// Feed the `size` bytes `src` reads to every hasher.
fn hash_body(mut src: impl Read, size: u64, buf: &mut [u8], hashers: &mut [&mut Sha256]) -> Result<()> {
    let mut total = 0u64;
    loop {
        let n = src.read(buf)?;
        if n == 0 {
            break;
        }
        for h in hashers.iter_mut() {
            h.update(&buf[..n]);
        }
        total += n as u64;
    }
    if total != size {
        bail!("changed while it was being checksummed");
    }
    Ok(())
}

/// Every regular file's content checksum, on all cores.
fn checksum_files(files: &[RegularFile]) -> Result<Vec<FileSums>> {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    let results: Vec<Result<Vec<(usize, FileSums)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        done.push((i, file_checksum(f, &mut buf)?));
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("checksum worker panicked"))
            .collect()
    });
    let mut sums: Vec<Option<FileSums>> = (0..files.len()).map(|_| None).collect();
    for r in results {
        for (i, sum) in r? {
            sums[i] = Some(sum);
        }
    }
    Ok(sums.into_iter().map(|s| s.expect("every file checksummed")).collect())
}

fn name_str<'a>(name: &'a OsString, parent: &Path) -> Result<&'a str> {
    name.to_str().with_context(|| {
        format!(
            "{}: a file name that is not UTF-8 cannot be committed",
            parent.join(name).display()
        )
    })
}

fn add_dir(
    repo: &ostree::Repo,
    mtree: &ostree::MutableTree,
    dir: &Dir,
    files: &[RegularFile],
    sums: &[FileSums],
) -> Result<()> {
    let cancellable = gio::Cancellable::NONE;
    mtree.set_metadata_checksum(&dirmeta_checksum(repo, &dir.meta, &dir.xattrs)?);
    for (name, entry) in &dir.entries {
        match entry {
            Entry::Dir(sub) => {
                let child = mtree.ensure_dir(name_str(name, Path::new(""))?)?;
                add_dir(repo, &child, sub, files, sums)?;
            }
            Entry::File(i) => {
                let (f, sum) = (&files[*i], &sums[*i].full);
                let name = name_str(name, &f.path)?;
                if !repo.has_object(ostree::ObjectType::File, sum, cancellable)? {
                    write_file(repo, f, sum).with_context(|| format!("committing {}", f.path.display()))?;
                }
                mtree.replace_file(name, sum)?;
            }
            Entry::Symlink { meta, target, xattrs } => {
                let name = name_str(name, Path::new(""))?;
                let target = target
                    .to_str()
                    .with_context(|| format!("symlink {name}: target is not UTF-8"))?;
                let sum = symlink_checksum(meta, target, xattrs);
                if !repo.has_object(ostree::ObjectType::File, &sum, cancellable)? {
                    let xattrs = (!xattrs.is_empty()).then(|| xattrs.to_variant());
                    repo.write_symlink(Some(&sum), meta.uid(), meta.gid(), xattrs.as_ref(), target, cancellable)?;
                }
                mtree.replace_file(name, &sum)?;
            }
        }
    }
    Ok(())
}

/// A new content object, written with the checksum computed above: libostree recomputes it and
/// refuses a mismatch.
fn write_file(repo: &ostree::Repo, f: &RegularFile, sum: &str) -> Result<()> {
    let m = &f.meta;
    let xattrs = (!f.xattrs.is_empty()).then(|| f.xattrs.to_variant());
    let writer = repo.write_regfile(Some(sum), m.uid(), m.gid(), m.mode(), m.len(), xattrs.as_ref())?;
    let mut src = fs_err::File::open(&f.path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n], gio::Cancellable::NONE)?;
    }
    writer.finish(gio::Cancellable::NONE)?;
    Ok(())
}

fn dirmeta_checksum(repo: &ostree::Repo, meta: &std::fs::Metadata, xattrs: &XattrList) -> Result<String> {
    let info = gio::FileInfo::new();
    info.set_attribute_uint32("unix::uid", meta.uid());
    info.set_attribute_uint32("unix::gid", meta.gid());
    info.set_attribute_uint32("unix::mode", meta.mode());
    let xattrs = (!xattrs.is_empty()).then(|| xattrs.to_variant());
    let dirmeta = ostree::create_directory_metadata(&info, xattrs.as_ref());
    Ok(repo
        .write_metadata(ostree::ObjectType::DirMeta, None, &dirmeta, gio::Cancellable::NONE)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostree::gio::prelude::FileExt;
    use std::os::unix::fs::PermissionsExt;

    /// The attribute the test sets on disk for libostree to read, and hands `write_tree` in its map.
    const TEST_XATTR: (&str, &[u8]) = ("user.fedostree-test", b"\x01\x00value");

    fn commit_with(repo: &ostree::Repo, root: &Path, ours: bool) -> String {
        commit_labelled(repo, root, ours, None)
    }

    /// Our tree, or libostree's from the same directory (labelled through its commit modifier).
    fn commit_labelled(
        repo: &ostree::Repo,
        root: &Path,
        ours: bool,
        labels: Option<&crate::selinux::Labeller>,
    ) -> String {
        repo.prepare_transaction(gio::Cancellable::NONE).unwrap();
        let file = if ours {
            let xattrs = Xattrs::from([(
                PathBuf::from("usr/bin/tool"),
                vec![(TEST_XATTR.0.to_owned(), TEST_XATTR.1.to_vec())],
            )]);
            write_tree(
                repo,
                root,
                XattrSource {
                    by_path: &xattrs,
                    labels,
                },
            )
            .unwrap()
            .root
        } else {
            let mtree = ostree::MutableTree::new();
            let modifier = ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::NONE, None);
            modifier.set_sepolicy(labels.map(|l| l.policy()));
            repo.write_directory_to_mtree(
                &gio::File::for_path(root),
                &mtree,
                Some(&modifier),
                gio::Cancellable::NONE,
            )
            .unwrap();
            repo.write_mtree(&mtree, gio::Cancellable::NONE).unwrap()
        };
        repo.commit_transaction(gio::Cancellable::NONE).unwrap();
        let file = file.downcast::<ostree::RepoFile>().unwrap();
        file.tree_get_contents_checksum().unwrap().to_string()
    }

    #[test]
    fn the_tree_is_the_one_libostree_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs_err::create_dir_all(root.join("usr/bin")).unwrap();
        fs_err::create_dir_all(root.join("empty")).unwrap();
        fs_err::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs_err::set_permissions(root.join("usr/bin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        set_xattr(&root.join("usr/bin/tool"));
        fs_err::write(root.join("usr/empty-file"), b"").unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs_err::write(root.join("usr/big"), &big).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("../nowhere", root.join("usr/dangling")).unwrap();
        fs_err::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
        fs_err::hard_link(root.join("usr/big"), root.join("usr/big-link")).unwrap();
        let owned = root.join("usr/owned");
        fs_err::write(&owned, b"owned").unwrap();
        let _ = std::os::unix::fs::chown(&owned, Some(12), Some(34)); // as root; otherwise ours anyway

        let mode = if crate::commit::running_as_root() {
            ostree::RepoMode::Bare
        } else {
            ostree::RepoMode::BareUser
        };
        let theirs_repo = ostree::Repo::new_for_path(tmp.path().join("theirs"));
        theirs_repo.create(mode, gio::Cancellable::NONE).unwrap();
        let ours_repo = ostree::Repo::new_for_path(tmp.path().join("ours"));
        ours_repo.create(mode, gio::Cancellable::NONE).unwrap();
        let theirs = commit_with(&theirs_repo, &root, false);
        // Written from scratch (every object new), then again (every object present).
        assert_eq!(commit_with(&ours_repo, &root, true), theirs);
        assert_eq!(commit_with(&ours_repo, &root, true), theirs);
        fs_err::write(root.join("usr/bin/tool"), b"changed").unwrap();
        set_xattr(&root.join("usr/bin/tool"));
        assert_ne!(commit_with(&ours_repo, &root, true), theirs);
        assert_eq!(
            commit_with(&ours_repo, &root, true),
            commit_with(&theirs_repo, &root, false)
        );
    }

    #[test]
    fn labelled_trees_are_the_ones_libostree_labels() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        crate::selinux::tests::write_test_policy(&root, "usr/etc");
        fs_err::create_dir_all(root.join("usr/bin")).unwrap();
        fs_err::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        set_xattr(&root.join("usr/bin/tool"));
        fs_err::write(root.join("usr/etc/shadow"), b"").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        let repo = ostree::Repo::new_for_path(tmp.path().join("repo"));
        repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE).unwrap();
        // Label version 0 is libostree's labelling, object for object: files, directories, symlinks.
        let v0 = crate::selinux::Labeller::open(&root, 0).unwrap();
        let ours = commit_labelled(&repo, &root, true, Some(&v0));
        assert_eq!(ours, commit_labelled(&repo, &root, false, Some(&v0)));
        assert_ne!(ours, commit_with(&repo, &root, true), "labels are part of the tree");
        drop(v0);
        let v1 = crate::selinux::Labeller::open(&root, 1).unwrap();
        let label_of = |rev: &str, path: &str| -> String {
            let (root_file, _) = repo.read_commit(rev, gio::Cancellable::NONE).unwrap();
            let f = root_file
                .resolve_relative_path(path)
                .downcast::<ostree::RepoFile>()
                .unwrap();
            f.ensure_resolved().unwrap();
            let (_, _, xattrs) = repo.load_file(&f.checksum(), gio::Cancellable::NONE).unwrap();
            let list: Vec<(Vec<u8>, Vec<u8>)> = xattrs.get().unwrap();
            let (_, v) = list.into_iter().find(|(n, _)| n == b"security.selinux\0").unwrap();
            String::from_utf8(v).unwrap()
        };
        repo.prepare_transaction(gio::Cancellable::NONE).unwrap();
        let written = write_tree(
            &repo,
            &root,
            XattrSource {
                by_path: &Xattrs::new(),
                labels: Some(&v1),
            },
        )
        .unwrap();
        let dir = written.root.downcast::<ostree::RepoFile>().unwrap();
        let commit = repo
            .write_commit(None, None, None, None, &dir, gio::Cancellable::NONE)
            .unwrap();
        repo.commit_transaction(gio::Cancellable::NONE).unwrap();
        assert_eq!(label_of(&commit, "usr/etc/shadow"), "system_u:object_r:shadow_t:s0\0");
        assert_eq!(label_of(&commit, "usr/bin/tool"), "system_u:object_r:tool_exec_t:s0\0");
        assert_eq!(label_of(&commit, "bin"), "system_u:object_r:default_t:s0\0");
    }

    /// On disk, for libostree's commit to read (every other file has none: tmp is not labelled).
    fn set_xattr(path: &Path) {
        let st = std::process::Command::new("setfattr")
            .args(["-n", TEST_XATTR.0, "-v"])
            .arg(format!("0x{}", hex::encode(TEST_XATTR.1)))
            .arg(path)
            .status()
            .expect("setfattr (package attr) runs");
        assert!(st.success(), "setfattr on {}", path.display());
    }

    #[test]
    fn special_files_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs_err::create_dir_all(root.join("run")).unwrap();
        let fifo = root.join("run/fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let repo = ostree::Repo::new_for_path(tmp.path().join("repo"));
        repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE).unwrap();
        repo.prepare_transaction(gio::Cancellable::NONE).unwrap();
        let none = Xattrs::new();
        let e = write_tree(
            &repo,
            &root,
            XattrSource {
                by_path: &none,
                labels: None,
            },
        )
        .err()
        .unwrap();
        assert!(format!("{e:#}").contains("run/fifo"), "{e:#}");
        repo.abort_transaction(gio::Cancellable::NONE).unwrap();
    }
}
