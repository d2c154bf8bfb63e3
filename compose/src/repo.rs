//! rpm-md repositories: `*.repo` files beside a treefile, and their metadata (repomd.xml → primary,
//! filelists), fetched over file:// or http(s):// into a cache and verified against repomd checksums.

use crate::gpg::RepoKeys;
use anyhow::{anyhow, bail, Context, Result};
use fedostree_util::InputError;
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Read buffer of downloads and digests.
pub const DIGEST_BUF: usize = 1 << 20;

/// One `[id]` section of a `.repo` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepoConfig {
    pub id: String,
    pub name: String,
    /// The first `baseurl` (or the mirrorlist/metalink URL when there is none): names the cache.
    /// With variables expanded, without a trailing slash.
    pub baseurl: String,
    /// Every `baseurl` (dnf takes several, on one line or continuation lines), then the mirrors
    /// `mirrorlist`/`metalink` list once [`resolve_mirrors`] ran: tried in this order.
    pub baseurls: Vec<String>,
    pub mirrorlist: Option<String>,
    pub metalink: Option<String>,
    /// Digests `repomd.xml` must match (`type`, hex), from the metalink.
    pub repomd_hashes: Vec<(String, String)>,
    /// dnf's `exclude`/`excludepkgs` and `includepkgs`: name globs.
    pub exclude: Vec<String>,
    pub includepkgs: Vec<String>,
    /// dnf's `priority` (lower wins, default 99) and `cost` (lower preferred, default 1000).
    pub priority: i32,
    pub cost: i32,
    /// An unreachable repository is a warning, not an error.
    pub skip_if_unavailable: bool,
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

impl RepoConfig {
    /// The base URLs to try, in order.
    pub fn mirrors(&self) -> &[String] {
        &self.baseurls
    }

    /// Whether dnf's `exclude`/`includepkgs` let this repository offer package `name`.
    pub fn offers(&self, name: &str) -> bool {
        !self.exclude.iter().any(|g| fedostree_util::glob::glob_match(g, name))
            && (self.includepkgs.is_empty()
                || self
                    .includepkgs
                    .iter()
                    .any(|g| fedostree_util::glob::glob_match(g, name)))
    }
}

/// Fill in the mirrors of a repository that names a `mirrorlist` (a list of base URLs, one per line)
/// or a `metalink` (XML listing `repomd.xml` URLs by preference, with the digests it must have),
/// after its own `baseurl`s.
pub fn resolve_mirrors(repo: &mut RepoConfig) -> Result<()> {
    if let Some(url) = repo.mirrorlist.clone() {
        let text = String::from_utf8(read_url(&url).with_context(|| format!("repository `{}`: mirrorlist", repo.id))?)
            .map_err(|_| anyhow!("{url}: mirrorlist is not UTF-8"))?;
        let found: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.trim_end_matches('/').to_owned())
            .collect();
        if found.is_empty() {
            bail!("repository `{}`: mirrorlist {url} lists no mirror", repo.id);
        }
        repo.baseurls.extend(found);
    }
    if let Some(url) = repo.metalink.clone() {
        let xml = read_url(&url).with_context(|| format!("repository `{}`: metalink", repo.id))?;
        let xml = std::str::from_utf8(&xml).map_err(|_| anyhow!("{url}: metalink is not UTF-8"))?;
        let metalink = parse_metalink(xml, &url)?;
        repo.baseurls.extend(metalink.mirrors);
        repo.repomd_hashes = metalink.hashes;
    }
    Ok(())
}

/// What a metalink says of `repomd.xml`.
struct Metalink {
    /// Base URLs, most preferred first.
    mirrors: Vec<String>,
    /// (`sha256` or `sha512`, hex).
    hashes: Vec<(String, String)>,
}

fn parse_metalink(xml: &str, url: &str) -> Result<Metalink> {
    let doc = roxmltree::Document::parse(xml).with_context(|| format!("{url}: invalid metalink"))?;
    let file = doc
        .descendants()
        .find(|n| n.has_tag_name("file") && n.attribute("name") == Some("repomd.xml"))
        .ok_or_else(|| anyhow!("{url}: the metalink has no repomd.xml"))?;
    let hashes: Vec<(String, String)> = file
        .descendants()
        .filter(|n| n.has_tag_name("hash"))
        .filter_map(|h| Some((h.attribute("type")?.to_owned(), h.text()?.trim().to_ascii_lowercase())))
        .filter(|(t, _)| t == "sha256" || t == "sha512")
        .collect();
    let mut urls: Vec<(i64, String)> = file
        .descendants()
        .filter(|n| n.has_tag_name("url"))
        .filter_map(|u| {
            let text = u.text()?.trim();
            let base = text.strip_suffix("/repodata/repomd.xml")?;
            let pref = u.attribute("preference").and_then(|p| p.parse().ok()).unwrap_or(0);
            Some((pref, base.trim_end_matches('/').to_owned()))
        })
        .filter(|(_, b)| b.starts_with("http://") || b.starts_with("https://") || b.starts_with("file://"))
        .collect();
    // Most preferred first; the metalink's order among equals.
    urls.sort_by_key(|(pref, _)| std::cmp::Reverse(*pref));
    if urls.is_empty() {
        bail!("{url}: the metalink lists no usable repomd.xml URL");
    }
    Ok(Metalink {
        mirrors: urls.into_iter().map(|(_, b)| b).collect(),
        hashes,
    })
}

/// Variables expanded in `baseurl` (dnf's `$basearch` and `$releasever`, plus fedostree's `$devrepo`).
pub struct RepoVars<'a> {
    pub basearch: &'a str,
    /// The treefile's `releasever`; a URL naming `$releasever` without one is an error.
    pub releasever: Option<&'a str>,
    pub devrepo: &'a Path,
    /// Any other variable: the treefile's `repovars` over dnf's `DNF_VAR_*` environment.
    pub extra: &'a BTreeMap<String, String>,
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
    let mut last_key: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = || format!("{}:{}", path.display(), i + 1);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(id) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(RepoConfig {
                id: id.trim().into(),
                name: id.trim().into(),
                source: path.into(),
                priority: 99,
                cost: 1000,
                ..RepoConfig::default()
            });
            last_key = None;
            continue;
        }
        // An indented line continues the previous key's value (dnf's ini files: several baseurls).
        let continued = raw.starts_with([' ', '\t']) && last_key.is_some() && !line.contains('=');
        let (k, v) = match continued {
            true => (last_key.clone().unwrap_or_default(), line),
            false => line
                .split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v))
                .ok_or_else(|| anyhow!("{}: expected `key=value`", at()))?,
        };
        last_key = Some(k.clone());
        let k = k.as_str();
        let cur = out
            .last_mut()
            .ok_or_else(|| anyhow!("{}: key outside of a [repository] section", at()))?;
        set_repo_option(cur, k, v.trim(), vars, &at)?;
    }
    for r in &mut out {
        finish_repo(r, path)?;
    }
    Ok(out)
}

/// Apply option `k` = `v` to `cur`; the first URL variable without a value is noted in `unexpanded`.
fn set_repo_option(cur: &mut RepoConfig, k: &str, v: &str, vars: &RepoVars, at: &dyn Fn() -> String) -> Result<()> {
    let mut unknown_var = None;
    let mut expand = |url: &str| expand_url(url, k, vars, at, &mut unknown_var);
    match k.trim() {
        "name" => cur.name = v.into(),
        "baseurl" => {
            for url in list(v) {
                let url = expand(url)?;
                cur.baseurls.push(url.trim_end_matches('/').into());
            }
        }
        "mirrorlist" => cur.mirrorlist = Some(expand(v)?),
        "metalink" => cur.metalink = Some(expand(v)?),
        "exclude" | "excludepkgs" => cur.exclude.extend(list(v).map(str::to_owned)),
        "includepkgs" => cur.includepkgs.extend(list(v).map(str::to_owned)),
        "priority" | "cost" => {
            let n: i32 = v.parse().map_err(|_| anyhow!("{}: {k}=`{v}` is not a number", at()))?;
            *(if k == "priority" {
                &mut cur.priority
            } else {
                &mut cur.cost
            }) = n;
        }
        "skip_if_unavailable" => {
            cur.skip_if_unavailable =
                parse_bool(v).ok_or_else(|| anyhow!("{}: skip_if_unavailable=`{v}` is not a boolean", at()))?
        }
        "module_hotfixes" => {
            tracing::info!(
                "{}: module_hotfixes ignored: fedostree composes no modular content",
                at()
            )
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
            for url in list(v) {
                cur.gpgkeys.push(expand(url)?);
            }
        }
        "enabled" | "metadata_expire" => {}
        other => bail!("{}: unknown repository option `{other}`", at()),
    }
    if let Some(problem) = unknown_var {
        cur.unexpanded.get_or_insert(problem);
    }
    Ok(())
}

/// Option `k`'s URL with variables expanded (file:// or http(s):// only), noting a variable without value.
fn expand_url(
    url: &str,
    k: &str,
    vars: &RepoVars,
    at: &dyn Fn() -> String,
    unknown_var: &mut Option<String>,
) -> Result<String> {
    let (url, unknown) = expand_vars(url, vars);
    if let Some(name) = unknown {
        let why = match name.as_str() {
            "releasever" => "the treefile sets no `releasever`".to_owned(),
            _ => "known: $basearch, $releasever (from the treefile), $devrepo, the treefile's \
                  `repovars`, and DNF_VAR_* from the environment"
                .to_owned(),
        };
        unknown_var.get_or_insert(format!("{}: `{}` uses ${name}, which has no value ({why})", at(), k));
    }
    if !(url.starts_with("file://") || url.starts_with("http://") || url.starts_with("https://")) {
        bail!("{}: `{k}` URL `{url}` must be file://, http:// or https://", at());
    }
    Ok(url)
}

/// Set `baseurl` (first base URL, else mirrorlist or metalink) and check that gpg checks name a key.
fn finish_repo(r: &mut RepoConfig, path: &Path) -> Result<()> {
    r.baseurl = match (r.baseurls.first(), &r.mirrorlist, &r.metalink) {
        (Some(b), _, _) => b.clone(),
        (None, Some(m), _) | (None, None, Some(m)) => m.clone(),
        (None, None, None) => bail!(
            "{}: repository `{}` has no baseurl, mirrorlist or metalink",
            path.display(),
            r.id
        ),
    };
    if (r.gpgcheck || r.repo_gpgcheck) && r.gpgkeys.is_empty() {
        bail!(
            "{}: repository `{}` sets gpgcheck or repo_gpgcheck but names no gpgkey",
            path.display(),
            r.id
        );
    }
    Ok(())
}

/// A value holding several items, separated by whitespace or commas as dnf reads them.
fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|u| !u.is_empty())
}

/// dnf's variable expansion: `$name` and `${name}`, where a name is letters, digits and `_` (so
/// `$releasever_major` is not `$releasever`). Unknown names stay as written; the first is returned.
fn expand_vars(s: &str, vars: &RepoVars) -> (String, Option<String>) {
    let devrepo = vars.devrepo.to_string_lossy();
    let value = |name: &str| match name {
        "basearch" => Some(vars.basearch),
        "releasever" => vars.releasever,
        "devrepo" => Some(&*devrepo),
        other => vars.extra.get(other).map(String::as_str),
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
    let mut buf = vec![0u8; DIGEST_BUF];
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

/// Load every `gpgkey=` of `repo` (file://, http(s)://). A repository that asks for checks but yields
/// no usable key is an error, never a silent pass.
pub fn repo_keys(repo: &RepoConfig) -> Result<RepoKeys> {
    if repo.gpgkeys.is_empty() {
        return Err(InputError::new(format!(
            "{}: repository `{}` has gpgcheck or repo_gpgcheck set but no gpgkey",
            repo.source.display(),
            repo.id
        )));
    }
    let mut files = Vec::new();
    for url in &repo.gpgkeys {
        let bytes = read_url(url).with_context(|| format!("repository `{}`: fetching gpgkey {url}", repo.id))?;
        files.push((url.clone(), bytes));
    }
    RepoKeys::from_files(&repo.id, &files)
}

/// Fetch (or reuse from `cache_root`) the metadata of `repo`, verifying each file's checksum, and
/// `repomd.xml` itself against `keys` when the repository sets `repo_gpgcheck` and against the
/// metalink's digests when it has one. Mirrors are tried in order: one that fails, or serves a
/// `repomd.xml` the metalink does not vouch for, gives way to the next.
pub fn fetch_metadata(repo: &RepoConfig, keys: Option<&RepoKeys>, cache_root: &Path) -> Result<RepoMetadata> {
    let mut failures = Vec::new();
    for base in repo.mirrors() {
        match fetch_metadata_from(repo, base, keys, cache_root) {
            Ok(md) => return Ok(md),
            // A signature that does not verify is the input's fault, not the mirror's.
            Err(e) if fedostree_util::is_input_error(&e) => return Err(e),
            Err(e) => failures.push(format!("{base}: {e:#}")),
        }
    }
    if failures.is_empty() {
        bail!("repository `{}`: no mirror to fetch from", repo.id);
    }
    Err(anyhow!(
        "repository `{}`: no mirror served its metadata:\n  {}",
        repo.id,
        failures.join("\n  ")
    ))
}

fn fetch_metadata_from(
    repo: &RepoConfig,
    base: &str,
    keys: Option<&RepoKeys>,
    cache_root: &Path,
) -> Result<RepoMetadata> {
    let url = format!("{base}/repodata/repomd.xml");
    let repomd = read_url(&url).with_context(|| format!("repository `{}`", repo.id))?;
    if !repo.repomd_hashes.is_empty() {
        let vouched = repo
            .repomd_hashes
            .iter()
            .any(|(kind, hex)| hex_digest(kind, &repomd).is_ok_and(|got| got == *hex));
        if !vouched {
            bail!("{url} does not match the digests of the metalink (a stale or tampered mirror)");
        }
    }
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
                let msg = format!("cached {} is corrupt: evicting and fetching again", local.display());
                fedostree_util::events::notice(fedostree_util::events::Stage::Compose, msg);
                fs_err::remove_file(&local)?;
            }
        }
        if !local.exists() {
            let data = read_url(&format!("{base}/{}", e.href))?;
            let got = hex_digest(&e.kind, &data)?;
            if got != e.checksum {
                fedostree_util::bail_input!(
                    "{base}/{}: {} checksum mismatch: repomd.xml says {}, file has {got}",
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
            extra: &BTreeMap::new(),
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
    fn repovars_expand_like_dnfs_own() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("m.repo"),
            "[m]\nbaseurl=file://${mirror_root}/$stream/$basearch\n",
        )
        .unwrap();
        let extra = BTreeMap::from([
            ("mirror_root".to_owned(), "/srv/m".to_owned()),
            ("stream".to_owned(), "testing".to_owned()),
        ]);
        let vars = RepoVars {
            basearch: "aarch64",
            releasever: None,
            devrepo: Path::new("/d"),
            extra: &extra,
        };
        let r = load_repos(d.path(), &["m".into()], &vars).unwrap();
        assert_eq!(r[0].baseurls, ["file:///srv/m/testing/aarch64"]);
        let none = BTreeMap::new();
        let e = load_repos(d.path(), &["m".into()], &RepoVars { extra: &none, ..vars })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("uses $mirror_root, which has no value") && e.contains("repovars"),
            "{e}"
        );
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
            extra: &BTreeMap::new(),
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
    fn several_baseurls_and_dnf_options() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("m.repo"),
            "[m]\nbaseurl=http://a.example/r/$basearch/\n  http://b.example/r/$basearch, file:///c\nexclude=kernel* debug?nfo\nincludepkgs=kernel-core,bash,[a-c]x\npriority=10\ncost=500\nskip_if_unavailable=1\nmodule_hotfixes=1\n\n[ml]\nmetalink=https://mirrors.example/metalink?repo=fedora-$releasever&arch=$basearch\n",
        )
        .unwrap();
        let vars = RepoVars {
            basearch: "x86_64",
            releasever: Some("41"),
            devrepo: Path::new("/d"),
            extra: &BTreeMap::new(),
        };
        let r = load_repos(d.path(), &["m".into(), "ml".into()], &vars).unwrap();
        assert_eq!(
            r[0].mirrors(),
            ["http://a.example/r/x86_64", "http://b.example/r/x86_64", "file:///c"]
        );
        assert_eq!(r[0].baseurl, "http://a.example/r/x86_64");
        assert_eq!((r[0].priority, r[0].cost, r[0].skip_if_unavailable), (10, 500, true));
        assert!(!r[0].offers("kernel-core"), "exclude wins over includepkgs");
        assert!(!r[0].offers("debuginfo") && r[0].offers("bash") && r[0].offers("bx") && !r[0].offers("dx"));
        assert!(!r[0].offers("zsh"), "includepkgs limits what the repository offers");
        assert_eq!(
            r[1].metalink.as_deref(),
            Some("https://mirrors.example/metalink?repo=fedora-41&arch=x86_64")
        );
        assert!(r[1].mirrors().is_empty() && r[1].offers("zsh"));
        std::fs::write(d.path().join("n.repo"), "[n]\nname=no url\n").unwrap();
        let e = load_repos(d.path(), &["n".into()], &vars).unwrap_err().to_string();
        assert!(e.contains("has no baseurl, mirrorlist or metalink"), "{e}");
    }

    #[test]
    fn metalinks_give_mirrors_by_preference_and_digests() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<metalink version="3.0" xmlns="http://www.metalinker.org/" type="dynamic">
 <files>
  <file name="repomd.xml">
   <verification>
    <hash type="md5">00</hash>
    <hash type="sha256">ABCDEF</hash>
   </verification>
   <resources maxconnections="1">
    <url protocol="https" type="https" location="US" preference="90">https://b.example/os/repodata/repomd.xml</url>
    <url protocol="rsync" type="rsync" preference="100">rsync://r.example/os/repodata/repomd.xml</url>
    <url protocol="https" type="https" location="DE" preference="100">https://a.example/os/repodata/repomd.xml</url>
   </resources>
  </file>
 </files>
</metalink>"#;
        let m = parse_metalink(xml, "m").unwrap();
        assert_eq!(m.mirrors, ["https://a.example/os", "https://b.example/os"]);
        assert_eq!(m.hashes, [("sha256".to_owned(), "abcdef".to_owned())]);
        assert!(parse_metalink("<metalink/>", "m").is_err());
    }

    #[test]
    fn dnf_variable_forms() {
        let vars = RepoVars {
            basearch: "aarch64",
            releasever: Some("41"),
            devrepo: Path::new("/d"),
            extra: &BTreeMap::new(),
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
