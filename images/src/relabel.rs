//! The SELinux labels an installer owes a deployment. A commit's files carry their labels, and
//! ostree labels the `/etc` it makes at deploy; the stateroot's `/var` and `/boot` are the
//! installer's to label (ostree#872; Anaconda and osbuild's `org.osbuild.ostree.selinux` do it
//! after deploying). An offline deploy is that installer: `setfiles` with the deployment's own
//! `file_contexts`, each directory labelled as the path it is mounted at in the guest.
//! A deployment whose `/etc/selinux/config` does not enable SELinux is left alone.

use crate::guard::GuardedSysroot;
use anyhow::{Context, Result};
use fedostree_util::cmd::CommandRunExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The policy a deployment boots with: `SELINUXTYPE`, when `SELINUX` is not `disabled` (None
/// without a config).
pub fn enabled_policy(deployment: &Path) -> Option<String> {
    use fedostree_util::selinux_config::value;
    let text = fs_err::read_to_string(deployment.join("etc/selinux/config")).ok()?;
    let mode = value(&text, "SELINUX")?;
    (mode != "disabled").then(|| value(&text, "SELINUXTYPE")).flatten()
}

/// The newest deployment directory of `commit` in stateroot `osname`.
pub fn deployment_dir(sr: &GuardedSysroot, osname: &str, commit: &str) -> Result<PathBuf> {
    let dir = sr.path().join("ostree/deploy").join(osname).join("deploy");
    let mut newest: Option<(u32, PathBuf)> = None;
    for e in fs_err::read_dir(&dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(serial) = name.strip_prefix(commit).and_then(|s| s.strip_prefix('.')) else {
            continue;
        };
        if let Ok(n) = serial.parse::<u32>() {
            if newest.as_ref().is_none_or(|(m, _)| n > *m) && e.file_type()?.is_dir() {
                newest = Some((n, e.path()));
            }
        }
    }
    newest
        .map(|(_, p)| p)
        .with_context(|| format!("no deployment of {commit} in {}", dir.display()))
}

/// Label the deployment's `/etc`, the stateroot's `/var` and the sysroot's `/boot` with the
/// deployment's policy; returns the policy's name, or None when the deployment has SELinux off.
pub fn relabel(sr: &GuardedSysroot, osname: &str, deployment: &Path) -> Result<Option<String>> {
    let Some(policy) = enabled_policy(deployment) else {
        return Ok(None);
    };
    let contexts = deployment
        .join("etc/selinux")
        .join(&policy)
        .join("contexts/files/file_contexts");
    if !contexts.is_file() {
        anyhow::bail!(
            "{}: SELinux is enabled with policy {policy:?}, but {} does not exist",
            deployment.display(),
            contexts.display()
        );
    }
    let stateroot = sr.path().join("ostree/deploy").join(osname);
    for (root, dir, skip) in [
        (deployment.to_path_buf(), deployment.join("etc"), None),
        (stateroot.clone(), stateroot.join("var"), None),
        // `/boot/ostree` holds the deployments' kernels as hardlinks of their files in `/usr`
        // (and of the repository's objects): relabelling them would change the commit's files.
        (
            sr.path().to_path_buf(),
            sr.path().join("boot"),
            Some(sr.path().join("boot/ostree")),
        ),
    ] {
        setfiles(&root, &contexts, &dir, skip.as_deref())?;
    }
    Ok(Some(policy))
}

/// `setfiles -r ROOT`: `dir` labelled as the path it has beneath `root`, but not `skip`.
fn setfiles(root: &Path, contexts: &Path, dir: &Path, skip: Option<&Path>) -> Result<()> {
    let mut c = Command::new("setfiles");
    if let Some(skip) = skip.filter(|s| s.exists()) {
        c.arg("-e").arg(skip);
    }
    c.arg("-F")
        .arg("-r")
        .arg(root)
        .arg(contexts)
        .arg(dir)
        .run()
        .with_context(|| format!("labelling {} (setfiles, package policycoreutils)", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_says_which_policy_and_whether_it_is_on() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(enabled_policy(tmp.path()), None);
        fs_err::create_dir_all(tmp.path().join("etc/selinux")).unwrap();
        let config = tmp.path().join("etc/selinux/config");
        fs_err::write(&config, "# c\nSELINUX=enforcing\nSELINUXTYPE = default\n").unwrap();
        assert_eq!(enabled_policy(tmp.path()).as_deref(), Some("default"));
        fs_err::write(&config, "SELINUX=disabled\nSELINUXTYPE=default\n").unwrap();
        assert_eq!(enabled_policy(tmp.path()), None);
        fs_err::write(&config, "SELINUX=permissive\nSELINUXTYPE=\"targeted\"\n").unwrap();
        assert_eq!(enabled_policy(tmp.path()).as_deref(), Some("targeted"));
    }
}
