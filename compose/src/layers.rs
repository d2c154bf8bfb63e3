//! `ostree-layers` and `ostree-override-layers`: commits checked out on top of the packages before
//! the scriptlets run, as rpm-ostree does (union-identical: a file that differs from what is there is
//! an error; override: the layer's file wins). As coreos-assembler does, `overlay/NAME` refs are
//! committed first from the directory `overlay.d/NAME` beside the treefile (owned by root, no
//! xattrs, executables read-only, a fixed timestamp so the same content is the same commit).

use anyhow::Result;
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::InputError;
use std::path::Path;
use std::process::Command;

/// Timestamp of the overlay commits: content alone decides their checksum.
const OVERLAY_TIMESTAMP: &str = "2024-01-01T00:00:00Z";

/// One layer to check out, resolved to its commit.
#[derive(Debug, Clone)]
pub struct Layer {
    pub reference: String,
    pub commit: String,
    /// `ostree-override-layers`: replaces what is there.
    pub overrides: bool,
}

fn ostree(repo: &Path) -> Command {
    let mut c = Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

/// Commit the overlay directories the layers name and resolve every layer in `repo`, in order
/// (`ostree-layers` first, then the override layers).
pub fn resolve(repo: &Path, treefile_dir: &Path, layers: &[String], overrides: &[String]) -> Result<Vec<Layer>> {
    let mut out = Vec::new();
    for (reference, overrides) in layers
        .iter()
        .map(|l| (l, false))
        .chain(overrides.iter().map(|l| (l, true)))
    {
        let key = if overrides {
            "ostree-override-layers"
        } else {
            "ostree-layers"
        };
        if let Some(name) = reference.strip_prefix("overlay/") {
            let dir = treefile_dir.join("overlay.d").join(name);
            if name.contains('/') || name.is_empty() {
                fedostree_util::bail_input!("{key}: `{reference}`: overlay names are one directory of overlay.d");
            }
            if dir.is_dir() {
                ostree(repo)
                    .args(["commit", "--branch", reference])
                    .arg(format!("--tree=dir={}", dir.display()))
                    .args([
                        "--owner-uid=0",
                        "--owner-gid=0",
                        "--no-xattrs",
                        "--no-bindings",
                        "--parent=none",
                        "--mode-ro-executables",
                        "--subject",
                        reference,
                    ])
                    .arg(format!("--timestamp={OVERLAY_TIMESTAMP}"))
                    .run()
                    .map_err(|e| InputError::new(format!("{key}: committing {}: {e:#}", dir.display())))?;
            } else {
                tracing::warn!(
                    "{key}: no {} beside the treefile: `{reference}` is taken from the repository as an earlier compose left it",
                    dir.display()
                );
            }
        }
        let parsed = ostree(repo).args(["rev-parse", reference]).output()?;
        if !parsed.status.success() {
            fedostree_util::bail_input!(
                "{key}: ref `{reference}` is not in {} (and there is no overlay.d/{} beside the treefile)",
                repo.display(),
                reference.strip_prefix("overlay/").unwrap_or(reference)
            );
        }
        out.push(Layer {
            reference: reference.clone(),
            commit: String::from_utf8_lossy(&parsed.stdout).trim().to_owned(),
            overrides,
        });
    }
    Ok(out)
}

/// Check the layers out into the tree at `root`, in order: each into a scratch directory beside the
/// tree (`ostree checkout`), then merged in (libostree's union-identical needs hardlinks into the
/// repository, which an archive repository cannot give and which the tree's scriptlets must never
/// write through).
pub fn check_out(repo: &Path, root: &Path, layers: &[Layer]) -> Result<()> {
    let parent = root.parent().unwrap_or(Path::new("."));
    for l in layers {
        let key = if l.overrides {
            "ostree-override-layers"
        } else {
            "ostree-layers"
        };
        let scratch = tempfile::Builder::new().prefix(".layer-").tempdir_in(parent)?;
        let dir = scratch.path().join("tree");
        ostree(repo).args(["checkout", &l.commit]).arg(&dir).run()?;
        merge(&dir, root, Path::new(""), l.overrides)
            .map_err(|e| InputError::new(format!("{key}: `{}`: {e:#}", l.reference)))?;
        let what = format!(
            "ostree layer {} ({})",
            l.reference,
            fedostree_util::checksum::short(&l.commit)
        );
        fedostree_util::events::step(fedostree_util::events::Stage::Compose, what, None);
    }
    Ok(())
}

/// Move `from/rel` into `to/rel`, depth first. A directory merges into a directory; anything else
/// that exists must be identical (content, mode, owner; a link's target) unless `overrides`, in
/// which case it is replaced (renamed over, never written through: it may be a hardlink into the
/// unpacked package cache).
fn merge(from: &Path, to: &Path, rel: &Path, overrides: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for e in fs_err::read_dir(from.join(rel))? {
        let e = e?;
        let rel = rel.join(e.file_name());
        let (src, dst) = (from.join(&rel), crate::safepath::parent_beneath(to, &rel)?);
        let sm = fs_err::symlink_metadata(&src)?;
        let existing = fs_err::symlink_metadata(&dst).ok();
        match existing {
            None => fs_err::rename(&src, &dst)?,
            Some(dm) if sm.is_dir() && dm.is_dir() => merge(from, to, &rel, overrides)?,
            Some(dm) => {
                let same = sm.file_type() == dm.file_type()
                    && sm.mode() == dm.mode()
                    && (sm.uid(), sm.gid()) == (dm.uid(), dm.gid())
                    && match sm.file_type().is_symlink() {
                        true => fs_err::read_link(&src)? == fs_err::read_link(&dst)?,
                        false => sm.is_file() && sm.len() == dm.len() && fs_err::read(&src)? == fs_err::read(&dst)?,
                    };
                if same {
                    continue;
                }
                if !overrides {
                    anyhow::bail!("/{} differs from what the packages put there", rel.display());
                }
                if dm.is_dir() {
                    fs_err::remove_dir_all(&dst)?;
                }
                // A directory over a file or link: the old entry goes first.
                if sm.is_dir() && !dm.is_dir() {
                    fs_err::remove_file(&dst)?;
                }
                fs_err::rename(&src, &dst)?;
            }
        }
    }
    Ok(())
}
