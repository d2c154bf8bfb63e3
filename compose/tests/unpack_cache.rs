//! The unpacked package cache: packages unpacked once are merged into later trees by hardlinks, and an
//! entry whose files a compose changed is never used again.

mod common;
use common::Pkg;
use fedostree_compose::import::{apply_owners, import_rpm, merge, ImportOptions};
use fedostree_compose::unpack_cache::UnpackCache;
use rpm::{FileMode, FileOptions};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const OPTS: ImportOptions = ImportOptions {
    documentation: true,
    verify: None,
    readonly_executables: false,
};

fn pkg(dir: &Path) -> std::path::PathBuf {
    Pkg::new("tool", "1", "noarch")
        .dir("/usr/share/tool")
        .file("/usr/share/tool/data", "packaged", 0o644)
        .file_with(
            FileOptions::new("/usr/bin/tool")
                .mode(FileMode::regular(0o2755))
                .user("root")
                .group("tty"),
            "#!/bin/sh\n",
        )
        .symlink("/usr/bin/tool-alias", "tool")
        .write(dir)
}

/// The content name of the entry whose path ends with `suffix`.
fn content_of(p: &fedostree_compose::unpack_cache::CachedPackage, suffix: &str) -> String {
    p.unpacked
        .entries
        .iter()
        .find_map(|e| match e {
            fedostree_compose::import::Entry::File { path, content, .. } if path.ends_with(suffix) => {
                Some(content.clone())
            }
            _ => None,
        })
        .unwrap()
}

/// Rewrite `path` in place the way stamps cannot see: same size, mtime put back.
fn rewrite_unseen(path: &Path) {
    use std::io::Write;
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(b"PACKAGED").unwrap();
    f.set_modified(mtime).unwrap();
}

fn fresh_root(d: &Path, name: &str) -> std::path::PathBuf {
    let root = d.join(name);
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(root.join("usr/lib/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("usr/lib/group"), "root:x:0:\ntty:x:5:\n").unwrap();
    root
}

#[test]
fn a_package_is_unpacked_once_and_merged_as_hardlinks() {
    let d = tempfile::tempdir().unwrap();
    let rpm = pkg(d.path());
    let cache = UnpackCache::open(&d.path().join("cache")).unwrap();
    let first = cache.get(&rpm, "sha256:aaaa", OPTS, "").unwrap();
    assert!(!first.hit);
    let again = cache.get(&rpm, "sha256:aaaa", OPTS, "").unwrap();
    assert!(again.hit, "the second compose reuses the unpack");
    // Another key set (a repository now asking for signatures) never reuses an unchecked unpack.
    assert!(!cache.get(&rpm, "sha256:aaaa", OPTS, "keys-1").unwrap().hit);

    let root = fresh_root(d.path(), "root");
    merge(&root, &again.files, &again.unpacked).unwrap();
    let in_tree = std::fs::metadata(root.join("usr/share/tool/data")).unwrap();
    let in_cache = std::fs::metadata(again.files.join(content_of(&again, "data"))).unwrap();
    assert_eq!(in_tree.ino(), in_cache.ino(), "merged as a hardlink");
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/tool-alias")).unwrap().to_str(),
        Some("tool")
    );

    // Ownership goes to a copy: the cache's file stays root's, the tree's is tty's, setgid kept.
    apply_owners(&root, std::slice::from_ref(&again.unpacked.package)).unwrap();
    let owned = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    let cached = std::fs::metadata(again.files.join(content_of(&again, "bin/tool"))).unwrap();
    assert_eq!((owned.gid(), owned.mode() & 0o7777), (5, 0o2755));
    assert_eq!(cached.gid(), 0);
    assert_ne!(owned.ino(), cached.ino());
    // The commit's own checksums of the shared files: nothing to evict.
    let repo = ostree::Repo::new_for_path(d.path().join("repo"));
    repo.create(ostree::RepoMode::BareUser, ostree::gio::Cancellable::NONE)
        .unwrap();
    repo.prepare_transaction(ostree::gio::Cancellable::NONE).unwrap();
    // Every file with an attribute, as SELinux labels every file: the commit's checksums include
    // it, the cache compares the ones without (what it stamped).
    let mut xattrs = fedostree_compose::write_tree::Xattrs::new();
    for rel in ["usr/share/tool/data", "usr/bin/tool"].map(std::path::PathBuf::from) {
        xattrs.insert(rel, vec![("user.fedostree-test".into(), b"x".to_vec())]);
    }
    let source = fedostree_compose::write_tree::XattrSource {
        by_path: &xattrs,
        labels: None,
    };
    let written = fedostree_compose::write_tree::write_tree(&repo, &root, source).unwrap();
    repo.commit_transaction(ostree::gio::Cancellable::NONE).unwrap();
    assert!(!written.shared_inodes.is_empty());
    cache.mark_in_use(std::slice::from_ref(&again)).unwrap();
    assert!(cache.after_commit(&[again], &written.shared_inodes).unwrap().is_empty());
    assert!(cache.get(&rpm, "sha256:aaaa", OPTS, "").unwrap().hit);
}

#[test]
fn a_compose_that_stopped_before_its_check_has_its_entries_checked() {
    let d = tempfile::tempdir().unwrap();
    let rpm = pkg(d.path());
    let cache_dir = d.path().join("cache");
    let cache = UnpackCache::open(&cache_dir).unwrap();
    let p = cache.get(&rpm, "sha256:cccc", OPTS, "").unwrap();
    cache.mark_in_use(std::slice::from_ref(&p)).unwrap();
    let root = fresh_root(d.path(), "root");
    merge(&root, &p.files, &p.unpacked).unwrap();
    // Rewritten in place, same size, mtime put back; then the compose dies (no after_commit).
    let data = root.join("usr/share/tool/data");
    rewrite_unseen(&data);
    let cache = UnpackCache::open(&cache_dir).unwrap();
    let again = cache.get(&rpm, "sha256:cccc", OPTS, "").unwrap();
    assert!(!again.hit);
    assert_eq!(
        std::fs::read_to_string(again.files.join(content_of(&again, "data"))).unwrap(),
        "packaged"
    );
}

#[test]
fn files_beneath_a_symlink_from_an_earlier_package_land_where_it_points() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let a = Pkg::new("a", "1", "noarch").dir("/usr/lib/real").write(d.path());
    let b = Pkg::new("b", "1", "noarch")
        .symlink("/usr/lib/alias", "real")
        .file("/usr/lib/alias/file", "through the link", 0o644)
        .write(d.path());
    import_rpm(&a, &root, OPTS).unwrap();
    import_rpm(&b, &root, OPTS).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/real/file")).unwrap(),
        "through the link"
    );
}

#[test]
fn an_entry_changed_through_the_tree_is_unpacked_again() {
    let d = tempfile::tempdir().unwrap();
    let rpm = pkg(d.path());
    let cache = UnpackCache::open(&d.path().join("cache")).unwrap();
    let p = cache.get(&rpm, "sha256:bbbb", OPTS, "").unwrap();
    let root = fresh_root(d.path(), "root");
    merge(&root, &p.files, &p.unpacked).unwrap();
    // A scriptlet appending to a packaged file writes into the cache's inode.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("usr/share/tool/data"))
        .unwrap()
        .write_all(b" and changed")
        .unwrap();
    let again = cache.get(&rpm, "sha256:bbbb", OPTS, "").unwrap();
    assert!(!again.hit, "stamps no longer hold");
    assert_eq!(
        std::fs::read_to_string(again.files.join(content_of(&again, "data"))).unwrap(),
        "packaged"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/tool/data")).unwrap(),
        "packaged and changed",
        "the tree keeps what the compose made"
    );

    // A change the stamps cannot see (same size and mtime, restored): the checksums taken at commit
    // time catch it and evict the entry.
    let root2 = fresh_root(d.path(), "root2");
    merge(&root2, &again.files, &again.unpacked).unwrap();
    let data = root2.join("usr/share/tool/data");
    rewrite_unseen(&data);
    let m = std::fs::metadata(&data).unwrap();
    let shared = HashMap::from([((m.dev(), m.ino()), "a checksum of other content".to_string())]);
    let evicted = cache.after_commit(&[again], &shared).unwrap();
    assert_eq!(evicted, ["tool-1-1.noarch"]);
    let third = cache.get(&rpm, "sha256:bbbb", OPTS, "").unwrap();
    assert!(!third.hit);
    assert_eq!(
        std::fs::read_to_string(third.files.join(content_of(&third, "data"))).unwrap(),
        "packaged"
    );
}

#[test]
fn a_symlink_from_an_earlier_package_cannot_lead_a_merge_outside() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("jail/root");
    std::fs::create_dir_all(&root).unwrap();
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let a = Pkg::new("a", "1", "noarch")
        .symlink("/usr/lib/evil", "../../../outside")
        .write(d.path());
    let b = Pkg::new("b", "1", "noarch")
        .file("/usr/lib/evil/pwned", "x", 0o644)
        .write(d.path());
    import_rpm(&a, &root, OPTS).unwrap();
    let err = format!("{:#}", import_rpm(&b, &root, OPTS).unwrap_err());
    assert!(
        err.contains("b-1-1.noarch") && err.contains("/usr/lib/evil/pwned"),
        "{err}"
    );
    assert!(err.contains("cannot write beneath the tree root"), "{err}");
    assert!(!outside.join("pwned").exists());
}
