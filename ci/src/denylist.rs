//! `trees/denylist.yaml`: known failures that stop blocking a tree, visibly, in the shape of
//! coreos-assembler's `kola-denylist.yaml` (`pattern`, `tracker`, `snooze`, `arches`), plus the trees an
//! entry is for and a required reason. A denied test still runs and its failure is recorded and shown,
//! with the reason; it just does not fail the tree. After its `snooze` date an entry no longer applies.

use anyhow::{Context, Result};
use fedostree_util::glob::glob_match;
use std::path::Path;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Test name glob (`suite/test`).
    pub pattern: String,
    /// Why the failure is accepted for now.
    pub reason: String,
    /// Where the failure is tracked (an issue URL).
    #[serde(default)]
    pub tracker: Option<String>,
    /// The last day the entry applies (YYYY-MM-DD); after it, the test blocks again.
    #[serde(default)]
    pub snooze: Option<chrono::NaiveDate>,
    /// Tree name globs (all trees when empty).
    #[serde(default)]
    pub trees: Vec<String>,
    /// Architectures (all when empty).
    #[serde(default)]
    pub arches: Vec<fedostree_util::Arch>,
}

#[derive(Debug, Clone, Default)]
pub struct Denylist {
    entries: Vec<Entry>,
}

impl Denylist {
    /// The denylist at `path`; none when the file does not exist. A file that does not parse is an
    /// input error naming the file and line.
    pub fn load(path: &Path) -> Result<Denylist> {
        let text = match fs_err::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Denylist::default()),
            Err(e) => return Err(e).context("reading the denylist"),
        };
        let entries: Option<Vec<Entry>> = serde_yaml_ng::from_str(&text).map_err(|e| {
            let at = e.location().map(|l| format!(":{}", l.line())).unwrap_or_default();
            fedostree_util::InputError::new(format!("{}{at}: {e}", path.display()))
        })?;
        let entries = entries.unwrap_or_default();
        for (i, e) in entries.iter().enumerate() {
            if e.reason.trim().is_empty() {
                fedostree_util::bail_input!(
                    "{}: entry {} ({}) has an empty reason",
                    path.display(),
                    i + 1,
                    e.pattern
                );
            }
        }
        Ok(Denylist { entries })
    }

    /// The entry that exempts `test` of `tree` on `arch` on `today`, if any.
    pub fn denies(
        &self,
        tree: &str,
        arch: fedostree_util::Arch,
        test: &str,
        today: chrono::NaiveDate,
    ) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            glob_match(&e.pattern, test)
                && (e.trees.is_empty() || e.trees.iter().any(|t| glob_match(t, tree)))
                && (e.arches.is_empty() || e.arches.contains(&arch))
                && e.snooze.is_none_or(|until| today <= until)
        })
    }
}

impl Entry {
    /// What the reports say next to a denied failure.
    pub fn describe(&self) -> String {
        let mut s = self.reason.clone();
        if let Some(t) = &self.tracker {
            s.push_str(&format!(" ({t})"));
        }
        if let Some(d) = self.snooze {
            s.push_str(&format!("; until {d}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> chrono::NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn matches_by_test_tree_arch_and_date() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("denylist.yaml");
        fs_err::write(
            &f,
            "- pattern: fedostree-broken/*\n  reason: planted\n  trees: [dev/broken]\n  arches: [aarch64]\n  snooze: 2027-01-31\n",
        )
        .unwrap();
        let l = Denylist::load(&f).unwrap();
        let today = day("2027-01-31");
        assert!(l
            .denies("dev/broken", fedostree_util::Arch::Aarch64, "fedostree-broken/x", today)
            .is_some());
        assert!(l
            .denies("dev/broken", fedostree_util::Arch::X86_64, "fedostree-broken/x", today)
            .is_none());
        assert!(l
            .denies(
                "dev/minimal",
                fedostree_util::Arch::Aarch64,
                "fedostree-broken/x",
                today
            )
            .is_none());
        assert!(l
            .denies("dev/broken", fedostree_util::Arch::Aarch64, "fedostree/x", today)
            .is_none());
        assert!(
            l.denies(
                "dev/broken",
                fedostree_util::Arch::Aarch64,
                "fedostree-broken/x",
                day("2027-02-01")
            )
            .is_none(),
            "after the snooze date the test blocks again"
        );
        assert_eq!(
            l.denies("dev/broken", fedostree_util::Arch::Aarch64, "fedostree-broken/x", today)
                .unwrap()
                .describe(),
            "planted; until 2027-01-31"
        );
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("denylist.yaml");
        fs_err::write(&f, "- pattern: a\n  reason: r\n- pattern: b\n  reasn: typo\n").unwrap();
        let err = format!("{:#}", Denylist::load(&f).unwrap_err());
        assert!(err.contains("denylist.yaml:") && err.contains("reasn"), "{err}");
        fs_err::write(&f, "- pattern: a\n  reason: ' '\n").unwrap();
        let err = format!("{:#}", Denylist::load(&f).unwrap_err());
        assert!(err.contains("empty reason"), "{err}");
        assert!(Denylist::load(&d.path().join("none.yaml")).unwrap().entries.is_empty());
    }
}
