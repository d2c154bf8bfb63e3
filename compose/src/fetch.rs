//! Fetching RPMs into one cache keyed by checksum, shared by every tree and architecture. Every file
//! is verified against the checksum in repodata before it enters the cache; a mismatch is refused.

use crate::progress::Progress;
use crate::repo::{hex_digest_reader, open_url, RepoConfig};
use crate::solve::SolvedPackage;
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};

/// Where `pkg` lives in the cache once verified.
pub fn cache_path(cache: &Path, pkg: &SolvedPackage) -> PathBuf {
    cache.join(format!("{}-{}.rpm", pkg.checksum_type, pkg.checksum))
}

/// Make sure every package is in the cache; returns the cached paths in the same order. A cached
/// file is trusted only while its digest still matches the repodata: a mismatch (a corrupt or
/// tampered cache entry) evicts it and fetches again.
pub fn fetch_all(pkgs: &[SolvedPackage], repos: &[RepoConfig], cache: &Path) -> Result<Vec<PathBuf>> {
    fs_err::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let mut missing: Vec<&SolvedPackage> = Vec::new();
    for pkg in pkgs {
        let path = cache_path(cache, pkg);
        let Ok(f) = std::fs::File::open(&path) else {
            missing.push(pkg);
            continue;
        };
        let (got, _) =
            hex_digest_reader(&pkg.checksum_type, f, None).with_context(|| format!("reading {}", path.display()))?;
        if got != pkg.checksum {
            eprintln!(
                "fedostree: cached {} ({}) no longer matches the repodata checksum: evicting and fetching again",
                pkg.nevra(),
                path.display()
            );
            fs_err::remove_file(&path).with_context(|| format!("evicting {}", path.display()))?;
            missing.push(pkg);
        }
    }
    let progress = Progress::new("download", missing.len() as u64, false);
    let mut bytes = 0u64;
    for pkg in &missing {
        progress.set_message(&pkg.nevra());
        bytes += fetch_one(pkg, &repos[pkg.repo], cache)?;
        progress.inc(1);
    }
    progress.finish(&format!(
        "{} packages, {} fetched ({:.1} MB), {} cached",
        pkgs.len(),
        missing.len(),
        bytes as f64 / 1e6,
        pkgs.len() - missing.len()
    ));
    Ok(pkgs.iter().map(|p| cache_path(cache, p)).collect())
}

fn fetch_one(pkg: &SolvedPackage, repo: &RepoConfig, cache: &Path) -> Result<u64> {
    if pkg.location.contains("..") || pkg.location.starts_with('/') {
        return Err(fedostree_util::InputError::new(format!(
            "{}: refusing repodata location `{}` outside the repository `{}`",
            pkg.nevra(),
            pkg.location,
            repo.id
        )));
    }
    let url = format!("{}/{}", repo.baseurl, pkg.location);
    let dest = cache_path(cache, pkg);
    let mut tmp = tempfile::NamedTempFile::new_in(cache)?;
    let src = open_url(&url).with_context(|| format!("fetching {}", pkg.nevra()))?;
    let (got, total) = hex_digest_reader(&pkg.checksum_type, src, Some(tmp.as_file_mut()))
        .with_context(|| format!("{}: downloading {url}", pkg.nevra()))?;
    if got != pkg.checksum {
        return Err(fedostree_util::InputError::new(format!(
            "{} ({url}, repository `{}`): {} checksum mismatch: repodata says {}, the file has {got}; refusing it",
            pkg.nevra(),
            repo.id,
            pkg.checksum_type,
            pkg.checksum
        )));
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&dest)
        .map_err(|e| anyhow!("storing {}: {}", dest.display(), e.error))?;
    Ok(total)
}
