//! One Debian binary package as one RPM: names kept, architectures and versions mapped
//! ([`version`]), relations translated ([`relations`]), the payload moved to merged /usr with modes,
//! owners, symlinks, hardlinks and capabilities kept and conffiles marked `%config(noreplace)`,
//! and the maintainer scripts' effects carried over as files ([`scripts`]).

pub(crate) mod relations;
pub(crate) mod scripts;
pub(crate) mod version;

use crate::spec::{Attrs, Content, PkgSpec};
use anyhow::{anyhow, bail, Context, Result};
use debian_control::lossy::apt::Package;
use scripts::ScriptFacts;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// The package that owns `/` in Debian; it gets the merged-/usr compat symlinks.
pub(crate) const BASE_PACKAGE: &str = "base-files";

/// RPM architecture of a Debian one.
pub(crate) fn rpm_arch(debarch: &str) -> Result<&'static str> {
    Ok(match debarch {
        "all" => "noarch",
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        a => bail!("no RPM architecture for Debian architecture {a:?}"),
    })
}

/// What the control archive holds that conversion needs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ControlFacts {
    pub conffiles: Vec<String>,
    pub scripts: ScriptFacts,
}

/// Run `dpkg-deb FLAG deb` and hand its tar stream to `f`.
fn with_tar<T>(deb: &Path, flag: &str, f: impl FnOnce(&mut tar::Archive<&mut dyn Read>) -> Result<T>) -> Result<T> {
    let mut child = Command::new("dpkg-deb")
        .arg(flag)
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let mut out = child.stdout.take().expect("piped");
    let mut reader: &mut dyn Read = &mut out;
    let r = f(&mut tar::Archive::new(&mut reader));
    // Drain so dpkg-deb can finish even when `f` stopped early.
    let _ = std::io::copy(&mut out, &mut std::io::sink());
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!(
            "dpkg-deb {flag} {}: {}",
            deb.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    r
}

/// Conffiles and maintainer-script facts of a .deb.
pub(crate) fn read_control(deb: &Path) -> Result<ControlFacts> {
    with_tar(deb, "--ctrl-tarfile", |ar| {
        let mut facts = ControlFacts::default();
        for e in ar.entries()? {
            let mut e = e?;
            let name = e.path()?.to_string_lossy().trim_start_matches("./").to_string();
            let mut text = String::new();
            if !matches!(name.as_str(), "conffiles" | "preinst" | "postinst" | "prerm" | "postrm") {
                continue;
            }
            e.read_to_string(&mut text)
                .with_context(|| format!("{}: control file {name} is not text", deb.display()))?;
            if name == "conffiles" {
                // Lines are `PATH` or `remove-on-upgrade PATH`.
                facts.conffiles = text
                    .lines()
                    .filter_map(|l| l.split_whitespace().last())
                    .map(usr_merge)
                    .collect();
            } else {
                scripts::read_script(&name, &text, &mut facts.scripts);
            }
        }
        Ok(facts)
    })
}

/// Debian's split-/usr path to the merged one.
pub(crate) fn usr_merge(path: &str) -> String {
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        if path == top || path.starts_with(&format!("{top}/")) {
            return format!("/usr{path}");
        }
    }
    path.to_string()
}

/// Where a payload path goes in the RPM: merged /usr, and the kernel's /boot files next to its
/// modules the way Fedora's kernel packages keep them. None: not carried (other /boot content).
fn map_path(path: &str) -> Option<String> {
    if let Some(f) = path.strip_prefix("/boot/") {
        for (prefix, name) in [
            ("vmlinuz-", "vmlinuz"),
            ("config-", "config"),
            ("System.map-", "System.map"),
        ] {
            if let Some(kver) = f.strip_prefix(prefix) {
                return Some(format!("/usr/lib/modules/{kver}/{name}"));
            }
        }
        return None;
    }
    Some(usr_merge(path))
}

/// Whether a payload entry moved by the usr-merge (`orig` → `path`) keeps providing its old path, as
/// Fedora's packages do since the UsrMove (bash provides `/bin/sh` and `/bin/bash`): everything of
/// `/bin` and `/sbin`, and what lies directly in `/lib` and `/lib64` (the dynamic loader). Not the
/// deeper `/lib` trees (modules, unit files, udev rules): nothing requires those by path, and they
/// would add thousands of provides.
fn provides_old_path(orig: &str, path: &str) -> bool {
    if orig == path {
        return false;
    }
    let moved = |top: &str| orig.strip_prefix(top).filter(|rest| !rest.is_empty());
    match (moved("/bin/").or(moved("/sbin/")), moved("/lib/").or(moved("/lib64/"))) {
        (Some(_), _) => true,
        (None, Some(rest)) => !rest.contains('/'),
        (None, None) => false,
    }
}

/// `a/./b/../c` → `a/c` for absolute paths.
fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// The relative path from directory `from` to `to` (both absolute, normalized).
fn relative(from: &str, to: &str) -> String {
    let f: Vec<&str> = from.split('/').filter(|c| !c.is_empty()).collect();
    let t: Vec<&str> = to.split('/').filter(|c| !c.is_empty()).collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; f.len() - common];
    parts.extend(&t[common..]);
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// A symlink's target once both it and its target may have moved under /usr: a relative target is
/// resolved from the link's old place and made relative to its new one.
fn retarget(old_link: &str, new_link: &str, target: &str) -> String {
    if target.starts_with('/') {
        return usr_merge(target);
    }
    let parent = |p: &str| {
        Path::new(p)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("/")
            .to_string()
    };
    let resolved = normalize(&format!("{}/{target}", parent(old_link)));
    let merged = usr_merge(&resolved);
    if old_link == new_link && merged == resolved {
        return target.to_string();
    }
    relative(&parent(new_link), &merged)
}

/// What conversion needs besides the .deb: the facts of its control archive and the symlinks the
/// set's alternatives assign to it.
pub(crate) struct ConvertInput<'a> {
    pub pkg: &'a Package,
    pub deb: &'a Path,
    pub control: &'a ControlFacts,
    /// (link, target) pairs: alternatives this package's candidate won.
    pub alternatives: &'a [(String, String)],
    /// Names some package of the set provides without a version (see [`conflicts`]).
    pub unversioned_provides: &'a BTreeSet<String>,
}

/// Conflicts and Breaks as RPM Conflicts. In Debian a versioned conflict never matches an
/// unversioned Provides; in RPM it does. So a versioned conflict on a name that a package of the
/// set provides unversioned is left out: within the set it could only ever match such a provider,
/// which Debian says it does not (the closure check has proved the set conflict-free).
pub(crate) fn conflicts(p: &Package, unversioned_provides: &BTreeSet<String>) -> Vec<String> {
    let kept = p
        .conflicts
        .iter()
        .chain(p.breaks.iter())
        .flat_map(|r| r.0.iter())
        .flatten()
        .filter(|r| r.version.is_none() || !unversioned_provides.contains(&r.name));
    relations::deps(kept)
}

/// Names that packages of `set` provide without a version.
pub(crate) fn unversioned_provides<'a>(set: impl IntoIterator<Item = &'a Package>) -> BTreeSet<String> {
    set.into_iter()
        .flat_map(|p| p.provides.iter().flat_map(|r| r.0.iter()).flatten())
        .filter(|r| r.version.is_none())
        .map(|r| r.name.clone())
        .collect()
}

fn owner(name: Option<&str>) -> Option<String> {
    name.filter(|n| !n.is_empty() && *n != "root").map(str::to_string)
}

/// The RPM of one Debian package.
pub(crate) fn convert(input: &ConvertInput) -> Result<PkgSpec> {
    let p = input.pkg;
    let evr = version::rpm_evr(&p.version);
    let desc = p.description.clone().unwrap_or_default();
    let (summary, body) = desc.split_once('\n').unwrap_or((desc.as_str(), ""));
    let mut description = body
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .map(|l| if l == "." { "" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    let s = &input.control.scripts;
    if !s.dropped.is_empty() {
        description.push_str("\n\nDebian maintainer-script commands not carried over by fedostree's converter:\n");
        for d in &s.dropped {
            description.push_str(&format!("  {d}\n"));
        }
    }
    let mut spec = PkgSpec {
        name: p.name.clone(),
        epoch: evr.epoch,
        version: evr.version.clone(),
        release: evr.release.clone(),
        arch: rpm_arch(&p.architecture)?.to_string(),
        summary: if summary.is_empty() {
            p.name.clone()
        } else {
            summary.to_string()
        },
        license: format!("see /usr/share/doc/{}/copyright", p.name),
        description,
        provides: relations::flat([&p.provides]),
        requires: relations::requires([&p.pre_depends, &p.depends]),
        conflicts: conflicts(p, input.unversioned_provides),
        ..Default::default()
    };
    read_payload(input.deb, &mut spec, input.control)?;
    add_script_files(&mut spec, s)?;
    if let Some(pb) = &s.selinux_policy {
        spec.post = Some(policy_post(&spec, pb)?);
    }
    for (link, target) in input.alternatives {
        spec.symlink(link, target)
            .with_context(|| format!("{}: alternative {link}", p.name))?;
    }
    if p.name == BASE_PACKAGE {
        for d in ["bin", "sbin", "lib", "lib64"] {
            if !spec.entries.contains_key(&format!("/{d}")) {
                spec.symlink(&format!("/{d}"), &format!("usr/{d}"))?;
            }
        }
    }
    Ok(spec)
}

/// The payload of the .deb, mapped; a path that two entries map to is an error naming it.
fn read_payload(deb: &Path, spec: &mut PkgSpec, control: &ControlFacts) -> Result<()> {
    let name = spec.name.clone();
    with_tar(deb, "--fsys-tarfile", |ar| {
        for e in ar.entries()? {
            let mut e = e?;
            let raw = e.path()?.to_string_lossy().into_owned();
            let orig = normalize(&raw);
            if orig == "/" {
                continue;
            }
            let Some(path) = map_path(&orig) else {
                tracing::debug!("{name}: {orig} not carried");
                continue;
            };
            let h = e.header();
            let mode = (h.mode()? & 0o7777) as u16;
            let attrs = entry_attrs(h, &path, control);
            let kind = h.entry_type();
            if kind != tar::EntryType::Directory && provides_old_path(&orig, &path) {
                spec.provides.push(orig.clone());
            }
            let ctx = || format!("{name}: {orig}");
            match kind {
                tar::EntryType::Directory => {
                    // /lib/x and /usr/lib/x are one directory after the merge.
                    if !matches!(spec.entries.get(&path).map(|e| &e.content), Some(Content::Dir)) {
                        spec.dir(&path, mode).with_context(ctx)?;
                        spec.entries.get_mut(&path).expect("inserted").attrs = attrs;
                    }
                }
                tar::EntryType::Regular => {
                    let mut data = Vec::with_capacity(e.size() as usize);
                    e.read_to_end(&mut data).with_context(ctx)?;
                    spec.bytes(&path, data, mode, attrs).with_context(ctx)?;
                }
                tar::EntryType::Symlink => {
                    let target = e
                        .link_name()?
                        .ok_or_else(|| anyhow!("{name}: symlink {orig} has no target"))?
                        .to_string_lossy()
                        .into_owned();
                    spec.symlink(&path, &retarget(&orig, &path, &target))
                        .with_context(ctx)?;
                }
                tar::EntryType::Link => {
                    let target = e
                        .link_name()?
                        .ok_or_else(|| anyhow!("{name}: hardlink {orig} has no target"))?
                        .to_string_lossy()
                        .into_owned();
                    add_hardlink(spec, &name, &orig, &path, &target)?;
                }
                other => bail!("{name}: {orig} is a {other:?}, which the converter does not carry"),
            }
        }
        Ok(())
    })
}

/// What the RPM records of payload entry `path` beyond its mode: owners, `%config`, capabilities.
fn entry_attrs(h: &tar::Header, path: &str, control: &ControlFacts) -> Attrs {
    Attrs {
        user: owner(h.username().ok().flatten()),
        group: owner(h.groupname().ok().flatten()),
        config: control.conffiles.iter().any(|c| c == path),
        caps: control
            .scripts
            .caps
            .iter()
            .find(|(p, _)| usr_merge(p) == path)
            .map(|(_, c)| c.clone()),
        hardlink: None,
    }
}

/// Add hardlink `path` (`orig` in the .deb) to `target`, a regular file added before it; both then
/// share one hardlink identity.
fn add_hardlink(spec: &mut PkgSpec, name: &str, orig: &str, path: &str, target: &str) -> Result<()> {
    let ctx = || format!("{name}: {orig}");
    let tpath = map_path(&normalize(target))
        .ok_or_else(|| anyhow!("{name}: hardlink {orig} to {target}, which is not carried"))?;
    let first = spec
        .entries
        .get_mut(&tpath)
        .ok_or_else(|| anyhow!("{name}: hardlink {orig} before its target {target}"))?;
    let Content::Bytes(data) = &first.content else {
        bail!("{name}: hardlink {orig} to {target}, which is not a regular file");
    };
    let data = data.clone();
    first.attrs.hardlink = Some(tpath.clone());
    let mode = first.mode;
    let attrs = Attrs {
        hardlink: Some(tpath.clone()),
        ..first.attrs.clone()
    };
    spec.bytes(path, data, mode, attrs).with_context(ctx)?;
    Ok(())
}

/// The `%post` that builds a policy package's policy from the modules its payload lists.
fn policy_post(spec: &PkgSpec, pb: &scripts::PolicyBuild) -> Result<String> {
    let list = format!("/usr/share/selinux/{}/.modules", pb.flavour);
    let modules = match spec.entries.get(&list).map(|e| &e.content) {
        // A converted payload is read into memory (`read_payload`): never a file path.
        Some(Content::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => bail!(
            "{}: its postinst builds a policy from {list}, which the package does not ship",
            spec.name
        ),
    };
    Ok(pb.post(&spec.name, &modules))
}

/// sysusers.d and preset files for what the maintainer scripts did.
fn add_script_files(spec: &mut PkgSpec, s: &ScriptFacts) -> Result<()> {
    let name = spec.name.clone();
    let enable: Vec<String> = s.enable.iter().map(|u| format!("enable {u}")).collect();
    for (path, lines) in [
        (format!("/usr/lib/sysusers.d/50-deb-{name}.conf"), &s.sysusers),
        (format!("/usr/lib/systemd/system-preset/50-deb-{name}.preset"), &enable),
    ] {
        if !lines.is_empty() {
            let text = format!(
                "# From {name}'s Debian maintainer scripts (fedostree devrepo).\n{}\n",
                lines.join("\n")
            );
            spec.bytes(&path, text.into_bytes(), 0o644, Attrs::default())?;
        }
    }
    Ok(())
}

/// The alternatives of a whole set: for each name, the highest-priority candidate whose package
/// is in the set wins; returns, per package, the (link, target) symlinks it ships.
pub(crate) fn choose_alternatives(facts: &BTreeMap<String, ControlFacts>) -> BTreeMap<String, Vec<(String, String)>> {
    let mut best: BTreeMap<&str, (&str, &scripts::Alternative)> = BTreeMap::new();
    for (pkg, f) in facts {
        for a in &f.scripts.alternatives {
            match best.get(a.name.as_str()) {
                Some((_, b)) if b.priority >= a.priority => {}
                _ => {
                    best.insert(a.name.as_str(), (pkg.as_str(), a));
                }
            }
        }
    }
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (pkg, a) in best.into_values() {
        let links = out.entry(pkg.to_string()).or_default();
        links.push((usr_merge(&a.link), usr_merge(&a.path)));
        for (l, p) in &a.slaves {
            links.push((usr_merge(l), usr_merge(p)));
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_entries_keep_providing_their_old_paths() {
        let provides = |orig: &str| provides_old_path(orig, &map_path(orig).unwrap());
        for old in [
            "/bin/sh",
            "/bin/bash",
            "/sbin/ldconfig",
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/ld-linux-aarch64.so.1",
        ] {
            assert!(provides(old), "{old}");
        }
        for not in [
            "/usr/bin/sh",
            "/lib/systemd/system/x.service",
            "/lib/modules/6.1/kernel/x.ko",
            "/etc/x",
            "/bin/",
        ] {
            assert!(!provides(not), "{not}");
        }
    }

    #[test]
    fn paths_move_to_merged_usr_and_kernel_files_beside_modules() {
        assert_eq!(map_path("/bin/sh").unwrap(), "/usr/bin/sh");
        assert_eq!(map_path("/lib").unwrap(), "/usr/lib");
        assert_eq!(
            map_path("/lib64/ld-linux-x86-64.so.2").unwrap(),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(map_path("/library").unwrap(), "/library");
        assert_eq!(
            map_path("/boot/vmlinuz-6.1.0-1-cloud-amd64").unwrap(),
            "/usr/lib/modules/6.1.0-1-cloud-amd64/vmlinuz"
        );
        assert_eq!(map_path("/boot/grub/x"), None);
    }

    #[test]
    fn moved_symlinks_keep_pointing_at_the_same_file() {
        // /bin/x -> ../usr/bin/y: from /usr/bin it must be plain `y`.
        assert_eq!(retarget("/bin/x", "/usr/bin/x", "../usr/bin/y"), "y");
        // /lib/x86_64-linux-gnu/libfoo.so -> libfoo.so.1 stays in one directory.
        assert_eq!(
            retarget("/lib/a/libfoo.so", "/usr/lib/a/libfoo.so", "libfoo.so.1"),
            "libfoo.so.1"
        );
        // /usr/lib/a/libz.so -> ../../../lib/a/libz.so.1 now points inside /usr.
        assert_eq!(
            retarget("/usr/lib/a/libz.so", "/usr/lib/a/libz.so", "../../../lib/a/libz.so.1"),
            "libz.so.1"
        );
        assert_eq!(retarget("/sbin/x", "/usr/sbin/x", "/bin/y"), "/usr/bin/y");
        assert_eq!(relative("/usr/sbin", "/usr/bin/y"), "../bin/y");
    }
}
