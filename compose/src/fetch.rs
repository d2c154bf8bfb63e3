//! Fetching RPMs into one cache keyed by checksum, shared by every tree and architecture. Every file
//! is verified against the checksum in repodata before it enters the cache; a mismatch is refused.

use crate::progress::Progress;
use crate::repo::{open_url, RepoConfig};
use crate::solve::SolvedPackage;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256, Sha512};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where `pkg` lives in the cache once verified.
pub fn cache_path(cache: &Path, pkg: &SolvedPackage) -> PathBuf {
    cache.join(format!("{}-{}.rpm", pkg.checksum_type, pkg.checksum))
}

/// Make sure every package is in the cache; returns the cached paths in the same order.
pub fn fetch_all(pkgs: &[SolvedPackage], repos: &[RepoConfig], cache: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let missing: Vec<&SolvedPackage> = pkgs.iter().filter(|p| !cache_path(cache, p).exists()).collect();
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

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

fn fetch_one(pkg: &SolvedPackage, repo: &RepoConfig, cache: &Path) -> Result<u64> {
    if pkg.location.contains("..") || pkg.location.starts_with('/') {
        bail!(
            "{}: refusing repodata location `{}` outside the repository",
            pkg.nevra(),
            pkg.location
        );
    }
    let url = format!("{}/{}", repo.baseurl, pkg.location);
    let mut hasher = match pkg.checksum_type.as_str() {
        "sha256" => Hasher::Sha256(Sha256::new()),
        "sha512" => Hasher::Sha512(Sha512::new()),
        other => bail!("{}: unsupported checksum type `{other}` in repodata", pkg.nevra()),
    };
    let dest = cache_path(cache, pkg);
    let mut tmp = tempfile::NamedTempFile::new_in(cache)?;
    let mut src = open_url(&url).with_context(|| format!("fetching {}", pkg.nevra()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).with_context(|| format!("reading {url}"))?;
        if n == 0 {
            break;
        }
        match &mut hasher {
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::Sha512(h) => h.update(&buf[..n]),
        }
        tmp.write_all(&buf[..n])?;
        total += n as u64;
    }
    let got = match hasher {
        Hasher::Sha256(h) => hex::encode(h.finalize()),
        Hasher::Sha512(h) => hex::encode(h.finalize()),
    };
    if got != pkg.checksum {
        return Err(crate::InputError::new(format!(
            "{} ({url}): {} checksum mismatch: repodata says {}, the file has {got}; refusing it",
            pkg.nevra(),
            pkg.checksum_type,
            pkg.checksum
        )));
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&dest)
        .map_err(|e| anyhow!("storing {}: {}", dest.display(), e.error))?;
    Ok(total)
}
