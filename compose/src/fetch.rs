//! Fetching RPMs into one cache keyed by checksum, shared by every tree and architecture. Every file
//! is verified against the checksum in repodata before it enters the cache; a mismatch is refused.
//!
//! Downloads run a few at a time (dnf's `max_parallel_downloads` default), progress counts bytes,
//! and each package tries its repository's mirrors in order: a mirror that fails mid-download
//! leaves its bytes in a `.part` file that the next mirror (or the next compose) resumes with an
//! HTTP range request.

use crate::progress::Progress;
use crate::repo::{RepoConfig, DIGEST_BUF};
use crate::solve::SolvedPackage;
use anyhow::{anyhow, Context, Result};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Downloads at once: dnf's `max_parallel_downloads` default.
pub const PARALLEL_DOWNLOADS: usize = 3;

/// Where `pkg` lives in the cache once verified.
pub fn cache_path(cache: &Path, pkg: &SolvedPackage) -> PathBuf {
    cache.join(format!("{}-{}.rpm", pkg.checksum_type, pkg.checksum))
}

/// Where the bytes of an unfinished download of `pkg` wait to be resumed.
fn part_path(cache: &Path, pkg: &SolvedPackage) -> PathBuf {
    cache.join(format!(".part-{}-{}", pkg.checksum_type, pkg.checksum))
}

/// Make sure every package is in the cache; returns the cached paths in the same order. A cached
/// file is trusted only while its digest still matches the repodata: a mismatch (a corrupt or
/// tampered cache entry) evicts it and fetches again.
/// `FEDOSTREE_MAX_PARALLEL_DOWNLOADS` (dnf's `max_parallel_downloads`) overrides how many at once.
pub fn fetch_all(pkgs: &[SolvedPackage], repos: &[RepoConfig], cache: &Path) -> Result<Vec<PathBuf>> {
    let parallel = std::env::var("FEDOSTREE_MAX_PARALLEL_DOWNLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PARALLEL_DOWNLOADS);
    fetch_all_with(pkgs, repos, cache, parallel)
}

/// [`fetch_all`] with `parallel` downloads at once (1: one after the other).
pub fn fetch_all_with(
    pkgs: &[SolvedPackage],
    repos: &[RepoConfig],
    cache: &Path,
    parallel: usize,
) -> Result<Vec<PathBuf>> {
    fs_err::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let mut missing: Vec<&SolvedPackage> = Vec::new();
    for pkg in pkgs {
        let path = cache_path(cache, pkg);
        let Ok(f) = std::fs::File::open(&path) else {
            missing.push(pkg);
            continue;
        };
        let got = crate::repo::hex_digest_reader(&pkg.checksum_type, f, None)
            .with_context(|| format!("reading {}", path.display()))?
            .0;
        if got != pkg.checksum {
            fedostree_util::events::notice(
                fedostree_util::events::Stage::Compose,
                format!(
                    "cached {} ({}) no longer matches the repodata checksum: evicting and fetching again",
                    pkg.nevra(),
                    path.display()
                ),
            );
            fs_err::remove_file(&path).with_context(|| format!("evicting {}", path.display()))?;
            missing.push(pkg);
        }
    }
    let total: u64 = missing.iter().map(|p| p.size).sum();
    let progress = Progress::new("download", total, true);
    let queue = Mutex::new(missing.iter());
    let fetched = Mutex::new(0u64);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1).min(missing.len().max(1)) {
            scope.spawn(|| loop {
                if first_error.lock().unwrap().is_some() {
                    return;
                }
                let Some(pkg) = queue.lock().unwrap().next() else {
                    return;
                };
                match fetch_one(pkg, &repos[pkg.repo], cache, &progress) {
                    Ok(n) => *fetched.lock().unwrap() += n,
                    Err(e) => {
                        first_error.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    progress.finish(&format!(
        "{} packages, {} fetched ({:.1} MB), {} cached",
        pkgs.len(),
        missing.len(),
        *fetched.lock().unwrap() as f64 / 1e6,
        pkgs.len() - missing.len()
    ));
    Ok(pkgs.iter().map(|p| cache_path(cache, p)).collect())
}

/// Download one package from the first mirror that delivers it whole; returns the bytes fetched.
fn fetch_one(pkg: &SolvedPackage, repo: &RepoConfig, cache: &Path, progress: &Progress) -> Result<u64> {
    if pkg.location.contains("..") || pkg.location.starts_with('/') {
        return Err(fedostree_util::InputError::new(format!(
            "{}: refusing repodata location `{}` outside the repository `{}`",
            pkg.nevra(),
            pkg.location,
            repo.id
        )));
    }
    let part = part_path(cache, pkg);
    // A download that finished but was not stored (a crash in between) needs no mirror.
    if let Ok(f) = std::fs::File::open(&part) {
        if crate::repo::hex_digest_reader(&pkg.checksum_type, f, None)?.0 == pkg.checksum {
            fs_err::rename(&part, cache_path(cache, pkg))?;
            return Ok(0);
        }
    }
    let mut failures = Vec::new();
    for base in repo.mirrors() {
        let url = format!("{base}/{}", pkg.location);
        match download_resuming(&url, &part, progress) {
            Ok(n) => {
                let got = crate::repo::hex_digest_reader(&pkg.checksum_type, fs_err::File::open(&part)?, None)?.0;
                if got != pkg.checksum {
                    // Whatever the mirror sent, it is not this package: the next mirror starts over.
                    fs_err::remove_file(&part)?;
                    failures.push(format!(
                        "{url}: {} checksum mismatch: repodata says {}, the file has {got}",
                        pkg.checksum_type, pkg.checksum
                    ));
                    continue;
                }
                fs_err::File::open(&part)?.sync_all()?;
                let dest = cache_path(cache, pkg);
                fs_err::rename(&part, &dest).with_context(|| format!("storing {}", dest.display()))?;
                return Ok(n);
            }
            Err(e) => failures.push(format!("{url}: {e:#}")),
        }
    }
    let all_mismatched = failures.iter().all(|f| f.contains("checksum mismatch"));
    let msg = format!(
        "{} (repository `{}`): no mirror delivered it:\n  {}",
        pkg.nevra(),
        repo.id,
        failures.join("\n  ")
    );
    if all_mismatched {
        // Every mirror serves other bytes than the signed repodata names: the input is wrong.
        return Err(fedostree_util::InputError::new(msg));
    }
    Err(anyhow!(msg))
}

/// Append `url`'s bytes to `part` from where an earlier attempt stopped (a range request; a server
/// that answers with the whole file starts it over); returns the bytes received now.
fn download_resuming(url: &str, part: &Path, progress: &Progress) -> Result<u64> {
    let mut file = fs_err::OpenOptions::new().create(true).append(true).open(part)?;
    let have = file.metadata()?.len();
    let mut src: Box<dyn Read + Send> = match url.strip_prefix("file://") {
        Some(p) => {
            let mut f = std::fs::File::open(p).with_context(|| format!("opening {p}"))?;
            f.seek(std::io::SeekFrom::Start(have))?;
            Box::new(f)
        }
        None => {
            let mut req = ureq::get(url).timeout(std::time::Duration::from_secs(60));
            if have > 0 {
                req = req.set("Range", &format!("bytes={have}-"));
            }
            let resp = req.call().map_err(|e| anyhow!("GET {url}: {e}"))?;
            if have > 0 && resp.status() != 206 {
                file.set_len(0)?;
            }
            Box::new(resp.into_reader())
        }
    };
    let mut buf = vec![0u8; DIGEST_BUF];
    let mut got = 0u64;
    loop {
        let n = src.read(&mut buf).with_context(|| format!("reading {url}"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
        got += n as u64;
        progress.inc(n as u64);
    }
    Ok(got)
}
