//! The on-disk state of a dev repo: the per-arch manifest of built packages (what made them), the
//! persistent bump counts, stale-RPM cleanup and the createrepo_c run.

use anyhow::{Context, Result};
use fedostree_util::cmd::CommandRunExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// `$STATE/devrepo/<arch>/manifest.json`: per package, the hash of its inputs and the file built.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub packages: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ManifestEntry {
    pub nevra: String,
    pub file: String,
    pub input: String,
}

pub(crate) fn load_json<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    match fs_err::read(path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub(crate) fn save_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    fs_err::create_dir_all(path.parent().context("no parent")?)?;
    let mut data = serde_json::to_vec_pretty(v)?;
    data.push(b'\n');
    // An up-to-date repository saves what it read: no write, no fsync (a no-op compose runs this).
    if fs_err::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    fedostree_util::atomic::write(path, &data)
}

impl Manifest {
    pub fn load(arch_dir: &Path) -> Result<Self> {
        load_json(&arch_dir.join("manifest.json"))
    }
    pub fn save(&self, arch_dir: &Path) -> Result<()> {
        save_json(&arch_dir.join("manifest.json"), self)
    }
}

/// `$STATE/devrepo/bumps.json`: how many times each bump key was bumped.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Bumps(pub BTreeMap<String, u32>);

impl Bumps {
    pub fn load(devrepo_root: &Path) -> Result<Self> {
        load_json(&devrepo_root.join("bumps.json"))
    }
    pub fn save(&self, devrepo_root: &Path) -> Result<()> {
        save_json(&devrepo_root.join("bumps.json"), self)
    }
    pub fn count(&self, key: &str) -> u32 {
        self.0.get(key).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }
}

/// The release after `count` bumps: a numeric release is incremented ("1" → "2"); any other gets
/// a `.N` suffix, which rpmvercmp also orders after the original ("4+deb12u1" → "4+deb12u1.1").
pub(crate) fn bumped_release(base: &str, count: u32) -> String {
    if count == 0 {
        return base.to_string();
    }
    match base.parse::<u64>() {
        Ok(n) => (n + u64::from(count)).to_string(),
        Err(_) => format!("{base}.{count}"),
    }
}

/// Delete `*.rpm` in `packages_dir` that are not in `keep`; returns the names removed.
pub(crate) fn remove_stale(packages_dir: &Path, keep: &BTreeSet<String>) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for e in fs_err::read_dir(packages_dir).with_context(|| format!("reading {}", packages_dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rpm") && !keep.contains(&name) {
            fs_err::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Run createrepo_c over `arch_dir`. `update` reuses metadata of RPMs whose size and mtime are
/// unchanged, so it must be false when an RPM was rewritten under the same name: every RPM has
/// the same fixed mtime. `revision` doubles as every timestamp, for reproducible repodata.
pub(crate) fn createrepo(arch_dir: &Path, revision: u64, update: bool) -> Result<()> {
    let mut c = Command::new("createrepo_c");
    c.args([
        "--quiet",
        "--no-database",
        "--general-compress-type=gz",
        "--set-timestamp-to-revision",
    ])
    .arg(format!("--revision={revision}"))
    .arg("--workers=2");
    if update && arch_dir.join("repodata/repomd.xml").exists() {
        c.arg("--update");
    }
    c.arg(arch_dir).run()
}

/// `repodata/repomd.xml.asc`: a detached signature by the dev key (for `repo_gpgcheck=1`), made at
/// the repository's revision time so identical repodata gets an identical signature.
pub(crate) fn sign_repomd(arch_dir: &Path, revision: u64) -> Result<()> {
    let repomd = arch_dir.join("repodata/repomd.xml");
    let data = fs_err::read(&repomd).with_context(|| format!("reading {}", repomd.display()))?;
    let t = u32::try_from(revision).context("repository revision beyond 2106")?;
    let asc = fedostree_compose::gpg::sign_detached(&crate::dev_key::dev_signer()?, &data, t)?;
    fedostree_util::atomic::write(&arch_dir.join("repodata/repomd.xml.asc"), asc.as_bytes())
}

/// `$STATE/devrepo/RPM-GPG-KEY-fedostree-dev`, the key the dev trees' `gpgkey=` names.
pub(crate) fn install_public_key(devrepo_root: &Path) -> Result<()> {
    let path = devrepo_root.join(crate::dev_key::DEV_KEY_FILE);
    if fs_err::read_to_string(&path).is_ok_and(|k| k == crate::dev_key::DEV_PUBLIC_KEY) {
        return Ok(());
    }
    fedostree_util::atomic::write(&path, crate::dev_key::DEV_PUBLIC_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_bump_upward() {
        assert_eq!(bumped_release("1", 0), "1");
        assert_eq!(bumped_release("1", 1), "2");
        assert_eq!(bumped_release("2", 3), "5");
        assert_eq!(bumped_release("4+deb12u1+b1", 2), "4+deb12u1+b1.2");
    }
}
