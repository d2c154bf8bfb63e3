//! `fedostree ci prune --keep N` (and after every `ci run`): the newest N runs stay, with their
//! artifacts and pages, and so does any run that holds a tree's latest result; older runs leave the
//! history, `$STATE/runs` and the status page. Commits of the
//! candidate repository that nothing needs any more go with them: a commit stays while a ref points at
//! it, a cached image has it deployed, a kept run tested it, or it is among the published commits the
//! public repository retains. (The public repository prunes itself to `--retain` at every publish.)

use crate::history::History;
use crate::verdict::RunStatus;
use anyhow::{Context, Result};
use fedostree_util::state::StateDir;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Pruned {
    pub runs: Vec<String>,
    pub commits: Vec<String>,
}

pub fn prune(state: &StateDir, history: &mut History, keep: usize) -> Result<Pruned> {
    let keep = keep.max(1);
    let runs = history.runs(usize::MAX >> 1)?;
    // Beyond the newest N, a run still stays while it holds a tree/arch's latest result or the one
    // that says at which commit the tree was last tested: forgetting it would re-test the tree.
    let mut holds_latest = BTreeSet::new();
    for r in history.latest()? {
        if let Some(t) = history.last_tested(&r.tree, r.arch)? {
            holds_latest.insert(t.record.run_id);
        }
        holds_latest.insert(r.record.run_id);
    }
    let old: Vec<String> = runs
        .iter()
        .skip(keep)
        .filter(|r| r.status != RunStatus::Running && !holds_latest.contains(&r.id))
        .map(|r| r.id.clone())
        .collect();
    let kept: Vec<String> = runs
        .iter()
        .map(|r| r.id.clone())
        .filter(|id| !old.contains(id))
        .collect();
    let mut needed: BTreeSet<String> = history.commits_of_runs(&kept)?.into_iter().map(String::from).collect();
    history.delete_runs(&old)?;
    for id in &old {
        for dir in [
            state.runs().join(id),
            crate::status_page::status_dir(&state.public()).join("run").join(id),
        ] {
            match fs_err::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", dir.display()))
                }
                _ => {}
            }
        }
    }
    needed.extend(image_commits(&state.images()));
    needed.extend(published_commits(&state.public())?);
    let commits = prune_candidate_repo(&state.repo(), &needed)?;
    Ok(Pruned { runs: old, commits })
}

/// The commit deployed in every cached image (`images/<group>/<name>/<arch>/state.json`).
fn image_commits(images: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<std::path::PathBuf> {
        fs_err::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    for group in dirs(images) {
        for name in dirs(&group) {
            for arch in dirs(&name) {
                if let Some(s) = fedostree_images::layout::read_state(&arch) {
                    out.push(s.commit);
                }
            }
        }
    }
    out
}

/// Every commit the public repository's retention still lists.
fn published_commits(public: &Path) -> Result<Vec<String>> {
    let path = fedostree_pipeline::publish::history_path(public);
    let history: std::collections::BTreeMap<String, Vec<String>> = match fs_err::read(&path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e.into()),
    };
    Ok(history.into_values().flatten().collect())
}

/// Refs that keep a needed commit that is no ref's tip reachable: libostree prunes whatever no ref
/// reaches, and a deleted parent ends a ref's chain.
const KEEP_REFS: &str = "fedostree-ci/keep/";

/// Delete the commits of the candidate repo's ref chains that are not `needed` (never a ref's tip),
/// then the objects nothing left reaches. Returns the deleted commits.
fn prune_candidate_repo(repo_path: &Path, needed: &BTreeSet<String>) -> Result<Vec<String>> {
    if !repo_path.join("config").exists() {
        return Ok(vec![]);
    }
    let repo = fedostree_compose::commit::open_or_create_repo(repo_path)?;
    let cancel = ostree::gio::Cancellable::NONE;
    let has = |c: &str| repo.has_object(ostree::ObjectType::Commit, c, cancel);
    let refs = repo
        .list_refs(None, cancel)
        .context("listing the candidate repo's refs")?;
    let tips: BTreeSet<String> = refs
        .iter()
        .filter(|(r, _)| !r.starts_with(KEEP_REFS))
        .map(|(_, c)| c.to_string())
        .collect();
    // Walk every chain (from the tips, and from what was kept before) before anything is deleted.
    let mut seen = BTreeSet::new();
    let starts: BTreeSet<String> = refs
        .values()
        .map(|c| c.to_string())
        .chain(needed.iter().cloned())
        .collect();
    for start in starts {
        let mut next = Some(start);
        while let Some(c) = next {
            // A chain ends at a commit already walked, or one pruned before.
            if seen.contains(&c) || !has(&c)? {
                break;
            }
            seen.insert(c.clone());
            next = fedostree_compose::commit::parent_of(&repo, &c)?;
        }
    }
    for (r, c) in &refs {
        if r.starts_with(KEEP_REFS) && !needed.contains(c.as_str()) {
            repo.set_ref_immediate(None, r, None, cancel)?;
        }
    }
    let mut gone = Vec::new();
    for c in seen {
        if tips.contains(&c) {
            continue;
        }
        if needed.contains(&c) {
            repo.set_ref_immediate(None, &format!("{KEEP_REFS}{c}"), Some(&c), cancel)?;
            continue;
        }
        for kind in [ostree::ObjectType::CommitMeta, ostree::ObjectType::Commit] {
            if repo.has_object(kind, &c, cancel)? {
                repo.delete_object(kind, &c, cancel)
                    .with_context(|| format!("removing commit {c} from the candidate repo"))?;
            }
        }
        gone.push(c);
    }
    // What the refs reach stays; everything else goes.
    repo.prune(ostree::RepoPruneFlags::REFS_ONLY, -1, cancel)
        .context("pruning the candidate repo")?;
    Ok(gone)
}

/// Bytes used under `path`, each inode counted once (the repos and images share files by hardlink).
pub fn disk_use(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        total += md.blocks() * 512;
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedostree_util::cmd::CommandRunExt;
    use std::process::Command;

    fn ostree(repo: &Path, args: &[&str]) -> String {
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args)
            .run_get_string()
            .unwrap()
            .trim()
            .to_string()
    }

    /// A chain of five commits on one ref: the tip, a needed commit and what they reach stay; the
    /// others and the objects only they reached go.
    #[test]
    fn only_what_nothing_needs_leaves_the_candidate_repo() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        ostree(&repo, &["init", "--mode=bare-user"]);
        let mut commits = Vec::new();
        for i in 0..5 {
            let tree = d.path().join(format!("t{i}"));
            fs_err::create_dir_all(&tree).unwrap();
            fs_err::write(tree.join("file"), format!("content {i}")).unwrap();
            let tree = tree.display().to_string();
            commits.push(ostree(&repo, &["commit", "--branch=r", &format!("--tree=dir={tree}")]));
        }
        let needed: BTreeSet<String> = [commits[1].clone()].into();
        let mut gone = prune_candidate_repo(&repo, &needed).unwrap();
        gone.sort();
        let mut want = vec![commits[0].clone(), commits[2].clone(), commits[3].clone()];
        want.sort();
        assert_eq!(gone, want);
        assert_eq!(ostree(&repo, &["cat", &commits[1], "/file"]), "content 1");
        assert_eq!(ostree(&repo, &["cat", "r", "/file"]), "content 4");
        let objects = ostree(&repo, &["fsck"]);
        assert!(
            objects.contains("2 commits completed successfully - no errors"),
            "{objects}"
        );
        let mut refs: Vec<String> = ostree(&repo, &["refs"]).lines().map(String::from).collect();
        refs.sort(); // `ostree refs` lists in no fixed order
        assert_eq!(refs, [format!("{KEEP_REFS}{}", commits[1]), "r".to_string()]);
        // Once nothing needs it, the kept commit goes too, and its ref with it.
        assert_eq!(
            prune_candidate_repo(&repo, &BTreeSet::new()).unwrap(),
            [commits[1].clone()]
        );
        assert_eq!(ostree(&repo, &["refs"]), "r");
        assert!(Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["cat", &commits[0], "/file"])
            .output()
            .map(|o| !o.status.success())
            .unwrap());
    }
}
