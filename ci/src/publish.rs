//! Publishing a commit that passed its tests into the public archive repo clients pull from over HTTP.
//!
//! Order makes it atomic against a kill: objects first (pull-local without a ref), then the ref (a
//! rename inside libostree), then the summary (also a rename). At every instant the ref and the summary
//! name commits whose objects are all present.

use anyhow::{Context, Result};
use fedostree_compose::commit::open_or_create_repo;
use ostree::gio;
use std::path::Path;

/// Make `commit` (present in `source`) the tip of `ref_` in the public repo at `public`.
pub fn publish(source: &Path, public: &Path, ref_: &str, commit: &str) -> Result<()> {
    // One publisher at a time, so the summary is never regenerated from an older set of refs.
    let _lock = fedostree_util::lock::FileLock::acquire(&public.with_extension("lock"))?;
    let repo = open_or_create_repo(public)?;
    fedostree_compose::commit::pull_objects(public, source, commit)
        .with_context(|| format!("copying {commit} into the public repo"))?;
    repo.set_ref_immediate(None, ref_, Some(commit), gio::Cancellable::NONE)
        .with_context(|| format!("setting public ref {ref_}"))?;
    repo.regenerate_summary(None, gio::Cancellable::NONE)
        .context("regenerating the public summary")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::gate;
    use fedostree_harness::results::{Status, SuiteResult};
    use fedostree_util::cmd::CommandRunExt;
    use std::process::Command;

    fn ostree(repo: &Path, args: &[&str]) -> Result<String> {
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args)
            .run_get_string()
    }

    /// A candidate repo with one commit per `(ref, content)`.
    fn candidates(dir: &Path, commits: &[(&str, &str)]) -> Vec<String> {
        let repo = dir.join("repo");
        ostree(&repo, &["init", "--mode=archive"]).unwrap();
        commits
            .iter()
            .map(|(r, content)| {
                let tree = dir.join(format!("tree-{content}"));
                std::fs::create_dir_all(tree.join("usr")).unwrap();
                std::fs::write(tree.join("usr/content"), content).unwrap();
                let t = format!("--tree=dir={}", tree.display());
                ostree(&repo, &["commit", "--branch", r, &t])
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect()
    }

    fn suite(arch: &str, status: Status) -> SuiteResult {
        crate::pipeline::tests::suite(arch, &[status], None)
    }

    #[test]
    fn objects_then_ref_then_summary_and_a_failed_copy_moves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let c = candidates(d.path(), &[("t/x86_64", "v1")]);
        let (src, public) = (d.path().join("repo"), d.path().join("public"));
        publish(&src, &public, "t/x86_64", &c[0]).unwrap();
        assert_eq!(ostree(&public, &["rev-parse", "t/x86_64"]).unwrap().trim(), c[0]);
        // Every object the ref names is there, and the summary lists the ref.
        ostree(&public, &["fsck", "--quiet"]).unwrap();
        let summary = ostree(&public, &["summary", "--view"]).unwrap();
        assert!(summary.contains("t/x86_64") && summary.contains(&c[0]), "{summary}");
        let summary_bytes = std::fs::read(public.join("summary")).unwrap();

        // A commit the candidate repo does not have: the copy fails before the ref or summary move.
        let missing = "0".repeat(64);
        assert!(publish(&src, &public, "t/x86_64", &missing).is_err());
        assert_eq!(ostree(&public, &["rev-parse", "t/x86_64"]).unwrap().trim(), c[0]);
        assert_eq!(
            std::fs::read(public.join("summary")).unwrap(),
            summary_bytes,
            "summary changed"
        );
    }

    #[test]
    fn each_arch_is_published_by_its_own_verdict() {
        let d = tempfile::tempdir().unwrap();
        let c = candidates(d.path(), &[("t/x86_64", "x"), ("t/aarch64", "a")]);
        let (src, public) = (d.path().join("repo"), d.path().join("public"));
        let runs = [
            ("t/x86_64", &c[0], suite("x86_64", Status::Pass)),
            ("t/aarch64", &c[1], suite("aarch64", Status::Fail)),
        ];
        for (r, commit, s) in &runs {
            if gate(true, s) {
                publish(&src, &public, r, commit).unwrap();
            }
        }
        let refs = ostree(&public, &["refs"]).unwrap();
        assert_eq!(refs.lines().collect::<Vec<_>>(), ["t/x86_64"], "{refs}");
        assert!(ostree(&public, &["rev-parse", "t/aarch64"]).is_err());
    }
}
