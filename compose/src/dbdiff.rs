//! `fedostree db diff A B`: package changes between two commits, from their recorded package lists.

use crate::commit::{self, PkgRecord};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PkgDiff {
    pub from: String,
    pub to: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub upgraded: Vec<Change>,
    pub downgraded: Vec<Change>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub name: String,
    pub from: String,
    pub to: String,
}

fn by_name(list: Vec<PkgRecord>) -> BTreeMap<(String, String), PkgRecord> {
    list.into_iter()
        .map(|p| ((p.name.clone(), p.arch.clone()), p))
        .collect()
}

/// Diff two revisions (refs or checksums) of `repo`.
pub fn diff(repo: &ostree::Repo, a: &str, b: &str) -> Result<PkgDiff> {
    let resolve = |r: &str| {
        commit::resolve(repo, r)?
            .ok_or_else(|| fedostree_util::InputError::new(format!("no ref or commit `{r}` in the repo")))
    };
    let (ca, cb) = (resolve(a)?, resolve(b)?);
    let (pa, pb) = (
        by_name(commit::commit_packages(repo, &ca)?),
        by_name(commit::commit_packages(repo, &cb)?),
    );
    let mut d = PkgDiff {
        from: ca,
        to: cb,
        ..Default::default()
    };
    for (k, old) in &pa {
        match pb.get(k) {
            None => d.removed.push(old.nevra()),
            Some(new) => {
                let change = || Change {
                    name: k.0.clone(),
                    from: old.evr(),
                    to: new.evr(),
                };
                match crate::solve::evrcmp(&old.evr(), &new.evr()) {
                    std::cmp::Ordering::Less => d.upgraded.push(change()),
                    std::cmp::Ordering::Greater => d.downgraded.push(change()),
                    std::cmp::Ordering::Equal => {}
                }
            }
        }
    }
    d.added = pb
        .iter()
        .filter(|(k, _)| !pa.contains_key(*k))
        .map(|(_, p)| p.nevra())
        .collect();
    Ok(d)
}

impl PkgDiff {
    /// rpm-ostree's `db diff` layout.
    pub fn render(&self) -> String {
        let mut s = format!(
            "ostree diff commit from: {}\nostree diff commit to:   {}\n",
            self.from, self.to
        );
        let section = |s: &mut String, title: &str, lines: Vec<String>| {
            if !lines.is_empty() {
                writeln!(s, "{title}:").unwrap();
                for l in lines {
                    writeln!(s, "  {l}").unwrap();
                }
            }
        };
        let ch = |v: &[Change]| v.iter().map(|c| format!("{} {} -> {}", c.name, c.from, c.to)).collect();
        section(&mut s, "Upgraded", ch(&self.upgraded));
        section(&mut s, "Downgraded", ch(&self.downgraded));
        section(&mut s, "Removed", self.removed.clone());
        section(&mut s, "Added", self.added.clone());
        if self.added.is_empty() && self.removed.is_empty() && self.upgraded.is_empty() && self.downgraded.is_empty() {
            s.push_str("No package changes\n");
        }
        s
    }
}
