//! Debian's package indices as apt has them after `apt-get update`: the `Packages` lists of every
//! source whose Release file says `Origin: Debian` (bookworm, -updates, -security), for one
//! architecture plus `Architecture: all`. Other sources configured on the machine are ignored: the
//! dev repository is made of Debian's packages only.

use anyhow::{anyhow, bail, Context, Result};
use debian_control::lossy::apt::Package;
use fedostree_util::cmd::CommandRunExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const APT_LISTS: &str = "/var/lib/apt/lists";

/// Every candidate package of one Debian architecture, indexed by name and by what it provides.
pub(crate) struct Universe {
    pub debarch: String,
    pkgs: Vec<Package>,
    /// Each package's index record as it was read (the crate's Display does not round-trip).
    raw: Vec<String>,
    /// Name → the highest version of that name (apt's candidate with default pins).
    by_name: HashMap<String, usize>,
    /// Virtual name → packages providing it.
    providers: HashMap<String, Vec<usize>>,
}

/// The `Packages` list files of Debian-origin sources for `debarch`, sorted.
pub(crate) fn debian_lists(lists_dir: &Path, debarch: &str) -> Result<Vec<PathBuf>> {
    let mut prefixes = Vec::new();
    let mut names = Vec::new();
    for e in fs_err::read_dir(lists_dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(prefix) = name.strip_suffix("InRelease").or_else(|| name.strip_suffix("_Release")) {
            let text = fs_err::read_to_string(lists_dir.join(&name))?;
            if text.lines().any(|l| l.trim_end() == "Origin: Debian") {
                prefixes.push(prefix.trim_end_matches('_').to_string());
            }
        }
        names.push(name);
    }
    let mut lists: Vec<PathBuf> = names
        .iter()
        .filter(|n| {
            prefixes.iter().any(|p| n.starts_with(p.as_str()))
                && n.contains(&format!("_binary-{debarch}_Packages"))
                && !n.ends_with(".diff_Index")
        })
        .map(|n| lists_dir.join(n))
        .collect();
    lists.sort();
    if lists.is_empty() {
        bail!(
            "no Debian package lists for {debarch} in {}: run `ci/setup` (it adds the architecture and runs `apt-get update`)",
            lists_dir.display()
        );
    }
    Ok(lists)
}

impl Universe {
    /// Read the Debian lists for `debarch` from apt's list directory.
    pub fn load(lists_dir: &Path, debarch: &str) -> Result<Self> {
        let mut pkgs = Vec::new();
        let mut raw = Vec::new();
        for list in debian_lists(lists_dir, debarch)? {
            // apt stores lists compressed (lz4 here); apt-helper reads any of its formats.
            let text = Command::new("/usr/lib/apt/apt-helper")
                .arg("cat-file")
                .arg(&list)
                .run_get_string()?;
            parse_into(&text, &list, &mut pkgs, &mut raw)?;
        }
        Ok(Self::from_packages(debarch, pkgs, raw))
    }

    pub fn from_packages(debarch: &str, pkgs: Vec<Package>, raw: Vec<String>) -> Self {
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            if p.architecture != debarch && p.architecture != "all" {
                continue;
            }
            match by_name.get(&p.name) {
                Some(&j) if pkgs[j].version >= p.version => {}
                _ => {
                    by_name.insert(p.name.clone(), i);
                }
            }
        }
        let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
        let mut candidates: Vec<usize> = by_name.values().copied().collect();
        candidates.sort_by(|a, b| pkgs[*a].name.cmp(&pkgs[*b].name));
        for i in candidates {
            for alt in pkgs[i].provides.iter().flat_map(|r| r.0.iter()).flatten() {
                providers.entry(alt.name.clone()).or_default().push(i);
            }
        }
        Universe {
            debarch: debarch.to_string(),
            pkgs,
            raw,
            by_name,
            providers,
        }
    }

    pub fn candidate(&self, name: &str) -> Option<&Package> {
        self.by_name.get(name).map(|&i| &self.pkgs[i])
    }

    /// Every version of `name` in the indices for this architecture.
    #[cfg(test)]
    pub fn versions(&self, name: &str) -> Vec<&debversion::Version> {
        self.pkgs
            .iter()
            .filter(|p| p.name == name && (p.architecture == self.debarch || p.architecture == "all"))
            .map(|p| &p.version)
            .collect()
    }

    /// The index record of the candidate named `name`.
    pub fn record(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(|&i| self.raw[i].as_str())
    }

    /// Candidates that provide `name` (sorted by package name), with the version they provide it at.
    pub fn providers(&self, name: &str) -> Vec<(&Package, Option<&debversion::Version>)> {
        self.providers
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| {
                let p = &self.pkgs[i];
                let v = p
                    .provides
                    .iter()
                    .flat_map(|r| r.0.iter())
                    .flatten()
                    .find(|r| r.name == name)
                    .and_then(|r| r.version.as_ref().map(|(_, v)| v));
                (p, v)
            })
            .collect()
    }
}

/// Parse the paragraphs of one Packages file into `out`; a malformed record names the list file
/// and the package.
pub(crate) fn parse_into(text: &str, list: &Path, out: &mut Vec<Package>, raw: &mut Vec<String>) -> Result<()> {
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let p: Package = para.parse().map_err(|e: String| {
            let name = para.lines().next().unwrap_or("");
            anyhow!("{}: cannot parse the record starting {name:?}: {e}", list.display())
        })?;
        out.push(p);
        raw.push(para.trim().to_string());
    }
    Ok(())
}

/// A fingerprint of apt's lists (names, sizes, mtimes): indices can only change when `apt-get
/// update` changed them, so results computed from them are memoized under this stamp.
pub(crate) fn lists_stamp(lists_dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut lines = Vec::new();
    for e in fs_err::read_dir(lists_dir).with_context(|| format!("reading {}", lists_dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_file() && e.file_name() != "lock" {
            let mtime = m.modified()?.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            lines.push(format!(
                "{} {} {}",
                e.file_name().to_string_lossy(),
                m.len(),
                mtime.as_nanos()
            ));
        }
    }
    lines.sort();
    Ok(hex::encode(Sha256::digest(lines.join("\n").as_bytes())))
}
