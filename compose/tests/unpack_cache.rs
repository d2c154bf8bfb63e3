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
    let in_cache = std::fs::metadata(again.files.join("usr/share/tool/data")).unwrap();
    assert_eq!(in_tree.ino(), in_cache.ino(), "merged as a hardlink");
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/tool-alias")).unwrap().to_str(),
        Some("tool")
    );

    // Ownership goes to a copy: the cache's file stays root's, the tree's is tty's, setgid kept.
    apply_owners(&root, std::slice::from_ref(&again.unpacked.package)).unwrap();
    let owned = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    let cached = std::fs::metadata(again.files.join("usr/bin/tool")).unwrap();
    assert_eq!((owned.gid(), owned.mode() & 0o7777), (5, 0o2755));
    assert_eq!(cached.gid(), 0);
    assert_ne!(owned.ino(), cached.ino());
    assert!(cache.after_commit(&[again], &HashMap::new()).unwrap().is_empty());
    assert!(cache.get(&rpm, "sha256:aaaa", OPTS, "").unwrap().hit);
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
        std::fs::read_to_string(again.files.join("usr/share/tool/data")).unwrap(),
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
    let mtime = std::fs::metadata(&data).unwrap().modified().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .write_all(b"PACKAGED")
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let m = std::fs::metadata(&data).unwrap();
    let shared = HashMap::from([((m.dev(), m.ino()), "a checksum of other content".to_string())]);
    let evicted = cache.after_commit(&[again], &shared).unwrap();
    assert_eq!(evicted, ["tool-1-1.noarch"]);
    let third = cache.get(&rpm, "sha256:bbbb", OPTS, "").unwrap();
    assert!(!third.hit);
    assert_eq!(
        std::fs::read_to_string(third.files.join("usr/share/tool/data")).unwrap(),
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
