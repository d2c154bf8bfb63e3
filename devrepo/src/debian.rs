//! Debian inputs of the dev repo: resolving packages with apt-cache, fetching .debs into
//! `$STATE/cache/debs/<debarch>/` (verified, then reused), extracting them, and mapping their
//! versions and paths to RPM conventions.

use anyhow::{anyhow, bail, Context, Result};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::state::StateDir;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A .deb present in the cache, as apt's metadata describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Deb {
    pub package: String,
    pub version: String,
    pub sha256: String,
    pub path: PathBuf,
}

/// A Debian version split the RPM way: `[epoch:]upstream[-revision]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DebVersion {
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
}

pub(crate) fn split_version(v: &str) -> Result<DebVersion> {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (
            Some(
                e.parse()
                    .with_context(|| format!("bad epoch in Debian version {v:?}"))?,
            ),
            r,
        ),
        None => (None, v),
    };
    let (version, release) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, r),
        // Native packages have no revision; "0" keeps RPM's release non-empty.
        None => (rest, "0"),
    };
    if version.contains('-') {
        bail!("Debian version {v:?}: upstream part contains '-', which RPM versions cannot hold");
    }
    Ok(DebVersion {
        epoch,
        version: version.to_string(),
        release: release.to_string(),
    })
}

/// apt names a foreign-architecture package `NAME:ARCH`; the native one works the same way.
/// `Architecture: all` packages (the policy's source and headers) have no qualified name: apt says
/// "Unable to locate" for `NAME:ARCH` of a foreign architecture.
fn qualified(name: &str, debarch: &str) -> String {
    if POLICY_DEBS.contains(&name) {
        return name.to_string();
    }
    format!("{name}:{debarch}")
}

/// The Debian packages one architecture's dev repo is made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ArchDebs {
    pub kernel: Deb,
    pub busybox: Deb,
    /// The reference policy's source and headers (`Architecture: all`), for fedostree-selinux-container.
    pub policy_src: Deb,
    pub policy_dev: Deb,
}

/// The Debian packages fedostree-selinux-container is built from.
const POLICY_DEBS: [&str; 2] = ["selinux-policy-src", "selinux-policy-dev"];

/// `$STATE/cache/debs/resolved.json`: the last resolution and the apt lists it was made from.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Resolved {
    lists: String,
    arches: BTreeMap<String, ArchDebs>,
}

/// The cloud kernel, busybox-static and the policy source and headers for each of `debarches`,
/// present in the cache. apt-cache
/// costs over a second per call here (no pkgcache.bin), so it is asked twice for all arches
/// together, and not at all while apt's lists are unchanged since the last resolution.
pub(crate) fn resolve(state: &StateDir, debarches: &[&str]) -> Result<BTreeMap<String, ArchDebs>> {
    fs_err::create_dir_all(state.deb_cache())?;
    let memo = state.deb_cache().join("resolved.json");
    let stamp = crate::debian_index::lists_stamp(Path::new(crate::debian_index::APT_LISTS))?;
    let old: Resolved = match fs_err::read(&memo) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(_) => Resolved::default(),
    };
    if old.lists == stamp {
        if let Some(hit) = memo_hit(state, &old, debarches) {
            return Ok(hit);
        }
    }
    let kernels = cloud_kernel_packages(debarches)?;
    let mut queries: Vec<(String, &str)> = Vec::new();
    for a in debarches {
        queries.push((kernels[*a].clone(), a));
        queries.push(("busybox-static".to_string(), a));
        queries.extend(POLICY_DEBS.map(|n| (n.to_string(), *a)));
    }
    let mut qs: Vec<String> = queries.iter().map(|(n, a)| qualified(n, a)).collect();
    // Arch-independent packages are asked once for all arches.
    qs.sort();
    qs.dedup();
    let show = Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(&qs)
        .run_get_string()?;
    let mut out = BTreeMap::new();
    for a in debarches {
        let kernel = fetch(state, a, &kernels[*a], &show)?;
        let busybox = fetch(state, a, "busybox-static", &show)?;
        let [policy_src, policy_dev] = POLICY_DEBS.map(|n| fetch(state, a, n, &show));
        out.insert(
            a.to_string(),
            ArchDebs {
                kernel,
                busybox,
                policy_src: policy_src?,
                policy_dev: policy_dev?,
            },
        );
    }
    let mut all = if old.lists == stamp {
        old.arches
    } else {
        BTreeMap::new()
    };
    all.extend(out.clone());
    let text = serde_json::to_vec_pretty(&Resolved {
        lists: stamp,
        arches: all,
    })?;
    fs_err::write(&memo, text).with_context(|| format!("writing {}", memo.display()))?;
    Ok(out)
}

/// The memo's packages for every one of `debarches`, when all of them are still in the cache.
fn memo_hit(state: &StateDir, old: &Resolved, debarches: &[&str]) -> Option<BTreeMap<String, ArchDebs>> {
    debarches
        .iter()
        .map(|a| {
            // The memo may have been written through another state dir's link to a shared
            // cache: each file is looked up in this state's cache, by its place inside it.
            let mut d = old.arches.get(*a)?.clone();
            let mut all = [&mut d.kernel, &mut d.busybox, &mut d.policy_src, &mut d.policy_dev];
            for deb in all.iter_mut() {
                let (dir, file) = (deb.path.parent()?.file_name()?, deb.path.file_name()?);
                deb.path = state.deb_cache().join(dir).join(file);
            }
            all.iter().all(|deb| deb.path.exists()).then(|| (a.to_string(), d))
        })
        .collect()
}

/// The versioned cloud kernel package each metapackage points at, e.g.
/// `linux-image-cloud-amd64` → `linux-image-6.1.0-56-cloud-amd64`.
fn cloud_kernel_packages(debarches: &[&str]) -> Result<BTreeMap<String, String>> {
    let metas: Vec<String> = debarches
        .iter()
        .map(|a| qualified(&format!("linux-image-cloud-{a}"), a))
        .collect();
    let out = Command::new("apt-cache").arg("depends").args(&metas).run_get_string()?;
    let mut found = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if !line.starts_with(' ') {
            let name = line.split(':').next().unwrap_or(line);
            current = name.strip_prefix("linux-image-cloud-").map(str::to_string);
        } else if let (Some(a), Some(dep)) = (&current, line.trim().strip_prefix("Depends: ")) {
            let dep = dep.split(':').next().unwrap_or(dep);
            if dep.starts_with("linux-image-") && !found.contains_key(a) {
                found.insert(a.clone(), dep.to_string());
            }
        }
    }
    for a in debarches {
        if !found.contains_key(*a) {
            bail!("`apt-cache depends linux-image-cloud-{a}:{a}` names no linux-image-* package:\n{out}");
        }
    }
    Ok(found)
}

/// NAME for `debarch` as described in `show` (apt-cache show output), downloaded into the cache
/// unless already there.
fn fetch(state: &StateDir, debarch: &str, name: &str, show: &str) -> Result<Deb> {
    let q = qualified(name, debarch);
    let record = show
        .split("\n\n")
        .find(|r| {
            let has = |f: &str, v: &str| {
                r.lines()
                    .any(|l| l.strip_prefix(f).and_then(|x| x.strip_prefix(": ")) == Some(v))
            };
            has("Package", name) && (has("Architecture", debarch) || has("Architecture", "all"))
        })
        .ok_or_else(|| anyhow!("apt-cache show has no record for {q}"))?;
    let field = |f: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix(f).and_then(|r| r.strip_prefix(": ")))
            .map(str::to_string)
            .ok_or_else(|| anyhow!("`apt-cache show {q}` has no {f} field"))
    };
    let version = field("Version")?;
    let sha256 = field("SHA256")?;
    let filename = field("Filename")?;
    let base = Path::new(&filename).file_name().context("empty Filename")?;
    let dir = state.deb_cache().join(debarch);
    let path = dir.join(base);
    let deb = Deb {
        package: name.to_string(),
        version,
        sha256,
        path,
    };
    if deb.path.exists() {
        return Ok(deb);
    }
    fs_err::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::tempdir_in(&dir)?;
    fedostree_util::events::step(
        fedostree_util::events::Stage::Devrepo,
        format!("downloading {q}={}", deb.version),
        None,
    );
    Command::new("apt-get")
        // Our cache is not readable by apt's _apt sandbox user; without this apt warns on every download.
        .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
        .arg(format!("{q}={}", deb.version))
        .current_dir(tmp.path())
        .run()?;
    let got = fs_err::read_dir(tmp.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| anyhow!("apt-get download {q} produced no .deb"))?;
    let actual = sha256_file(&got)?;
    if actual != deb.sha256 {
        bail!("{}: sha256 {actual} does not match apt's {}", got.display(), deb.sha256);
    }
    fs_err::rename(&got, &deb.path).with_context(|| format!("storing {}", deb.path.display()))?;
    Ok(deb)
}

pub(crate) fn sha256_file(p: &Path) -> Result<String> {
    let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    Ok(fedostree_compose::repo::hex_digest_reader("sha256", f, None)?.0)
}

/// Unpack a .deb's data into `dest` (created).
pub(crate) fn extract(deb: &Deb, dest: &Path) -> Result<()> {
    fs_err::create_dir_all(dest)?;
    Command::new("dpkg-deb").arg("-x").arg(&deb.path).arg(dest).run()
}

/// Debian's split-usr path to Fedora's merged one: `/bin/x` → `/usr/bin/x`, `/lib/...` → `/usr/lib/...`.
pub(crate) fn usr_merge(path: &str) -> String {
    for top in ["/bin/", "/sbin/", "/lib/", "/lib64/"] {
        if path.starts_with(top) {
            return format!("/usr{path}");
        }
    }
    path.to_string()
}

/// What of a Debian package's /usr/share an RPM keeps: man pages, and the copyright file moved
/// from /usr/share/doc/<debname>/ to /usr/share/doc/<rpmname>/. Everything else there (changelogs,
/// bug-reporting hooks, lintian overrides, initramfs-tools hooks) is Debian plumbing.
pub(crate) fn keep_share(path: &str, deb_name: &str, rpm_name: &str) -> Option<String> {
    if path == format!("/usr/share/doc/{deb_name}/copyright") {
        return Some(format!("/usr/share/doc/{rpm_name}/copyright"));
    }
    if path.starts_with("/usr/share/man/") {
        return Some(path.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_split_the_rpm_way() {
        let v = split_version("1:1.35.0-4+deb12u1+b1").unwrap();
        assert_eq!(
            v,
            DebVersion {
                epoch: Some(1),
                version: "1.35.0".into(),
                release: "4+deb12u1+b1".into()
            }
        );
        let v = split_version("6.1.192-2").unwrap();
        assert_eq!(
            (v.epoch, v.version.as_str(), v.release.as_str()),
            (None, "6.1.192", "2")
        );
        assert_eq!(split_version("2.0").unwrap().release, "0");
    }

    #[test]
    fn paths_are_usr_merged() {
        assert_eq!(usr_merge("/bin/busybox"), "/usr/bin/busybox");
        assert_eq!(usr_merge("/lib/modules/x"), "/usr/lib/modules/x");
        assert_eq!(usr_merge("/usr/share/x"), "/usr/share/x");
        assert_eq!(usr_merge("/library"), "/library");
    }
}
