//! Payload import: hostile paths are refused and nothing is written outside the tree root.

mod common;
use common::Pkg;
use fedostree_compose::import::{import_rpm, ImportOptions};
use std::os::unix::fs::PermissionsExt;

const OPTS: ImportOptions = ImportOptions {
    documentation: true,
    verify: None,
    readonly_executables: false,
};

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("jail/root");
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    (d, root, outside)
}

fn nothing_outside(d: &std::path::Path) {
    let leaked: Vec<_> = walk(d)
        .into_iter()
        .filter(|p| {
            !p.starts_with(d.join("jail"))
                && p.extension().is_none_or(|e| e != "rpm")
                && p.file_name().unwrap() != "outside"
        })
        .collect();
    assert!(leaked.is_empty(), "written outside the root: {leaked:?}");
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.symlink_metadata().unwrap().is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}

#[test]
fn dotdot_paths_are_refused() {
    let (d, root, _) = setup();
    let rpm = Pkg::new("evil", "1", "noarch")
        .file("/../../outside/dotdot", "x", 0o644)
        .write(d.path());
    let err = import_rpm(&rpm, &root, OPTS).unwrap_err().to_string();
    assert!(err.contains("evil.rpm") || err.contains("evil-1"), "{err}");
    assert!(err.contains("escapes the tree root"), "{err}");
    nothing_outside(d.path());
}

#[test]
fn symlinked_parents_cannot_escape() {
    for target in [
        "/tmp/fedostree-import-escape",
        "../../../../../../../../tmp/fedostree-import-escape",
    ] {
        let (d, root, _) = setup();
        let abs = std::path::Path::new("/tmp/fedostree-import-escape");
        let _ = std::fs::remove_dir_all(abs);
        std::fs::create_dir_all(abs).unwrap();
        let rpm = Pkg::new("evil", "1", "noarch")
            .symlink("/usr/lib/evil", target)
            .file("/usr/lib/evil/pwned", "x", 0o644)
            .write(d.path());
        let err = import_rpm(&rpm, &root, OPTS).unwrap_err().to_string();
        assert!(
            err.contains("/usr/lib/evil/pwned") && err.contains("cannot write beneath the tree root"),
            "{err}"
        );
        assert!(!abs.join("pwned").exists(), "escaped through {target}");
        nothing_outside(d.path());
    }
}

#[test]
fn modes_symlinks_dirs_and_hardlink_free_content_are_kept() {
    let (d, root, _) = setup();
    let rpm = Pkg::new("good", "1", "noarch")
        .dir("/usr/share/empty")
        .file("/usr/bin/suid", "s", 0o4755)
        .file("/usr/share/good/data", "hello", 0o640)
        .symlink("/usr/bin/link", "suid")
        .write(d.path());
    let imported = import_rpm(&rpm, &root, OPTS).unwrap();
    assert_eq!(imported.nevra, "good-1-1.noarch");
    assert!(root.join("usr/share/empty").is_dir());
    assert_eq!(
        std::fs::metadata(root.join("usr/bin/suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::metadata(root.join("usr/share/good/data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/link")).unwrap().to_str(),
        Some("suid")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/good/data")).unwrap(),
        "hello"
    );
}

#[test]
fn truncated_rpm_is_refused_naming_the_file() {
    let (d, root, _) = setup();
    let big: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let rpm = Pkg::new("cut", "1", "noarch")
        .file("/usr/share/cut/big", &big, 0o644)
        .write(d.path());
    let len = std::fs::metadata(&rpm).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&rpm)
        .unwrap()
        .set_len(len - 500)
        .unwrap();
    let err = import_rpm(&rpm, &root, OPTS).unwrap_err().to_string();
    assert!(err.contains(&rpm.display().to_string()), "{err}");
}

#[test]
fn gzip_xz_zstd_payloads_hardlinks_and_ownership() {
    use fedostree_compose::import::apply_owners;
    use rpm::{CompressionWithLevel, FileMode, FileOptions};
    use std::os::unix::fs::MetadataExt;
    for (i, c) in [
        CompressionWithLevel::Gzip(6),
        CompressionWithLevel::Xz(6),
        CompressionWithLevel::Zstd(3),
    ]
    .into_iter()
    .enumerate()
    {
        let (d, root, _) = setup();
        let member = |path: &str| {
            FileOptions::new(path)
                .mode(FileMode::regular(0o2755))
                .user("root")
                .group("tty")
                .hardlink("tool")
        };
        let rpm = Pkg::with_compression(&format!("owned{i}"), "1", "noarch", c)
            .file_with(member("/usr/bin/tool-a"), "same bytes")
            .file_with(member("/usr/bin/tool-b"), "same bytes")
            .write(d.path());
        let imported = import_rpm(&rpm, &root, OPTS).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("usr/lib/group"), "root:x:0:\ntty:x:5:\n").unwrap();
        apply_owners(&root, &[imported]).unwrap();
        let (a, b) = (
            std::fs::metadata(root.join("usr/bin/tool-a")).unwrap(),
            std::fs::metadata(root.join("usr/bin/tool-b")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hardlinked");
        assert_eq!(a.nlink(), 2);
        assert_eq!(a.gid(), 5, "group tty");
        assert_eq!(a.mode() & 0o7777, 0o2755, "setgid survives chown");
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/tool-b")).unwrap(),
            "same bytes"
        );
    }
}
