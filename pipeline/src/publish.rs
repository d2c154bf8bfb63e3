//! Publishing a commit that passed its tests into the public archive repo clients pull from over HTTP.
//!
//! Order makes it safe against a kill at any point, as clients see it: the objects (pull-local without
//! a ref), the commit's GPG signature, a static delta from the ref's previous published commit (and
//! one from scratch for a ref's first commit), then the ref (a rename inside libostree); commits beyond
//! the retention depth are pruned with their deltas; then the summary, which lists the refs and the
//! deltas that now exist, and last the summary's signature. Every ref names a signed commit whose
//! objects are all present. The public key is exported beside the repo as `fedostree.gpg`.

use crate::signing::SigningKey;
use anyhow::{Context, Result};
use fedostree_compose::commit::open_or_create_repo;
use fedostree_util::cmd::CommandRunExt;
use ostree::gio;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// How published commits are kept and signed.
pub struct PublishOptions<'a> {
    pub key: &'a SigningKey,
    /// Published commits kept per ref, the newest included (older ones and their deltas are pruned).
    pub retain: usize,
    /// A ref's first commit gets a delta from scratch. ostree compresses its parts with xz, single
    /// threaded: 3 to 5 minutes for server/docker-io here, against under a second for a delta between
    /// two commits.
    pub scratch_delta: bool,
}

/// The file clients import to verify the repo (`ostree remote add --set=gpgkeypath=`).
pub const PUBLIC_KEY_FILE: &str = "fedostree.gpg";

/// `$PUBLIC/../<name>-history.json` (`$STATE/public-history.json`): each ref's published commits,
/// oldest first. libostree's parent chain cannot say this: a published commit's parent is the previous
/// candidate, which may have failed.
pub fn history_path(public: &Path) -> std::path::PathBuf {
    let name = public
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    public.with_file_name(format!("{name}-history.json"))
}

type History = BTreeMap<String, Vec<String>>;

/// Make `commit` (present in `source`) the tip of `ref_` in the public repo at `public`.
pub fn publish(source: &Path, public: &Path, ref_: &str, commit: &str, opts: &PublishOptions) -> Result<()> {
    // One publisher at a time, so the summary is never regenerated from an older set of refs.
    let _lock = fedostree_util::lock::FileLock::acquire(&public.with_extension("lock"))?;
    let repo = open_or_create_repo(public)?;
    let cancel = gio::Cancellable::NONE;
    let previous = repo
        .resolve_rev(ref_, true)
        .with_context(|| format!("reading public ref {ref_}"))?
        .map(|c| c.to_string());
    fedostree_compose::commit::pull_objects(public, source, commit)
        .with_context(|| format!("copying {commit} into the public repo"))?;
    sign_commit(&repo, commit, opts.key)?;
    if previous.as_deref() != Some(commit) && (previous.is_some() || opts.scratch_delta) {
        let from = previous.as_deref();
        let what = match from {
            Some(f) => format!(
                "static delta {} → {}",
                fedostree_util::checksum::short(f),
                fedostree_util::checksum::short(commit)
            ),
            // xz, single-threaded: minutes for a tree of hundreds of MB.
            None => format!(
                "static delta from scratch to {} (xz: minutes for a large tree)",
                fedostree_util::checksum::short(commit)
            ),
        };
        let delta = fedostree_util::events::current().stage(fedostree_util::events::Stage::Publish, what);
        // libostree reads its parameters without a NULL check: an empty dictionary means its defaults.
        let params = ostree::glib::VariantDict::new(None).end();
        repo.static_delta_generate(
            ostree::StaticDeltaGenerateOpt::Major,
            from,
            commit,
            None,
            Some(&params),
            cancel,
        )
        .with_context(|| format!("static delta {} → {commit}", from.unwrap_or("scratch")))?;
        delta.finish("static delta written");
    }
    repo.set_ref_immediate(None, ref_, Some(commit), cancel)
        .with_context(|| format!("setting public ref {ref_}"))?;
    let mut history: History = match fs_err::read(history_path(public)) {
        Ok(b) => serde_json::from_slice(&b).context("reading the public history")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => History::new(),
        Err(e) => return Err(e.into()),
    };
    let kept = history.entry(ref_.to_owned()).or_default();
    kept.retain(|c| c != commit);
    kept.push(commit.to_owned());
    let gone: Vec<String> = kept.drain(..kept.len().saturating_sub(opts.retain.max(1))).collect();
    prune(&repo, public, &gone, &history)?;
    fedostree_util::atomic::write(&history_path(public), serde_json::to_vec_pretty(&history)?)?;
    sign_summary(&repo, opts.key)?;
    opts.key.export_public(&public.join(PUBLIC_KEY_FILE))?;
    Ok(())
}

/// Regenerate `repo`'s summary (it drops the old signature and lists the refs and deltas that exist now)
/// and sign it with `key`.
pub fn sign_summary(repo: &ostree::Repo, key: &SigningKey) -> Result<()> {
    let cancel = gio::Cancellable::NONE;
    repo.regenerate_summary(None, cancel)
        .context("regenerating the summary")?;
    key.with_home(|home| {
        let home = home.map(|h| h.to_string_lossy().into_owned());
        Ok(repo.add_gpg_signature_summary(&[&key.key_id], home.as_deref(), cancel)?)
    })
    .with_context(|| format!("signing the summary with GPG key {}", key.key_id))
}

/// Sign `commit`, unless it already carries a signature: it was signed when it was first published
/// (a re-run publishing it again), and libostree's check of existing signatures cannot use the short
/// GnuPG home link (it refuses to follow a symlink).
fn sign_commit(repo: &ostree::Repo, commit: &str, key: &SigningKey) -> Result<()> {
    let cancel = gio::Cancellable::NONE;
    let detached = repo.read_commit_detached_metadata(commit, cancel)?;
    let dict = ostree::glib::VariantDict::new(detached.as_ref());
    if dict.contains("ostree.gpgsigs") {
        return Ok(());
    }
    key.with_home(|home| {
        let home = home.map(|h| h.to_string_lossy().into_owned());
        Ok(repo.sign_commit(commit, &key.key_id, home.as_deref(), cancel)?)
    })
    .with_context(|| format!("signing {commit} with GPG key {}", key.key_id))
}

/// Remove `gone` commits (no longer any ref's, beyond the retention depth), the deltas from or to them,
/// and the objects nothing kept reaches any more.
fn prune(repo: &ostree::Repo, public: &Path, gone: &[String], history: &History) -> Result<()> {
    let still_kept = |c: &String| history.values().any(|v| v.contains(c));
    let gone: Vec<&String> = gone.iter().filter(|c| !still_kept(c)).collect();
    if gone.is_empty() {
        return Ok(());
    }
    let cancel = gio::Cancellable::NONE;
    for name in repo.list_static_delta_names(cancel)? {
        // `FROM-TO`, or `TO` for a delta from scratch.
        if name.split('-').any(|c| gone.iter().any(|g| g.as_str() == c)) {
            Command::new("ostree")
                .arg(format!("--repo={}", public.display()))
                .args(["static-delta", "delete", name.as_str()])
                .run()
                .with_context(|| format!("deleting static delta {name}"))?;
        }
    }
    for c in &gone {
        for kind in [ostree::ObjectType::CommitMeta, ostree::ObjectType::Commit] {
            if repo.has_object(kind, c, cancel)? {
                repo.delete_object(kind, c, cancel)
                    .with_context(|| format!("removing pruned commit {c}"))?;
            }
        }
    }
    // libostree keeps what the refs reach, and a published commit's parent is the previous candidate,
    // which may never have been published: a chain ends there, and the retained commits before it
    // would go. Refs hold them for the prune, and go before the summary is written again.
    let tips: Vec<String> = repo
        .list_refs(None, cancel)?
        .into_values()
        .map(|c| c.to_string())
        .collect();
    let holds: Vec<String> = history
        .values()
        .flatten()
        .filter(|c| !tips.contains(c))
        .map(|c| format!("{RETAIN_REFS}{c}"))
        .collect();
    for r in &holds {
        let c = &r[RETAIN_REFS.len()..];
        repo.set_ref_immediate(None, r, Some(c), cancel)?;
    }
    let pruned = repo
        .prune(ostree::RepoPruneFlags::REFS_ONLY, -1, cancel)
        .context("pruning the public repo");
    for (r, _) in repo.list_refs(Some(RETAIN_REFS.trim_end_matches('/')), cancel)? {
        let r = format!("{RETAIN_REFS}{r}");
        repo.set_ref_immediate(None, &r, None, cancel)?;
    }
    pruned?;
    Ok(())
}

/// Refs that hold retained commits during a prune (see [`prune`]); never in a summary.
const RETAIN_REFS: &str = "fedostree-retain/";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::gate;
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

    /// The project key, generated under `dir/state`.
    /// Candidate commits in `dir/repo` (see [`candidates`]), and where the public repo goes.
    fn setup(dir: &Path, commits: &[(&str, &str)]) -> (Vec<String>, std::path::PathBuf, std::path::PathBuf) {
        (candidates(dir, commits), dir.join("repo"), dir.join("public"))
    }

    fn options(key: &SigningKey, retain: usize, scratch_delta: bool) -> PublishOptions<'_> {
        PublishOptions {
            key,
            retain,
            scratch_delta,
        }
    }

    fn key(dir: &Path) -> SigningKey {
        let state = fedostree_util::state::StateDir::new(dir.join("state"));
        SigningKey::resolve(&state, &crate::signing::SigningSpec::default()).unwrap()
    }

    fn suite(arch: fedostree_util::Arch, status: Status) -> SuiteResult {
        crate::run::tests::suite(arch, &[status], None)
    }

    #[test]
    fn objects_then_ref_then_summary_and_a_failed_copy_moves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (c, src, public) = setup(d.path(), &[("t/x86_64", "v1")]);
        let key = key(d.path());
        let opts = options(&key, 3, true);
        publish(&src, &public, "t/x86_64", &c[0], &opts).unwrap();
        assert_eq!(ostree(&public, &["rev-parse", "t/x86_64"]).unwrap().trim(), c[0]);
        // Every object the ref names is there, and the summary lists the ref.
        ostree(&public, &["fsck", "--quiet"]).unwrap();
        let summary = ostree(&public, &["summary", "--view"]).unwrap();
        assert!(summary.contains("t/x86_64") && summary.contains(&c[0]), "{summary}");
        // A re-run publishing the same commit again: already signed, nothing new to make.
        publish(&src, &public, "t/x86_64", &c[0], &opts).unwrap();
        let summary_bytes = std::fs::read(public.join("summary")).unwrap();

        // A commit the candidate repo does not have: the copy fails before the ref or summary move.
        let missing = "0".repeat(64);
        assert!(publish(&src, &public, "t/x86_64", &missing, &opts).is_err());
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
        let (c, src, public) = setup(d.path(), &[("t/x86_64", "x"), ("t/aarch64", "a")]);
        let key = key(d.path());
        let opts = options(&key, 3, true);
        let runs = [
            ("t/x86_64", &c[0], suite(fedostree_util::Arch::X86_64, Status::Pass)),
            ("t/aarch64", &c[1], suite(fedostree_util::Arch::Aarch64, Status::Fail)),
        ];
        for (r, commit, s) in &runs {
            if gate(true, s) {
                publish(&src, &public, r, commit, &opts).unwrap();
            }
        }
        let refs = ostree(&public, &["refs"]).unwrap();
        assert_eq!(refs.lines().collect::<Vec<_>>(), ["t/x86_64"], "{refs}");
        assert!(ostree(&public, &["rev-parse", "t/aarch64"]).is_err());
    }

    /// Commits are published between failed candidates (their parents never reach the public repo):
    /// the retained ones stay when an older one is pruned, and no ref that held them is left behind.
    #[test]
    fn retention_keeps_commits_whose_parent_was_never_published() {
        let d = tempfile::tempdir().unwrap();
        let runs: Vec<(&str, String)> = (0..5).map(|i| ("t/x86_64", format!("v{i}"))).collect();
        let runs: Vec<(&str, &str)> = runs.iter().map(|(r, v)| (*r, v.as_str())).collect();
        let (c, src, public) = setup(d.path(), &runs);
        let key = key(d.path());
        let opts = options(&key, 2, false);
        for commit in [&c[0], &c[2], &c[4]] {
            publish(&src, &public, "t/x86_64", commit, &opts).unwrap();
        }
        assert!(ostree(&public, &["show", &c[0]]).is_err(), "beyond the retention");
        ostree(&public, &["show", &c[2]]).expect("retained, though its parent was never published");
        ostree(&public, &["fsck", "--quiet"]).unwrap();
        assert_eq!(ostree(&public, &["refs"]).unwrap().trim(), "t/x86_64");
        let summary = ostree(&public, &["summary", "--view"]).unwrap();
        assert!(!summary.contains("fedostree-retain"), "{summary}");
    }

    /// A client that trusts only the exported key pulls signed commits through the signed summary;
    /// each publish adds a delta from the previous commit (the first, one from scratch); commits beyond
    /// the retention depth go with their deltas and objects; a tampered summary is refused.
    #[test]
    fn signed_commits_and_summary_deltas_and_retention() {
        let d = tempfile::tempdir().unwrap();
        let (c, src, public) = setup(d.path(), &[("t/x86_64", "v1"), ("t/x86_64", "v2"), ("t/x86_64", "v3")]);
        let key = key(d.path());
        let opts = options(&key, 2, true);
        publish(&src, &public, "t/x86_64", &c[0], &opts).unwrap();
        let first = ostree(&public, &["static-delta", "list"]).unwrap();
        assert_eq!(first.trim(), c[0], "the first commit's delta from scratch");
        for commit in &c[1..] {
            publish(&src, &public, "t/x86_64", commit, &opts).unwrap();
        }
        let deltas = ostree(&public, &["static-delta", "list"]).unwrap();
        let deltas: Vec<&str> = deltas.lines().collect();
        // v1 goes with the deltas from scratch to it and from it to v2; v2 → v3 stays.
        assert_eq!(deltas, [format!("{}-{}", c[1], c[2])], "{deltas:?}");
        assert!(
            ostree(&public, &["show", &c[0]]).is_err(),
            "v1 is beyond the retention depth"
        );
        ostree(&public, &["show", &c[1]]).unwrap();
        ostree(&public, &["fsck", "--quiet"]).unwrap();

        let client = |name: &str| {
            let repo = d.path().join(name);
            ostree(&repo, &["init", "--mode=archive"]).unwrap();
            let keyfile = public.join(PUBLIC_KEY_FILE);
            ostree(
                &repo,
                &[
                    "remote",
                    "add",
                    "--set=gpg-verify=true",
                    "--set=gpg-verify-summary=true",
                    &format!("--set=gpgkeypath={}", keyfile.display()),
                    "origin",
                    &format!("file://{}", public.display()),
                ],
            )
            .unwrap();
            repo
        };
        let trusting = client("client");
        ostree(&trusting, &["pull", "origin", "t/x86_64"]).unwrap();
        assert_eq!(
            ostree(&trusting, &["rev-parse", "origin:t/x86_64"]).unwrap().trim(),
            c[2]
        );
        let verify = ostree(&trusting, &["show", "--gpg-verify-remote=origin", &c[2]]).unwrap();
        assert!(verify.contains("Good signature"), "{verify}");

        // The summary changed behind its signature's back.
        let summary = public.join("summary");
        let mut bytes = std::fs::read(&summary).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&summary, bytes).unwrap();
        // A new client: one that pulled before keeps the summary it verified while the signature is unchanged.
        let e = ostree(&client("fresh-client"), &["pull", "origin", "t/x86_64"]).unwrap_err();
        assert!(format!("{e:#}").contains("ignature"), "{e:#}");
    }
}
