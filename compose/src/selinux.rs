//! SELinux as rpm-ostree composes it (`selinux: true`): the tree's own policy, built by its
//! packages' scriptlets, labels every file, directory and symlink of the commit through libostree's
//! `SePolicy` (the tree's `file_contexts`, read from the tree, never the host's). The labels are
//! committed as each object's `security.selinux`, so a deploy checks them out as they are.
//!
//! `selinux-label-version: 1` labels `/usr/etc/X` as `/etc/X` (libostree's
//! `SELINUX_LABEL_V1`, which libostree 2022.7 lacks, so the path is mapped here): what lives in
//! `/usr/etc` is the pristine `/etc`. Version 0 labels it by its own path, as rpm-ostree always did.

use anyhow::{bail, Context, Result};
use ostree::gio;
use std::path::Path;

/// The extended attribute's name.
pub const XATTR: &str = "security.selinux";

/// Where the policy store moves to (rpm-ostree's postprocess): `/var` is not part of a commit.
const STORE_ROOT: &str = "/etc/selinux";

/// The tree's SELinux policy, ready to label the tree it was loaded from. One at a time in a
/// process: libselinux's policy root is process-wide.
pub struct Labeller {
    policy: ostree::SePolicy,
    usr_etc_as_etc: bool,
}

impl Labeller {
    /// The policy of the tree at `root` (its `/etc/selinux/config`, in `/usr/etc` once moved).
    pub fn open(root: &Path, label_version: u32) -> Result<Labeller> {
        let Some(etc) = ["usr/etc", "etc"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.join("selinux/config").is_file())
        else {
            bail!(
                "`selinux: true`, but the tree has no SELinux policy: no /etc/selinux/config (install a policy \
                 package and a package that ships the config)"
            );
        };
        let config = fs_err::read_to_string(etc.join("selinux/config"))?;
        let Some(name) = fedostree_util::selinux_config::value(&config, "SELINUXTYPE") else {
            bail!("`selinux: true`, but the tree's /etc/selinux/config names no policy (SELINUXTYPE)");
        };
        if !etc
            .join("selinux")
            .join(&name)
            .join("contexts/files/file_contexts")
            .is_file()
        {
            bail!(
                "`selinux: true`, but the tree's policy {name:?} has no contexts/files/file_contexts: \
                 was the policy built (its package's scriptlet runs semodule)?"
            );
        }
        let policy = ostree::SePolicy::new(&gio::File::for_path(root), gio::Cancellable::NONE)
            .context("loading the tree's SELinux policy")?;
        Ok(Labeller {
            policy,
            usr_etc_as_etc: label_version >= 1,
        })
    }

    /// libostree's policy object, for the tests that compare with libostree's labelling.
    #[cfg(test)]
    pub(crate) fn policy(&self) -> &ostree::SePolicy {
        &self.policy
    }

    /// The label of `rel` (relative to the tree's root) with file type and mode `mode`, as the
    /// attribute's value (NUL-terminated, as libselinux stores it); None where the policy has none.
    pub fn label(&self, rel: &Path, mode: u32) -> Result<Option<Vec<u8>>> {
        let rel = rel
            .to_str()
            .with_context(|| format!("{}: a path that is not UTF-8 cannot be labelled", rel.display()))?;
        let path = format!("/{rel}");
        let lookup = match path.strip_prefix("/usr/etc") {
            Some(rest) if self.usr_etc_as_etc && (rest.is_empty() || rest.starts_with('/')) => format!("/etc{rest}"),
            _ => path,
        };
        let label = self
            .policy
            .label(&lookup, mode, gio::Cancellable::NONE)
            .with_context(|| format!("SELinux label of {lookup}"))?;
        Ok(label.map(|l| {
            let mut v = l.as_bytes().to_vec();
            v.push(0);
            v
        }))
    }
}

/// rpm-ostree's postprocess: a policy store the scriptlets built under `/var/lib/selinux` moves to
/// `/etc/selinux`, and `semanage.conf` says so, so that `semodule` on a client finds it.
pub fn move_policy_store(root: &Path) -> Result<()> {
    let var_store = root.join("var/lib/selinux");
    let conf = root.join("etc/selinux/semanage.conf");
    if !var_store.is_dir() || !conf.is_file() {
        return Ok(());
    }
    for e in fs_err::read_dir(&var_store)? {
        let e = e?;
        let dest = root.join("etc/selinux").join(e.file_name());
        fs_err::create_dir_all(&dest)?;
        // The policy's own directory (`/etc/selinux/NAME`) exists already; the store's parts move
        // into it beside `policy/` and `contexts/`.
        for part in fs_err::read_dir(e.path())? {
            let part = part?;
            let to = dest.join(part.file_name());
            if to.exists() {
                bail!(
                    "moving the SELinux policy store: {} exists already",
                    to.strip_prefix(root).unwrap_or(&to).display()
                );
            }
            fs_err::rename(part.path(), to)?;
        }
    }
    fs_err::remove_dir_all(&var_store)?;
    let text = fs_err::read_to_string(&conf)?;
    if !text.lines().any(|l| l.trim_start().starts_with("store-root")) {
        let edited = format!(
            "{text}{}# fedostree: on an OSTree system the policy store lives in /etc, not /var\nstore-root = {STORE_ROOT}\n",
            if text.ends_with('\n') || text.is_empty() { "" } else { "\n" }
        );
        // Replaced, not written into: the file is the unpacked package cache's inode.
        fedostree_util::atomic::write(&conf, edited)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy as far as labelling reads one: the config, `file_contexts` and a binary policy file
    /// (libostree checksums it; its content does not matter here).
    pub(crate) fn write_test_policy(root: &Path, etc: &str) {
        let dir = root.join(etc).join("selinux");
        fs_err::create_dir_all(dir.join("test/contexts/files")).unwrap();
        fs_err::create_dir_all(dir.join("test/policy")).unwrap();
        fs_err::write(dir.join("config"), "SELINUX=enforcing\nSELINUXTYPE=test\n").unwrap();
        fs_err::write(dir.join("test/policy/policy.33"), b"not a real policy").unwrap();
        fs_err::write(
            dir.join("test/contexts/files/file_contexts"),
            "/.*\tsystem_u:object_r:default_t:s0\n\
             /usr(/.*)?\tsystem_u:object_r:usr_t:s0\n\
             /usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0\n\
             /usr/bin/tool\t--\tsystem_u:object_r:tool_exec_t:s0\n\
             /etc(/.*)?\tsystem_u:object_r:etc_t:s0\n\
             /etc/shadow.*\t--\tsystem_u:object_r:shadow_t:s0\n",
        )
        .unwrap();
    }

    fn label(l: &Labeller, p: &str, mode: u32) -> String {
        let v = l.label(Path::new(p), mode).unwrap().unwrap();
        String::from_utf8(v[..v.len() - 1].to_vec()).unwrap()
    }

    #[test]
    fn labels_come_from_the_trees_policy_and_version_1_labels_usr_etc_as_etc() {
        let tmp = tempfile::tempdir().unwrap();
        write_test_policy(tmp.path(), "usr/etc");
        let v0 = Labeller::open(tmp.path(), 0).unwrap();
        assert_eq!(label(&v0, "usr/bin/tool", 0o100755), "system_u:object_r:tool_exec_t:s0");
        assert_eq!(label(&v0, "usr/bin", 0o040755), "system_u:object_r:bin_t:s0");
        // `--` matches regular files only.
        assert_eq!(label(&v0, "usr/bin/tool", 0o120777), "system_u:object_r:bin_t:s0");
        assert_eq!(label(&v0, "usr/etc/shadow", 0o100000), "system_u:object_r:usr_t:s0");
        assert_eq!(label(&v0, "", 0o040755), "system_u:object_r:default_t:s0");
        drop(v0);
        let v1 = Labeller::open(tmp.path(), 1).unwrap();
        assert_eq!(label(&v1, "usr/etc/shadow", 0o100000), "system_u:object_r:shadow_t:s0");
        assert_eq!(label(&v1, "usr/etc", 0o040755), "system_u:object_r:etc_t:s0");
        assert_eq!(label(&v1, "usr/etcetera", 0o100644), "system_u:object_r:usr_t:s0");
    }

    #[test]
    fn a_tree_without_a_policy_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Labeller::open(tmp.path(), 1).err().unwrap();
        assert!(format!("{e:#}").contains("no /etc/selinux/config"), "{e:#}");
        write_test_policy(tmp.path(), "etc");
        fs_err::remove_file(tmp.path().join("etc/selinux/test/contexts/files/file_contexts")).unwrap();
        let e = Labeller::open(tmp.path(), 1).err().unwrap();
        assert!(
            format!("{e:#}").contains("has no contexts/files/file_contexts"),
            "{e:#}"
        );
    }

    #[test]
    fn the_policy_store_moves_to_etc_and_semanage_conf_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs_err::create_dir_all(root.join("var/lib/selinux/default/active/modules")).unwrap();
        fs_err::write(root.join("var/lib/selinux/default/active/policy.kern"), b"x").unwrap();
        fs_err::create_dir_all(root.join("etc/selinux/default/policy")).unwrap();
        fs_err::write(root.join("etc/selinux/semanage.conf"), "module-store = direct").unwrap();
        move_policy_store(root).unwrap();
        assert!(root.join("etc/selinux/default/active/policy.kern").is_file());
        assert!(root.join("etc/selinux/default/policy").is_dir());
        assert!(!root.join("var/lib/selinux").exists());
        let conf = fs_err::read_to_string(root.join("etc/selinux/semanage.conf")).unwrap();
        assert!(conf.starts_with("module-store = direct\n"), "{conf}");
        assert!(conf.ends_with("store-root = /etc/selinux\n"), "{conf}");
        // Nothing to move: nothing changes.
        move_policy_store(root).unwrap();
        assert_eq!(
            fs_err::read_to_string(root.join("etc/selinux/semanage.conf")).unwrap(),
            conf
        );
    }
}
