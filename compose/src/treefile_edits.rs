//! The treefile's edits of package content and of the assembled tree, made as rpm-ostree makes them:
//! `remove-from-packages` (files left out when a package is checked out into the tree), `add-files`
//! and `mutate-os-release` (after `remove-files`, before the postprocess scripts).

use crate::import::{Entry, Unpacked};
use crate::safepath;
use crate::treefile::AddFile;
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `unpacked` without the entries a pattern finds in (a directory takes its content with it);
/// returns the paths left out too. The package's owners and sample path follow.
pub fn remove_from_package(unpacked: &Unpacked, patterns: &[regex::Regex]) -> (Unpacked, Vec<String>) {
    let matches = |p: &Path| {
        patterns
            .iter()
            .any(|re| re.is_match(&crate::commit_paths::commit_path(p)))
    };
    let dirs: Vec<&Path> = unpacked
        .entries
        .iter()
        .filter(|e| matches!(e, Entry::Dir { .. }))
        .map(Entry::path)
        .filter(|p| matches(p))
        .collect();
    let removed = |p: &Path| matches(p) || dirs.iter().any(|d| p.starts_with(d));
    let mut out = unpacked.clone();
    let mut gone = Vec::new();
    out.entries.retain(|e| {
        let keep = !removed(e.path());
        if !keep {
            gone.push(crate::commit_paths::commit_path(e.path()));
        }
        keep
    });
    out.package.owners.retain(|(p, _, _)| !removed(p));
    if out
        .package
        .sample_path
        .as_deref()
        .is_some_and(|s| removed(Path::new(s.trim_start_matches('/'))))
    {
        out.package.sample_path = out
            .entries
            .iter()
            .filter(|e| !matches!(e, Entry::Dir { .. }))
            .map(|e| format!("/{}", e.path().display()))
            .find(|p| crate::linesafe::is_plain_field(p));
    }
    (out, gone)
}

/// Where an `add-files` destination lands in the tree while `/etc` is still `/etc` and before the
/// usr-merge links exist: `/bin`, `/sbin`, `/lib*` are `/usr`'s.
fn add_files_target(dest: &str) -> PathBuf {
    let rel = dest.trim_start_matches('/');
    for merged in ["bin/", "sbin/", "lib/", "lib64/"] {
        if rel.starts_with(merged) {
            return Path::new("usr").join(rel);
        }
    }
    PathBuf::from(rel)
}

/// Copy each `add-files` source into the tree with its mode (owned by root), replacing what a
/// package put there; missing parent directories are made 0755.
pub fn add_files(root: &Path, files: &[AddFile]) -> Result<()> {
    for f in files {
        let rel = add_files_target(&f.dest);
        let at = || format!("add-files: {} → {}", f.source.display(), f.dest);
        let parent = rel.parent().context("add-files destination has no parent")?;
        // Checked first: no existing component may be a symlink.
        safepath::beneath(root, parent).with_context(at)?;
        let mut dir = root.to_path_buf();
        for c in parent.components() {
            dir.push(c);
            match dir.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(_) => fedostree_util::bail_input!("{}: {} is not a directory in the tree", at(), dir.display()),
                Err(_) => {
                    fs_err::create_dir(&dir)?;
                    fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
                }
            }
        }
        let target = safepath::parent_beneath(root, &rel).with_context(at)?;
        if target.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            fedostree_util::bail_input!("{}: the destination is a directory in the tree", at());
        }
        let content = fs_err::read(&f.source).with_context(at)?;
        let mode = fs_err::metadata(&f.source)?.permissions().mode() & 0o7777;
        safepath::replace_file(&target, &content).with_context(at)?;
        fs_err::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        fedostree_util::events::step(
            fedostree_util::events::Stage::Compose,
            format!("add-files: {}", f.dest),
            None,
        );
    }
    Ok(())
}

/// `mutate-os-release`: in the file `/etc/os-release` leads to, `base` becomes the commit's version
/// in `VERSION=` and `PRETTY_NAME=`, and `OSTREE_VERSION=` is added. Without a version (no
/// `automatic-version-prefix`) nothing changes, as in rpm-ostree.
pub fn mutate_os_release(root: &Path, base: &str, version: Option<&str>) -> Result<()> {
    let Some(version) = version else {
        fedostree_util::events::notice(
            fedostree_util::events::Stage::Compose,
            "mutate-os-release: ignored, the commit has no version",
        );
        return Ok(());
    };
    let rel = safepath::resolve_in_tree(root, "etc/os-release")
        .and_then(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("etc/os-release"));
    let path = safepath::beneath(root, &rel)?;
    let contents = fs_err::read_to_string(&path)
        .map_err(|e| fedostree_util::InputError::new(format!("mutate-os-release: /{}: {e}", rel.display())))?;
    safepath::replace_file(&path, mutate_os_release_contents(&contents, base, version))
}

fn mutate_os_release_contents(contents: &str, base: &str, version: &str) -> String {
    let mut out = String::new();
    for line in contents.lines().filter(|l| !l.is_empty()) {
        match ["VERSION=", "PRETTY_NAME="].iter().find(|p| line.starts_with(**p)) {
            Some(key) => {
                out.push_str(key);
                out.push_str(&line[key.len()..].replace(base, version));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    // Quoted as GLib's g_shell_quote quotes it.
    out.push_str(&format!("OSTREE_VERSION='{}'\n", version.replace('\'', "'\\''")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_gets_the_commit_version() {
        let before = "NAME=Fedora\nVERSION=\"41 (CoreOS)\"\n\nPRETTY_NAME=\"Fedora CoreOS 41\"\nVERSION_ID=41\n";
        let after = mutate_os_release_contents(before, "41", "41.20261201.0");
        assert_eq!(
            after,
            "NAME=Fedora\nVERSION=\"41.20261201.0 (CoreOS)\"\nPRETTY_NAME=\"Fedora CoreOS 41.20261201.0\"\nVERSION_ID=41\nOSTREE_VERSION='41.20261201.0'\n"
        );
    }

    #[test]
    fn patterns_match_commit_paths_and_take_directories_whole() {
        let e = |p: &str| Entry::File {
            path: p.into(),
            content: "0".into(),
            color: 0,
        };
        let unpacked = Unpacked {
            package: crate::import::ImportedPackage {
                name: "p".into(),
                nevra: "p-1-1.noarch".into(),
                sample_path: Some("/usr/share/p/a".into()),
                owners: vec![("usr/share/p/a".into(), "u".into(), "g".into())],
                scriptlets: vec![],
                caps: vec![],
            },
            entries: vec![
                Entry::Dir {
                    path: "usr/share/p".into(),
                    mode: 0o755,
                },
                e("usr/share/p/a"),
                e("usr/bin/p"),
                e("etc/p.conf"),
            ],
            what: "p".into(),
        };
        let re = |s: &str| regex::Regex::new(s).unwrap();
        let (out, gone) = remove_from_package(&unpacked, &[re("^/usr/share/p$"), re("^/usr/etc/p")]);
        assert_eq!(gone, ["/usr/share/p", "/usr/share/p/a", "/usr/etc/p.conf"]);
        assert_eq!(out.entries.len(), 1);
        assert!(out.package.owners.is_empty());
        assert_eq!(out.package.sample_path.as_deref(), Some("/usr/bin/p"));
    }

    #[test]
    fn add_files_land_beneath_usr_and_keep_their_mode() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        let src = d.path().join("tool");
        std::fs::write(&src, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
        let f = |dest: &str| AddFile {
            source: src.clone(),
            source_as_written: "tool".into(),
            dest: dest.into(),
        };
        add_files(&root, &[f("/bin/tool"), f("/usr/lib/new/dir/tool")]).unwrap();
        let m = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        assert!(root.join("usr/lib/new/dir/tool").is_file());
        let dm = std::fs::metadata(root.join("usr/lib/new")).unwrap();
        assert_eq!(dm.permissions().mode() & 0o7777, 0o755);
    }
}
