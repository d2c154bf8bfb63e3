//! File conflicts between the packages of one compose, refused as rpm refuses them (lib/rpmfi.c's
//! `rpmfilesCompare`, applied by the transaction to every path two packages ship): the same path with
//! a different type, content, mode, owner or symlink target is an input error naming both packages,
//! the path and what differs, every conflict listed. Allowed, as rpm allows them: identical files,
//! directories, `%ghost` entries (never unpacked), documentation left out (`documentation: false`),
//! and files of different multilib colours (the ELF64 one wins, as on a 64-bit rpm transaction).
//!
//! Paths are compared where they land in the tree: `/bin`, `/sbin`, `/lib`, `/lib64` are `/usr`'s
//! (usr-merge), `/etc` is `/usr/etc`, and a directory symlink a package ships is followed, as rpm's
//! fingerprints follow the installed tree's. `remove-from-packages` is applied first: it is the
//! treefile's way out of a conflict, as in rpm-ostree.
//!
//! One deviation from rpm: two directories never conflict, whatever their modes (rpm compares a
//! directory's mode too). The last package merged sets the mode, as rpm-ostree's checkout union does.

use crate::import::{Entry, Unpacked};
use anyhow::Result;
use fedostree_util::bail_input;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// One package as it would be merged: its entries and the directory holding their content.
pub struct Shipped<'a> {
    pub unpacked: &'a Unpacked,
    pub files: &'a Path,
}

/// rpm's preferred colour on a 64-bit transaction (`%_prefer_color` 2: ELF64).
const PREFERRED_COLOR: u32 = 2;

/// Where the compose puts these directories (postprocess's usr-merge and `/etc` move), whatever the
/// packages ship.
const TREE_LINKS: [(&str, &str); 5] = [
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
    ("etc", "usr/etc"),
];

/// Check `packages` (in merge order); returns, per package, the paths the merge must leave out: a
/// file of the colour that loses to another package's.
pub fn check(packages: &[Shipped]) -> Result<Vec<BTreeSet<PathBuf>>> {
    let links = directory_links(packages);
    let mut claims: BTreeMap<PathBuf, Vec<(usize, &Entry)>> = BTreeMap::new();
    for (i, p) in packages.iter().enumerate() {
        for e in &p.unpacked.entries {
            claims.entry(in_tree(e.path(), &links)).or_default().push((i, e));
        }
    }
    let owners: Vec<HashMap<&Path, (&str, &str)>> = packages
        .iter()
        .map(|p| {
            let o = &p.unpacked.package.owners;
            o.iter()
                .map(|(path, u, g)| (path.as_path(), (u.as_str(), g.as_str())))
                .collect()
        })
        .collect();
    let mut skip = vec![BTreeSet::new(); packages.len()];
    let mut conflicts = Vec::new();
    for (path, claimants) in claims.iter().filter(|(_, c)| c.len() > 1) {
        // Each claim is compared with what the tree would hold so far: the first claim, or the file
        // of the preferred colour that displaced it.
        let mut holder = claimants[0];
        for &other in &claimants[1..] {
            let [a, b] = [holder, other].map(|(i, e)| Side {
                package: &packages[i],
                entry: e,
                owner: owners[i].get(e.path()).copied().unwrap_or(("root", "root")),
            });
            let verdict = compare(&a, &b).map_err(|e| {
                let at = |s: &Side| format!("{}/{}", s.package.files.display(), s.entry.path().display());
                anyhow::Error::new(e).context(format!("comparing /{} of {} and {}", path.display(), at(&a), at(&b)))
            })?;
            match verdict {
                Verdict::Same => {}
                Verdict::ColourLoses(0) => {
                    skip[holder.0].insert(holder.1.path().to_path_buf());
                    holder = other;
                }
                Verdict::ColourLoses(_) => {
                    skip[other.0].insert(other.1.path().to_path_buf());
                }
                Verdict::Differ(what) => conflicts.push(describe(path, &a, &b, &what)),
            }
        }
    }
    if !conflicts.is_empty() {
        bail_input!(
            "{} file conflict(s) between packages (rpm refuses to install such a set; `remove-from-packages` in the treefile leaves a path out of one package):\n  {}",
            conflicts.len(),
            conflicts.join("\n  ")
        );
    }
    Ok(skip)
}

/// One package's claim on a path.
struct Side<'a> {
    package: &'a Shipped<'a>,
    entry: &'a Entry,
    owner: (&'a str, &'a str),
}

enum Verdict {
    Same,
    /// Both files are coloured, differently: the one of `[a, b]` at this index is left out.
    ColourLoses(usize),
    /// What differs, in words.
    Differ(Vec<String>),
}

/// An error is the machine's: the unpacked files could not be read.
fn compare(a: &Side, b: &Side) -> std::io::Result<Verdict> {
    let verdict = |what: Vec<String>| match what.is_empty() {
        true => Verdict::Same,
        false => Verdict::Differ(what),
    };
    Ok(match (a.entry, b.entry) {
        (Entry::Dir { .. }, Entry::Dir { .. }) => Verdict::Same,
        (Entry::Symlink { target: ta, .. }, Entry::Symlink { target: tb, .. }) => {
            let mut what = Vec::new();
            if ta != tb {
                what.push(format!("symlink target {} vs {}", ta.display(), tb.display()));
            }
            what.extend(owner_differs(a, b));
            verdict(what)
        }
        // rpm's handleColorConflict: two coloured files of different colours resolve when one has the
        // preferred colour; otherwise they are compared as any two files.
        (Entry::File { color: ca, .. }, Entry::File { color: cb, .. })
            if *ca != 0 && *cb != 0 && ca != cb && (ca | cb) & PREFERRED_COLOR != 0 =>
        {
            Verdict::ColourLoses(if ca & PREFERRED_COLOR != 0 { 1 } else { 0 })
        }
        (Entry::File { content: fa, .. }, Entry::File { content: fb, .. }) => {
            let mut what = files_differ(a.package.files.join(fa), b.package.files.join(fb))?;
            what.extend(owner_differs(a, b));
            verdict(what)
        }
        _ => Verdict::Differ(vec!["type".into()]),
    })
}

fn owner_differs(a: &Side, b: &Side) -> Option<String> {
    (a.owner != b.owner).then(|| format!("owner {}:{} vs {}:{}", a.owner.0, a.owner.1, b.owner.0, b.owner.1))
}

/// Mode and content of two unpacked regular files (the same inode is the same file).
fn files_differ(a: PathBuf, b: PathBuf) -> std::io::Result<Vec<String>> {
    let (ma, mb) = (std::fs::metadata(&a)?, std::fs::metadata(&b)?);
    if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
        return Ok(Vec::new());
    }
    let mut what = Vec::new();
    if ma.len() != mb.len() || std::fs::read(&a)? != std::fs::read(&b)? {
        what.push("content".to_owned());
    }
    let (pa, pb) = (ma.mode() & 0o7777, mb.mode() & 0o7777);
    if pa != pb {
        what.push(format!("mode {pa:04o} vs {pb:04o}"));
    }
    Ok(what)
}

/// `/usr/bin/who: busybox-1.35-1.x86_64 (symlink) and coreutils-9.1-1.x86_64 (file) differ in type`.
fn describe(path: &Path, a: &Side, b: &Side, what: &[String]) -> String {
    let side = |s: &Side| {
        let kind = match s.entry {
            Entry::Dir { .. } => "directory",
            Entry::Symlink { .. } => "symlink",
            Entry::File { .. } => "file",
        };
        let shipped = format!("/{}", s.entry.path().display());
        let as_shipped = match shipped == format!("/{}", path.display()) {
            true => String::new(),
            false => format!(" as {shipped}"),
        };
        format!("{} ({kind}{as_shipped})", s.package.unpacked.package.nevra)
    };
    format!(
        "/{}: {} and {} differ in {}",
        path.display(),
        side(a),
        side(b),
        what.join(", ")
    )
}

/// Directory symlinks the tree will have: the compose's own, then every symlink a package ships (a
/// link that is not a directory in the end resolves no path through it, so it does no harm here),
/// each where it lands (a link shipped as `/etc/x` is `/usr/etc/x`).
fn directory_links(packages: &[Shipped]) -> HashMap<PathBuf, PathBuf> {
    let tree_links: HashMap<PathBuf, PathBuf> = TREE_LINKS
        .iter()
        .map(|(l, t)| (PathBuf::from(l), PathBuf::from(t)))
        .collect();
    let mut links = tree_links.clone();
    for p in packages {
        for e in &p.unpacked.entries {
            if let Entry::Symlink { path, target } = e {
                let at = in_tree(path, &tree_links);
                let parent = at.parent().unwrap_or(Path::new(""));
                if let Some(resolved) = lexical(&parent.join(target)) {
                    links.entry(at).or_insert(resolved);
                }
            }
        }
    }
    links
}

/// `path` with every parent directory that is a link in `links` followed (the last component is
/// the entry itself and is not); a chain longer than the kernel's 40 links is left as it is.
fn in_tree(path: &Path, links: &HashMap<PathBuf, PathBuf>) -> PathBuf {
    let mut current = path.to_path_buf();
    'follow: for _ in 0..40 {
        let mut prefix = PathBuf::new();
        let components: Vec<_> = current.components().collect();
        for (n, c) in components.iter().enumerate().take(components.len().saturating_sub(1)) {
            prefix.push(c);
            if let Some(target) = links.get(&prefix) {
                let rest: PathBuf = components[n + 1..].iter().collect();
                match lexical(&target.join(rest)) {
                    Some(next) if next != current => {
                        current = next;
                        continue 'follow;
                    }
                    _ => break 'follow,
                }
            }
        }
        break;
    }
    current
}

/// `path` relative to the tree root with `.` and `..` folded; an absolute target counts from the
/// root. `None` for a path that climbs above it.
fn lexical(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(nevra: &str, entries: Vec<Entry>) -> Unpacked {
        Unpacked {
            package: crate::import::ImportedPackage {
                name: nevra.split('-').next().unwrap().into(),
                nevra: nevra.into(),
                sample_path: None,
                owners: vec![],
                scriptlets: vec![],
                caps: vec![],
            },
            entries,
            what: nevra.into(),
        }
    }

    /// rpm on a 64-bit transaction: an ELF32 and an ELF64 file at one path are no conflict, and the
    /// ELF64 one is installed, whichever package comes first.
    #[test]
    fn multilib_colours_resolve_to_elf64() {
        let file = |color| Entry::File {
            path: "usr/bin/tool".into(),
            content: "0".into(),
            color,
        };
        let lib32 = package("tool-1-1.i686", vec![file(1)]);
        let lib64 = package("tool-1-1.x86_64", vec![file(2)]);
        let nowhere = Path::new("/nonexistent");
        let shipped = |u| Shipped {
            unpacked: u,
            files: nowhere,
        };
        let skip = check(&[shipped(&lib32), shipped(&lib64)]).unwrap();
        assert_eq!(skip, [BTreeSet::from([PathBuf::from("usr/bin/tool")]), BTreeSet::new()]);
        let skip = check(&[shipped(&lib64), shipped(&lib32)]).unwrap();
        assert_eq!(skip, [BTreeSet::new(), BTreeSet::from([PathBuf::from("usr/bin/tool")])]);
        // Three claims: the ELF64 file displaces the first ELF32 one and then stands against the second.
        let lib32b = package("tool-1-1.i586", vec![file(1)]);
        let skip = check(&[shipped(&lib32), shipped(&lib64), shipped(&lib32b)]).unwrap();
        let tool = || BTreeSet::from([PathBuf::from("usr/bin/tool")]);
        assert_eq!(skip, [tool(), BTreeSet::new(), tool()]);
        // An uncoloured file against a coloured one is compared as any two files are.
        let plain = package("tool-data-1-1.noarch", vec![file(0)]);
        let err = format!("{:#}", check(&[shipped(&lib64), shipped(&plain)]).unwrap_err());
        assert!(
            err.contains("comparing /usr/bin/tool of /nonexistent/usr/bin/tool and"),
            "{err}"
        );
    }

    #[test]
    fn paths_are_compared_where_they_land() {
        let mut links: HashMap<PathBuf, PathBuf> = TREE_LINKS
            .iter()
            .map(|(l, t)| (PathBuf::from(l), PathBuf::from(t)))
            .collect();
        links.insert("usr/lib/alt".into(), "usr/lib/real".into());
        links.insert("usr/lib/loop".into(), "usr/lib/loop".into());
        let at = |p: &str| in_tree(Path::new(p), &links);
        assert_eq!(at("bin/sh"), PathBuf::from("usr/bin/sh"));
        assert_eq!(at("etc/motd"), PathBuf::from("usr/etc/motd"));
        assert_eq!(at("lib/alt/x"), PathBuf::from("usr/lib/real/x"));
        // The link itself is an entry of its own, not what it points to.
        assert_eq!(at("bin"), PathBuf::from("bin"));
        assert_eq!(at("usr/lib/alt"), PathBuf::from("usr/lib/alt"));
        assert_eq!(at("usr/lib/loop/x"), PathBuf::from("usr/lib/loop/x"));
        assert_eq!(
            lexical(Path::new("usr/bin/../lib/./x")),
            Some(PathBuf::from("usr/lib/x"))
        );
        assert_eq!(lexical(Path::new("usr/../../x")), None);
        assert_eq!(lexical(Path::new("/usr/bin")), Some(PathBuf::from("usr/bin")));
    }
}
