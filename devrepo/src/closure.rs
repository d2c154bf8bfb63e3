//! The dependency closure of a set of root packages, computed the way `apt-get install
//! --no-install-recommends` does on an empty system: Depends and Pre-Depends followed, an
//! alternative group satisfied by a package already chosen if there is one, else by the first
//! alternative that can be installed; virtual names through Provides (a versioned dependency only
//! through a versioned Provides); the candidate of a name is its highest version.
//!
//! Roots are all chosen before any dependency is followed, so a root settles every alternative and
//! virtual name it satisfies — that is how a set picks `usr-is-merged` over `usrmerge`. A virtual
//! name with several providers and none chosen is an error asking for a root, never a guess.

use crate::debian_index::Universe;
use anyhow::{bail, Result};
use debian_control::lossy::apt::Package;
use debian_control::lossy::Relation;
use debian_control::relations::VersionConstraint;
use std::collections::{BTreeMap, VecDeque};

/// Does version `have` satisfy `rel`'s constraint (none: anything does)?
pub(crate) fn version_ok(rel: &Relation, have: &debversion::Version) -> bool {
    let Some((c, want)) = &rel.version else { return true };
    match c {
        VersionConstraint::LessThan => have < want,
        VersionConstraint::LessThanEqual => have <= want,
        VersionConstraint::Equal => have == want,
        VersionConstraint::GreaterThanEqual => have >= want,
        VersionConstraint::GreaterThan => have > want,
    }
}

/// Does `p` satisfy `rel`, by its own name and version or by a Provides?
pub(crate) fn satisfies(p: &Package, rel: &Relation) -> bool {
    if p.name == rel.name && version_ok(rel, &p.version) {
        return true;
    }
    p.provides.iter().flat_map(|r| r.0.iter()).flatten().any(|pr| {
        pr.name == rel.name
            && match (&rel.version, &pr.version) {
                (None, _) => true,
                (Some(_), Some((_, v))) => version_ok(rel, v),
                (Some(_), None) => false,
            }
    })
}

/// Every dependency group of `p`: Pre-Depends first, then Depends.
pub(crate) fn depends(p: &Package) -> impl Iterator<Item = &Vec<Relation>> {
    p.pre_depends.iter().chain(p.depends.iter()).flat_map(|r| r.0.iter())
}

pub(crate) fn group_text(group: &[Relation]) -> String {
    group.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" | ")
}

/// The closure of `roots` in `u`, sorted by name. Errors name the unsatisfiable dependency and the
/// package that needs it.
pub(crate) fn closure<'u>(u: &'u Universe, roots: &[String]) -> Result<Vec<&'u Package>> {
    let mut chosen: BTreeMap<&str, &'u Package> = BTreeMap::new();
    let mut queue: VecDeque<&'u Package> = VecDeque::new();
    for r in roots {
        let Some(p) = u.candidate(r) else {
            let providers = u.providers(r);
            bail!(
                "root {r:?} is not a Debian package for {}{}",
                u.debarch,
                if providers.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = providers.iter().map(|(p, _)| p.name.as_str()).collect();
                    format!(
                        " (it is a virtual name provided by {}: name one as the root)",
                        names.join(", ")
                    )
                }
            );
        };
        if chosen.insert(p.name.as_str(), p).is_none() {
            queue.push_back(p);
        }
    }
    while let Some(p) = queue.pop_front() {
        for group in depends(p) {
            if group.iter().any(|rel| chosen.values().any(|c| satisfies(c, rel))) {
                continue;
            }
            let pick = choose(u, group).map_err(|why| {
                anyhow::anyhow!(
                    "{} {} ({}) depends on `{}`, which cannot be satisfied: {why}",
                    p.name,
                    p.version,
                    u.debarch,
                    group_text(group)
                )
            })?;
            if chosen.insert(pick.name.as_str(), pick).is_none() {
                queue.push_back(pick);
            }
        }
    }
    let out: Vec<&Package> = chosen.into_values().collect();
    check_conflicts(&out)?;
    Ok(out)
}

/// The first alternative of `group` that a candidate satisfies.
fn choose<'u>(u: &'u Universe, group: &[Relation]) -> std::result::Result<&'u Package, String> {
    let mut why = Vec::new();
    for rel in group {
        if let Some(p) = u.candidate(&rel.name) {
            if version_ok(rel, &p.version) {
                return Ok(p);
            }
            why.push(format!("{} is at {}", p.name, p.version));
        }
        let providers: Vec<&Package> = u
            .providers(&rel.name)
            .into_iter()
            .filter(|(p, _)| satisfies(p, rel))
            .map(|(p, _)| p)
            .collect();
        match providers.as_slice() {
            [] => why.push(format!("nothing provides {rel}")),
            [one] => return Ok(one),
            many => {
                let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "virtual `{}` has several providers ({}): add the one to install to the set's roots",
                    rel.name,
                    names.join(", ")
                ));
            }
        }
    }
    Err(why.join("; "))
}

/// Conflicts and Breaks between two chosen packages (a package's conflict with itself, the usual
/// Debian idiom for "only one provider of X", does not count).
fn check_conflicts(pkgs: &[&Package]) -> Result<()> {
    for p in pkgs {
        let rels = p
            .conflicts
            .iter()
            .chain(p.breaks.iter())
            .flat_map(|r| r.0.iter())
            .flatten();
        for rel in rels {
            if let Some(q) = pkgs.iter().find(|q| q.name != p.name && satisfies(q, rel)) {
                bail!(
                    "{} {} conflicts with {} {} (`{rel}`): the set cannot hold both",
                    p.name,
                    p.version,
                    q.name,
                    q.version
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn universe(text: &str) -> Universe {
        let (mut pkgs, mut raw) = (Vec::new(), Vec::new());
        crate::debian_index::parse_into(text, std::path::Path::new("test"), &mut pkgs, &mut raw).unwrap();
        Universe::from_packages("amd64", pkgs, raw)
    }

    fn names(u: &Universe, roots: &[&str]) -> Result<Vec<String>> {
        let roots: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
        Ok(closure(u, &roots)?.iter().map(|p| p.name.clone()).collect())
    }

    const INDEX: &str = "\
Package: app
Version: 1.0-1
Architecture: amd64
Depends: libfoo (>= 2), usrmerge | usr-is-merged, mta
Pre-Depends: libc6

Package: libfoo
Version: 2.1-1
Architecture: amd64
Depends: libc6

Package: libfoo
Version: 1.0-1
Architecture: amd64

Package: libc6
Version: 2.36-9
Architecture: amd64

Package: usrmerge
Version: 35
Architecture: all
Depends: perl

Package: perl
Version: 5.36
Architecture: amd64

Package: usr-is-merged
Version: 35
Architecture: all

Package: exim
Version: 4
Architecture: amd64
Provides: mta
Conflicts: mta

Package: postfix
Version: 3
Architecture: amd64
Provides: mta
Conflicts: mta
";

    #[test]
    fn roots_settle_alternatives_and_virtual_names() {
        let u = universe(INDEX);
        assert_eq!(
            names(&u, &["app", "usr-is-merged", "exim"]).unwrap(),
            ["app", "exim", "libc6", "libfoo", "usr-is-merged"]
        );
        // Without a root the first alternative wins, as in apt.
        assert_eq!(
            names(&u, &["app", "postfix"]).unwrap(),
            ["app", "libc6", "libfoo", "perl", "postfix", "usrmerge"]
        );
        // The highest version is the candidate.
        assert_eq!(u.candidate("libfoo").unwrap().version.to_string(), "2.1-1");
    }

    #[test]
    fn ambiguity_and_unsatisfiable_dependencies_are_errors_naming_the_package() {
        let u = universe(INDEX);
        let e = names(&u, &["app"]).unwrap_err().to_string();
        assert!(e.contains("app 1.0-1 (amd64) depends on `mta`"), "{e}");
        assert!(e.contains("several providers (exim, postfix)"), "{e}");
        let u2 = universe(&INDEX.replace("libfoo (>= 2)", "libfoo (>= 3)"));
        let e = names(&u2, &["app", "exim"]).unwrap_err().to_string();
        assert!(
            e.contains("depends on `libfoo (>= 3)`") && e.contains("libfoo is at 2.1-1"),
            "{e}"
        );
        let e = names(&u, &["mta"]).unwrap_err().to_string();
        assert!(e.contains("virtual name provided by exim, postfix"), "{e}");
        let e = names(&u, &["exim", "postfix"]).unwrap_err().to_string();
        assert!(e.contains("conflicts with"), "{e}");
    }
}
