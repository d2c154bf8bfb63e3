//! [`LoadedTree`]: a tree located and its treefile loaded once, for every architecture a run needs,
//! then handed to the dev repository, the compose, the image and the pipeline.

use crate::treefile::{self, Treefile};
use anyhow::Result;
use fedostree_util::{Arch, InputError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A tree name (or treefile path) resolved once: where its treefile is and what it says per arch.
#[derive(Debug, Clone)]
pub struct LoadedTree {
    /// `dev/minimal`, or a treefile's stem when given as a path.
    pub name: String,
    pub path: PathBuf,
    by_arch: BTreeMap<Arch, Treefile>,
}

impl LoadedTree {
    /// Locate `tree` under `trees_dir` (or as a path) and load it, includes merged, for each of
    /// `arches`. Errors name the file and are input errors.
    pub fn load(trees_dir: &Path, tree: &str, arches: &[Arch]) -> Result<LoadedTree> {
        let (path, name) = treefile::locate(tree, trees_dir).map_err(InputError::wrap)?;
        let mut by_arch = BTreeMap::new();
        for &arch in arches {
            let tf = Treefile::load(&path, &name, arch).map_err(InputError::wrap)?;
            by_arch.insert(arch, tf);
        }
        Ok(LoadedTree { name, path, by_arch })
    }

    /// The merged treefile for `arch` (loaded for every arch [`LoadedTree::load`] was given; another
    /// is loaded now).
    pub fn treefile(&self, arch: Arch) -> Result<std::borrow::Cow<'_, Treefile>> {
        Ok(match self.by_arch.get(&arch) {
            Some(tf) => std::borrow::Cow::Borrowed(tf),
            None => std::borrow::Cow::Owned(Treefile::load(&self.path, &self.name, arch).map_err(InputError::wrap)?),
        })
    }

    /// The ref the tree commits to on `arch`.
    pub fn ref_(&self, arch: Arch) -> Result<String> {
        Ok(self.treefile(arch)?.ref_.clone())
    }
}
