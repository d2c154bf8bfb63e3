//! Kernel arguments a tree asks for, in bootc's format: `/usr/lib/bootc/kargs.d/*.toml`, each
//! `kargs = [...]` with an optional `match-architectures = [...]`, read in file-name order.
//!
//! The deploy that installs a tree is where they take effect (as `bootc install` and `bootc
//! upgrade` do): the first deploy of an image sets the harness's arguments and the tree's; a later
//! one appends what the new commit's files add and deletes what the old commit's had and the new
//! one's do not, and keeps every other argument (the harness's, anything set on the machine).

use crate::guard::GuardedSysroot;
use anyhow::{Context, Result};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::Arch;
use std::process::Command;

/// Where a tree keeps its kernel arguments.
pub const KARGS_DIR: &str = "/usr/lib/bootc/kargs.d";

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct KargsFile {
    kargs: Vec<String>,
    match_architectures: Option<Vec<String>>,
}

/// The arguments of one `kargs.d` file for `arch`; errors name the file.
pub fn parse(name: &str, text: &str, arch: Arch) -> Result<Vec<String>> {
    let f: KargsFile = toml::from_str(text).with_context(|| format!("{KARGS_DIR}/{name}"))?;
    let applies = f
        .match_architectures
        .is_none_or(|arches| arches.iter().any(|a| a == arch.as_str()));
    Ok(if applies { f.kargs } else { Vec::new() })
}

/// The kernel arguments `commit` (in the image's repository) asks for on `arch`.
pub fn of_commit(sr: &GuardedSysroot, commit: &str, arch: Arch) -> Result<Vec<String>> {
    let repo = crate::sysroot::repo_arg(sr);
    // `ostree ls` of a directory the commit lacks fails; `ls` of its parent says whether it exists.
    let parent = Command::new("ostree")
        .args([repo.as_str(), "ls", commit, "/usr/lib/bootc"])
        .output()
        .context("running ostree ls")?;
    let listing = String::from_utf8_lossy(&parent.stdout);
    if !parent.status.success() || !listing.lines().any(|l| l.ends_with(KARGS_DIR)) {
        return Ok(Vec::new());
    }
    let out = Command::new("ostree")
        .args([repo.as_str(), "ls", "--nul-filenames-only", commit, KARGS_DIR])
        .run_get_string()?;
    let mut names: Vec<&str> = out
        .split('\0')
        .filter_map(|p| p.strip_prefix(KARGS_DIR)?.strip_prefix('/'))
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    let mut kargs = Vec::new();
    for name in names {
        let text = Command::new("ostree")
            .args([repo.as_str(), "cat", commit, &format!("{KARGS_DIR}/{name}")])
            .run_get_string()?;
        kargs.extend(parse(name, &text, arch).with_context(|| format!("commit {commit}"))?);
    }
    Ok(kargs)
}

/// What a deploy passes to `ostree admin deploy`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KargChanges {
    /// `--karg`: replaces an argument of the same name (the first deploy's own).
    pub set: Vec<String>,
    pub append: Vec<String>,
    pub delete: Vec<String>,
}

/// The first deploy of an image: `harness`'s arguments, then the tree's.
pub fn first_deploy(harness: &[String], tree: &[String]) -> KargChanges {
    KargChanges {
        set: harness.to_vec(),
        append: tree.to_vec(),
        delete: Vec::new(),
    }
}

/// A later deploy: the difference between the old commit's tree arguments and the new one's.
pub fn update(old: &[String], new: &[String]) -> KargChanges {
    KargChanges {
        set: Vec::new(),
        append: new.iter().filter(|k| !old.contains(k)).cloned().collect(),
        delete: old.iter().filter(|k| !new.contains(k)).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_apply_to_their_architectures_and_errors_name_the_file() {
        let x86 = "kargs = [\"a=1\", \"b\"]\nmatch-architectures = [\"x86_64\"]\n";
        assert_eq!(parse("10-x.toml", x86, Arch::X86_64).unwrap(), ["a=1", "b"]);
        assert!(parse("10-x.toml", x86, Arch::Aarch64).unwrap().is_empty());
        assert_eq!(parse("20.toml", "kargs = [\"c\"]", Arch::Aarch64).unwrap(), ["c"]);
        let e = parse("30-bad.toml", "kargs = \"c\"", Arch::X86_64).unwrap_err();
        assert!(format!("{e:#}").contains("/usr/lib/bootc/kargs.d/30-bad.toml"), "{e:#}");
        let e = parse("40.toml", "kargs = []\nkarg = [\"x\"]", Arch::X86_64).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `karg`"), "{e:#}");
    }

    #[test]
    fn later_deploys_change_only_what_the_trees_files_changed() {
        let first = first_deploy(&["root=LABEL=root".into()], &["security=selinux".into()]);
        assert_eq!(first.set, ["root=LABEL=root"]);
        assert_eq!(first.append, ["security=selinux"]);
        let same = update(&["security=selinux".into()], &["security=selinux".into()]);
        assert_eq!(same, KargChanges::default());
        let changed = update(
            &["security=selinux".into(), "x=1".into()],
            &["security=selinux".into(), "y".into()],
        );
        assert_eq!(changed.append, ["y"]);
        assert_eq!(changed.delete, ["x=1"]);
        assert!(changed.set.is_empty());
    }
}
