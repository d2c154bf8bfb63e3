//! rpm-ostree's lockfiles: JSON (or YAML) files that pin packages to an exact EVR(A), optionally
//! with the repodata digest of the RPM, as coreos-assembler keeps them beside the manifest
//! (`manifest-lock.<basearch>.json`, `manifest-lock.overrides.yaml`).
//!
//! Relaxed (the default): a package named in a lockfile can only be installed at its locked version,
//! others stay free, and a `lockfile-repos` repository offers only locked packages. Strict
//! (`--ex-lockfile-strict`): only locked packages can be installed at all. A locked package that no
//! repository has is a warning (rpm-ostree's), and becomes a depsolve error when the tree needs it.

use crate::solve::{Candidate, SolvedPackage};
use anyhow::Result;
use fedostree_util::InputError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockfileFormat {
    packages: Option<BTreeMap<String, LockedFormat>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    generated: Option<String>,
    rpmmd_repos: Option<BTreeMap<String, RepoMetadata>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoMetadata {
    generated: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum LockedFormat {
    Evra {
        evra: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<BTreeMap<String, serde_json::Value>>,
    },
    Evr {
        evr: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<BTreeMap<String, serde_json::Value>>,
    },
}

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub evr: String,
    /// None for an `evr` entry (any architecture).
    pub arch: Option<String>,
    /// `type:hex` of the RPM in the repodata, when the lockfile pins it.
    pub digest: Option<String>,
}

/// The lockfiles of one compose, merged: a later file's entry replaces an earlier one's.
#[derive(Debug, Clone, Default)]
pub struct Lockfile {
    pub files: Vec<PathBuf>,
    pub packages: BTreeMap<String, Locked>,
    pub strict: bool,
}

/// The lockfiles coreos-assembler passes for a treefile, in its order, those that exist:
/// `manifest-lock.<basearch>.json`, then `manifest-lock.overrides.yaml` and
/// `manifest-lock.overrides.<basearch>.yaml` (overrides win).
pub fn beside_treefile(dir: &Path, basearch: &str) -> Vec<PathBuf> {
    [
        format!("manifest-lock.{basearch}.json"),
        "manifest-lock.overrides.yaml".into(),
        format!("manifest-lock.overrides.{basearch}.yaml"),
    ]
    .into_iter()
    .map(|n| dir.join(n))
    .filter(|p| p.is_file())
    .collect()
}

impl Lockfile {
    /// Read and merge `files` (JSON, or YAML for `.yaml`/`.yml`); every one must have `packages`.
    pub fn read(files: &[PathBuf], strict: bool) -> Result<Lockfile> {
        let mut lock = Lockfile {
            files: files.to_vec(),
            strict,
            ..Lockfile::default()
        };
        for f in files {
            let text = fs_err::read_to_string(f).map_err(|e| InputError::new(e.to_string()))?;
            let yaml = matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
            let parsed: LockfileFormat = if yaml {
                serde_yaml_ng::from_str(&text).map_err(|e| InputError::new(format!("{}: {e}", f.display())))?
            } else {
                serde_json::from_str(&text).map_err(|e| InputError::new(format!("{}: {e}", f.display())))?
            };
            let packages = parsed
                .packages
                .ok_or_else(|| InputError::new(format!("{}: key `packages` not found", f.display())))?;
            for (name, entry) in packages {
                let locked = match entry {
                    LockedFormat::Evr { evr, digest, .. } => Locked {
                        evr,
                        arch: None,
                        digest,
                    },
                    LockedFormat::Evra { evra, digest, .. } => {
                        let Some((evr, arch)) = evra
                            .rsplit_once('.')
                            .filter(|(e, a)| !e.is_empty() && !a.is_empty() && !a.contains('-'))
                        else {
                            fedostree_util::bail_input!(
                                "{}: package `{name}` has a malformed evra `{evra}`",
                                f.display()
                            );
                        };
                        Locked {
                            evr: evr.into(),
                            arch: Some(arch.into()),
                            digest,
                        }
                    }
                };
                lock.packages.insert(name, locked);
            }
        }
        Ok(lock)
    }

    /// Whether `c` is the package its name is locked to; None when its name is not locked.
    pub fn allows(&self, c: &Candidate) -> Option<bool> {
        let l = self.packages.get(&c.name)?;
        // Epoch 0 is no epoch, as rpm and dnf read an EVR.
        let no_zero_epoch = |e: &str| e.strip_prefix("0:").unwrap_or(e).to_owned();
        Some(
            crate::solve::evrcmp(&no_zero_epoch(&l.evr), &no_zero_epoch(&c.evr)).is_eq()
                && l.arch.as_ref().is_none_or(|a| *a == c.arch)
                && l.digest.as_ref().is_none_or(|d| *d == c.digest),
        )
    }

    /// The pool filter of a compose: `lockfile_repos` are indices of repositories that only offer
    /// locked packages. Records which locked names found their package in `found`.
    pub fn pool_filter<'a>(
        &'a self,
        lockfile_repos: &'a BTreeSet<usize>,
        found: &'a mut BTreeSet<String>,
    ) -> impl FnMut(&Candidate) -> bool + 'a {
        move |c| match self.allows(c) {
            Some(true) => {
                found.insert(c.name.clone());
                true
            }
            Some(false) => false,
            None => !self.strict && !lockfile_repos.contains(&c.repo),
        }
    }

    /// rpm-ostree's warning for each locked package no repository has.
    pub fn warn_missing(&self, found: &BTreeSet<String>) {
        for (name, l) in &self.packages {
            if !found.contains(name) {
                let arch = l.arch.as_deref().map(|a| format!(".{a}")).unwrap_or_default();
                let digest = l
                    .digest
                    .as_deref()
                    .map(|d| format!(" with digest {d}"))
                    .unwrap_or_default();
                tracing::warn!(
                    "couldn't find locked package `{name}-{}{arch}`{digest} in any repository",
                    l.evr
                );
            }
        }
    }
}

/// `--ex-write-lockfile-to`: the solved set as rpm-ostree writes it (`evra` and the repodata
/// digest of each package; when it was generated, and each repository's repodata timestamp).
pub fn write(path: &Path, solved: &[SolvedPackage], repos: &[(String, Option<String>)]) -> Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let packages = solved
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                LockedFormat::Evra {
                    evra: format!("{}.{}", p.evr(), p.arch),
                    digest: Some(format!("{}:{}", p.checksum_type, p.checksum)),
                    metadata: None,
                },
            )
        })
        .collect();
    let rpmmd_repos = repos
        .iter()
        .map(|(id, generated)| {
            (
                id.clone(),
                RepoMetadata {
                    generated: generated.clone().unwrap_or_else(|| now.clone()),
                },
            )
        })
        .collect();
    let lock = LockfileFormat {
        packages: Some(packages),
        metadata: Some(Metadata {
            generated: Some(now),
            rpmmd_repos: Some(rpmmd_repos),
        }),
    };
    let text = serde_json::to_string_pretty(&lock)? + "\n";
    fedostree_util::atomic::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, evr: &str, arch: &str, repo: usize) -> Candidate {
        Candidate {
            name: name.into(),
            evr: evr.into(),
            arch: arch.into(),
            repo,
            digest: format!("sha256:{name}{evr}"),
        }
    }

    #[test]
    fn overrides_win_and_locks_pin_versions() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("manifest-lock.x86_64.json"),
            r#"{"packages": {"a": {"evra": "1.0-1.x86_64", "digest": "sha256:a1.0-1"}, "b": {"evra": "2-1.noarch"}},
                "metadata": {"generated": "2026-01-01T00:00:00Z", "rpmmd_repos": {"r": {"generated": "2026-01-01T00:00:00Z"}}}}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("manifest-lock.overrides.yaml"),
            "packages:\n  b:\n    evr: 3-1\n",
        )
        .unwrap();
        let files = beside_treefile(d.path(), "x86_64");
        assert_eq!(files.len(), 2);
        let lock = Lockfile::read(&files, false).unwrap();
        assert_eq!(lock.allows(&cand("a", "1.0-1", "x86_64", 0)), Some(true));
        let mut zero_epoch = cand("a", "0:1.0-1", "x86_64", 0);
        zero_epoch.digest = "sha256:a1.0-1".into();
        assert_eq!(lock.allows(&zero_epoch), Some(true), "epoch 0 is no epoch");
        assert_eq!(lock.allows(&cand("a", "1.0-2", "x86_64", 0)), Some(false));
        assert_eq!(
            lock.allows(&cand("b", "2-1", "noarch", 0)),
            Some(false),
            "the override replaced it"
        );
        assert_eq!(
            lock.allows(&cand("b", "3-1", "aarch64", 0)),
            Some(true),
            "evr locks any arch"
        );
        assert_eq!(lock.allows(&cand("c", "1-1", "x86_64", 0)), None);
        let mut digest = cand("a", "1.0-1", "x86_64", 0);
        digest.digest = "sha256:other".into();
        assert_eq!(lock.allows(&digest), Some(false));

        let (lockrepos, mut found) = (BTreeSet::from([1]), BTreeSet::new());
        let mut keep = lock.pool_filter(&lockrepos, &mut found);
        assert!(
            keep(&cand("c", "1-1", "x86_64", 0)),
            "relaxed: unlocked names stay free"
        );
        assert!(
            !keep(&cand("c", "1-1", "x86_64", 1)),
            "a lockfile repo offers only locked packages"
        );
        assert!(keep(&cand("a", "1.0-1", "x86_64", 1)));
        drop(keep);
        assert_eq!(found, BTreeSet::from(["a".to_string()]));
        let strict = Lockfile::read(&files, true).unwrap();
        let mut found = BTreeSet::new();
        assert!(!strict.pool_filter(&BTreeSet::new(), &mut found)(&cand(
            "c", "1-1", "x86_64", 0
        )));
    }

    #[test]
    fn malformed_lockfiles_name_file_and_package() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("l.json");
        std::fs::write(&f, r#"{"packages": {"a": {"evra": "1.0-1"}}}"#).unwrap();
        let e = Lockfile::read(std::slice::from_ref(&f), false).unwrap_err().to_string();
        assert!(e.contains("l.json: package `a` has a malformed evra `1.0-1`"), "{e}");
        std::fs::write(&f, r#"{"metadata": {}}"#).unwrap();
        let e = Lockfile::read(std::slice::from_ref(&f), false).unwrap_err().to_string();
        assert!(e.contains("l.json: key `packages` not found"), "{e}");
        std::fs::write(&f, r#"{"packages": {}, "pkgs": {}}"#).unwrap();
        assert!(Lockfile::read(&[f], false).is_err(), "unknown keys are refused");
    }
}
