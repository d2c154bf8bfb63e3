//! rpm-md repositories: `*.repo` files beside a treefile, and their metadata (repomd.xml → primary,
//! filelists), fetched over file:// or http(s):// into a cache and verified against repomd checksums.

use crate::gpg::RepoKeys;
use anyhow::{anyhow, bail, Context, Result};
use fedostree_util::InputError;
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One `[id]` section of a `.repo` file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepoConfig {
    pub id: String,
    pub name: String,
    /// With variables expanded, without a trailing slash.
    pub baseurl: String,
    /// Verify every RPM's header signature against `gpgkeys` (dnf's `gpgcheck`).
    pub gpgcheck: bool,
    /// Verify `repomd.xml` against `repomd.xml.asc` (dnf's `repo_gpgcheck`).
    pub repo_gpgcheck: bool,
    /// Key URLs (file://, http(s)://), variables expanded.
    pub gpgkeys: Vec<String>,
    #[serde(skip)]
    pub source: PathBuf,
    /// A variable its URLs name that has no value (file:line and name): an error only if a tree
    /// uses this repository, as dnf only expands the repositories it loads.
    #[serde(skip)]
    pub unexpanded: Option<String>,
}

/// Variables expanded in `baseurl` (dnf's `$basearch` and `$releasever`, plus fedostree's `$devrepo`).
pub struct RepoVars<'a> {
    pub basearch: &'a str,
    /// The treefile's `releasever`; a URL naming `$releasever` without one is an error.
    pub releasever: Option<&'a str>,
    pub devrepo: &'a Path,
}

/// Read every `*.repo` file in `dir` and return the repositories named in `wanted`, in that order.
pub fn load_repos(dir: &Path, wanted: &[String], vars: &RepoVars) -> Result<Vec<RepoConfig>> {
    let mut all: BTreeMap<String, RepoConfig> = BTreeMap::new();
    let mut files: Vec<PathBuf> = fs_err::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "repo"))
        .collect();
    files.sort();
    for f in files {
        for r in parse_repo_file(&f, vars)? {
            if let Some(prev) = all.get(&r.id) {
                bail!(
                    "{}: repository `{}` is also defined in {}",
                    f.display(),
                    r.id,
                    prev.source.display()
                );
            }
            all.insert(r.id.clone(), r);
        }
    }
    wanted
        .iter()
        .map(|id| {
            let r = all.get(id).cloned().ok_or_else(|| {
                anyhow!(
                    "repository `{id}` is not defined in any *.repo file in {} (known: {})",
                    dir.display(),
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            if let Some(problem) = &r.unexpanded {
                bail!("{problem}");
            }
            Ok(r)
        })
        .collect()
}

fn parse_repo_file(path: &Path, vars: &RepoVars) -> Result<Vec<RepoConfig>> {
    let text = fs_err::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: Vec<RepoConfig> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let at = || format!("{}:{}", path.display(), i + 1);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(id) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(RepoConfig {
                id: id.trim().into(),
                name: id.trim().into(),
                baseurl: String::new(),
                gpgcheck: false,
                repo_gpgcheck: false,
                gpgkeys: Vec::new(),
                source: path.into(),
                unexpanded: None,
            });
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("{}: expected `key=value`", at()))?;
        let cur = out
            .last_mut()
            .ok_or_else(|| anyhow!("{}: key outside of a [repository] section", at()))?;
        let v = v.trim();
        let mut unknown_var = None;
        let mut expand = |url: &str| -> Result<String> {
            let (url, unknown) = expand_vars(url, vars);
            if let Some(name) = unknown {
                let why = match name.as_str() {
                    "releasever" => "the treefile sets no `releasever`".to_owned(),
                    _ => "known: $basearch, $releasever (from the treefile), $devrepo".to_owned(),
                };
                unknown_var.get_or_insert(format!(
                    "{}: `{}` uses ${name}, which has no value ({why})",
                    at(),
                    k.trim()
                ));
            }
            if !(url.starts_with("file://") || url.starts_with("http://") || url.starts_with("https://")) {
                bail!(
                    "{}: `{}` URL `{url}` must be file://, http:// or https://",
                    at(),
                    k.trim()
                );
            }
            Ok(url)
        };
        match k.trim() {
            "name" => cur.name = v.into(),
            "baseurl" => {
                let url = expand(v.split_whitespace().next().unwrap_or_default())?;
                cur.baseurl = url.trim_end_matches('/').into();
            }
            "gpgcheck" => {
                cur.gpgcheck = parse_bool(v).ok_or_else(|| anyhow!("{}: gpgcheck=`{v}` is not a boolean", at()))?
            }
            "repo_gpgcheck" => {
                cur.repo_gpgcheck =
                    parse_bool(v).ok_or_else(|| anyhow!("{}: repo_gpgcheck=`{v}` is not a boolean", at()))?
            }
            // dnf: several keys separated by whitespace or commas.
            "gpgkey" => {
                for url in v
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|u| !u.is_empty())
                {
                    cur.gpgkeys.push(expand(url)?);
                }
            }
            "enabled" | "metadata_expire" | "skip_if_unavailable" => {}
            "metalink" | "mirrorlist" => {
                bail!("{}: `{}` is not supported yet, use baseurl", at(), k.trim())
            }
            other => bail!("{}: unknown repository option `{other}`", at()),
        }
        if let Some(problem) = unknown_var {
            cur.unexpanded.get_or_insert(problem);
        }
    }
    for r in &out {
        if r.baseurl.is_empty() {
            bail!("{}: repository `{}` has no baseurl", path.display(), r.id);
        }
        if (r.gpgcheck || r.repo_gpgcheck) && r.gpgkeys.is_empty() {
            bail!(
                "{}: repository `{}` sets gpgcheck or repo_gpgcheck but names no gpgkey",
                path.display(),
                r.id
            );
        }
    }
    Ok(out)
}

/// dnf's variable expansion: `$name` and `${name}`, where a name is letters, digits and `_` (so
/// `$releasever_major` is not `$releasever`). Unknown names stay as written; the first is returned.
fn expand_vars(s: &str, vars: &RepoVars) -> (String, Option<String>) {
    let devrepo = vars.devrepo.to_string_lossy();
    let value = |name: &str| match name {
        "basearch" => Some(vars.basearch),
        "releasever" => vars.releasever,
        "devrepo" => Some(&*devrepo),
        _ => None,
    };
    let mut out = String::with_capacity(s.len());
    let mut unknown = None;
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(b) => match b.find('}') {
                Some(end) => (&b[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match value(name) {
            Some(v) if !name.is_empty() => out.push_str(v),
            _ => {
                if !name.is_empty() {
                    unknown.get_or_insert_with(|| name.to_owned());
                }
                out.push('$');
                out.push_str(&after[..len.min(after.len())]);
            }
        }
        rest = &after[len.min(after.len())..];
    }
    out.push_str(rest);
    (out, unknown)
}

/// dnf's booleans.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Read `url` (file:// or http(s)://) fully into memory.
pub fn read_url(url: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    open_url(url)?
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {url}"))?;
    Ok(buf)
}

/// Open `url` as a stream, with its length when known.
pub fn open_url(url: &str) -> Result<Box<dyn Read + Send>> {
    if let Some(p) = url.strip_prefix("file://") {
        let f = std::fs::File::open(p).with_context(|| format!("opening {p}"))?;
        return Ok(Box::new(f));
    }
    let resp = ureq::get(url)
        .timeout(std::time::Duration::from_secs(60))
        .call()
        .map_err(|e| anyhow!("GET {url}: {e}"))?;
    Ok(Box::new(resp.into_reader()))
}

/// A digest in one of rpm-md's checksum types.
pub fn hex_digest(kind: &str, data: &[u8]) -> Result<String> {
    Ok(hex_digest_reader(kind, data, None)?.0)
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Hex digest of everything `src` yields (copied into `copy` if given), and the byte count.
pub fn hex_digest_reader(kind: &str, mut src: impl Read, mut copy: Option<&mut dyn Write>) -> Result<(String, u64)> {
    let mut hasher = match kind {
        "sha256" => Hasher::Sha256(Sha256::new()),
        "sha512" => Hasher::Sha512(Sha512::new()),
        other => bail!("unsupported checksum type `{other}` in repodata"),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        match &mut hasher {
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::Sha512(h) => h.update(&buf[..n]),
        }
        if let Some(w) = copy.as_mut() {
            w.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    let hex = match hasher {
        Hasher::Sha256(h) => hex::encode(h.finalize()),
        Hasher::Sha512(h) => hex::encode(h.finalize()),
    };
    Ok((hex, total))
}

/// Verified local copies of one repository's metadata.
#[derive(Debug, Clone)]
pub struct RepoMetadata {
    pub primary: PathBuf,
    pub filelists: Option<PathBuf>,
}

struct RepomdEntry {
    href: String,
    kind: String,
    checksum: String,
}

fn parse_repomd(xml: &str, url: &str) -> Result<BTreeMap<String, RepomdEntry>> {
    let doc = roxmltree::Document::parse(xml).with_context(|| format!("{url}: invalid repomd.xml"))?;
    let mut out = BTreeMap::new();
    for data in doc.descendants().filter(|n| n.has_tag_name("data")) {
        let ty = data.attribute("type").unwrap_or_default().to_string();
        let child = |tag: &str| data.children().find(|c| c.has_tag_name(tag));
        let (Some(loc), Some(ck)) = (child("location"), child("checksum")) else {
            continue;
        };
        out.insert(
            ty,
            RepomdEntry {
                href: loc.attribute("href").unwrap_or_default().into(),
                kind: ck.attribute("type").unwrap_or("sha256").into(),
                checksum: ck.text().unwrap_or_default().trim().into(),
            },
        );
    }
    Ok(out)
}

/// Fetch (or reuse from `cache_root`) the metadata of `repo`, verifying each file's checksum, and
/// `repomd.xml` itself against `keys` when the repository sets `repo_gpgcheck`.
pub fn fetch_metadata(repo: &RepoConfig, keys: Option<&RepoKeys>, cache_root: &Path) -> Result<RepoMetadata> {
    let url = format!("{}/repodata/repomd.xml", repo.baseurl);
    let repomd = read_url(&url).with_context(|| format!("repository `{}`", repo.id))?;
    if repo.repo_gpgcheck {
        let keys = keys.context("repo_gpgcheck without loaded keys")?;
        let asc = read_url(&format!("{url}.asc"))
            .map_err(|e| InputError::new(format!("repository `{}`: repo_gpgcheck=1 but {e:#}", repo.id)))?;
        keys.verify_detached(&repomd, &asc, &url)?;
    }
    let xml = std::str::from_utf8(&repomd).with_context(|| format!("{url}: not UTF-8"))?;
    let entries = parse_repomd(xml, &url)?;
    let key = &hex::encode(Sha256::digest(repo.baseurl.as_bytes()))[..16];
    let dir = cache_root.join(format!("{}-{key}", repo.id));
    fs_err::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let get = |ty: &str| -> Result<Option<PathBuf>> {
        let Some(e) = entries.get(ty) else {
            return Ok(None);
        };
        let name = Path::new(&e.href)
            .file_name()
            .ok_or_else(|| anyhow!("{url}: bad href {}", e.href))?;
        let local = dir.join(format!("{}-{}", &e.checksum, name.to_string_lossy()));
        // A cached file is trusted only while it still has the checksum it is named after.
        if let Ok(data) = fs_err::read(&local) {
            if hex_digest(&e.kind, &data)? != e.checksum {
                eprintln!(
                    "fedostree: cached {} is corrupt: evicting and fetching again",
                    local.display()
                );
                fs_err::remove_file(&local)?;
            }
        }
        if !local.exists() {
            let data = read_url(&format!("{}/{}", repo.baseurl, e.href))?;
            let got = hex_digest(&e.kind, &data)?;
            if got != e.checksum {
                fedostree_util::bail_input!(
                    "{}/{}: {} checksum mismatch: repomd.xml says {}, file has {got}",
                    repo.baseurl,
                    e.href,
                    e.kind,
                    e.checksum
                );
            }
            let tmp = local.with_extension("tmp");
            fs_err::write(&tmp, &data)?;
            fs_err::rename(&tmp, &local)?;
        }
        Ok(Some(local))
    };
    let primary = get("primary")?.ok_or_else(|| anyhow!("{url}: no primary metadata"))?;
    let filelists = get("filelists")?;
    Ok(RepoMetadata { primary, filelists })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_files_expand_variables_and_name_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("a.repo"),
            "[dev]\nname=Dev\nbaseurl=file://$devrepo/$basearch/\nenabled=1\n\n[web]\nbaseurl=http://127.0.0.1:1/x\n",
        )
        .unwrap();
        let vars = RepoVars {
            basearch: "aarch64",
            releasever: None,
            devrepo: Path::new("/s/devrepo"),
        };
        let r = load_repos(d.path(), &["web".into(), "dev".into()], &vars).unwrap();
        assert_eq!(r[1].baseurl, "file:///s/devrepo/aarch64");
        assert_eq!(r[0].id, "web");
        let e = load_repos(d.path(), &["nope".into()], &vars).unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("dev, web"), "{e}");
        std::fs::write(d.path().join("b.repo"), "[bad]\nbaseurl=ftp://x\n").unwrap();
        let e = load_repos(d.path(), &["dev".into()], &vars).unwrap_err().to_string();
        assert!(e.contains("b.repo:2") && e.contains("ftp://x"), "{e}");
    }

    #[test]
    fn releasever_expands_and_is_required_where_used() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("f.repo"),
            "[fedora]\nname=Fedora $releasever\nbaseurl=https://mirror.example/fedora/$releasever/Everything/$basearch/os/\n",
        )
        .unwrap();
        let mut vars = RepoVars {
            basearch: "x86_64",
            releasever: Some("41"),
            devrepo: Path::new("/s/devrepo"),
        };
        let r = load_repos(d.path(), &["fedora".into()], &vars).unwrap();
        assert_eq!(r[0].baseurl, "https://mirror.example/fedora/41/Everything/x86_64/os");
        vars.releasever = None;
        let e = load_repos(d.path(), &["fedora".into()], &vars).unwrap_err().to_string();
        assert!(e.contains("f.repo:3") && e.contains("sets no `releasever`"), "{e}");
        // Only a repository the tree uses needs its variables: another tree in the directory composes.
        std::fs::write(d.path().join("dev.repo"), "[dev]\nbaseurl=file://$devrepo/$basearch\n").unwrap();
        assert!(load_repos(d.path(), &["dev".into()], &vars).is_ok());
    }

    #[test]
    fn dnf_variable_forms() {
        let vars = RepoVars {
            basearch: "aarch64",
            releasever: Some("41"),
            devrepo: Path::new("/d"),
        };
        let x = |s: &str| expand_vars(s, &vars);
        assert_eq!(
            x("a/${releasever}/$basearch/${basearch}x"),
            ("a/41/aarch64/aarch64x".into(), None)
        );
        assert_eq!(
            x("$releasever_major/$devrepo"),
            ("$releasever_major//d".into(), Some("releasever_major".into()))
        );
        assert_eq!(x("cost$ ${ $"), ("cost$ ${ $".into(), None));
    }
}
