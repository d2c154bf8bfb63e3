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
    /// Each arch's treefile, or why it does not load (one arch's error is not another's).
    by_arch: BTreeMap<Arch, Result<Treefile, String>>,
}

impl LoadedTree {
    /// Locate `tree` under `trees_dir` (or as a path) and load it, includes merged, for each of
    /// `arches`. A tree that is nowhere is an error now; a treefile that does not load for one arch is
    /// that arch's error, returned by [`LoadedTree::treefile`]. Errors name the file and are input
    /// errors.
    pub fn load(trees_dir: &Path, tree: &str, arches: &[Arch]) -> Result<LoadedTree> {
        let (path, name) = treefile::locate(tree, trees_dir).map_err(InputError::wrap)?;
        let by_arch = arches
            .iter()
            .map(|&arch| (arch, Treefile::load(&path, &name, arch).map_err(|e| e.to_string())))
            .collect();
        Ok(LoadedTree { name, path, by_arch })
    }

    /// The merged treefile for `arch`, one of the arches [`LoadedTree::load`] was given.
    pub fn treefile(&self, arch: Arch) -> Result<&Treefile> {
        match self.by_arch.get(&arch) {
            Some(Ok(tf)) => Ok(tf),
            Some(Err(e)) => Err(InputError::new(e)),
            None => anyhow::bail!("{}: the treefile was not loaded for {arch}", self.name),
        }
    }

    /// The ref the tree commits to on `arch`.
    pub fn ref_(&self, arch: Arch) -> Result<String> {
        Ok(self.treefile(arch)?.ref_.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One arch's treefile error is that arch's alone; a tree that is nowhere fails at once.
    #[test]
    fn each_arch_loads_on_its_own() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::fs::write(
            d.path().join("dev/t.yaml"),
            "ref: t/${basearch}\npackages-aarch64: [a]\n",
        )
        .unwrap();
        let t = LoadedTree::load(d.path(), "dev/t", Arch::ALL).unwrap();
        assert_eq!(t.ref_(Arch::Aarch64).unwrap(), "t/aarch64");
        let e = t.treefile(Arch::X86_64).unwrap_err();
        assert!(fedostree_util::is_input_error(&e), "{e:#}");
        assert!(format!("{e:#}").contains("no packages for x86_64"), "{e:#}");
        let e = LoadedTree::load(d.path(), "dev/none", Arch::ALL).unwrap_err();
        assert!(format!("{e:#}").contains("no tree named `dev/none`"), "{e:#}");
    }
}
