//! `devrepo/sets/*.yaml`: the root Debian packages of each tree family. The Debian repository
//! holds the dependency closure of all sets' roots together.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFile {
    roots: Vec<String>,
}

/// Every set's roots for `debarch` (`${debarch}` expanded), sorted and deduplicated, plus a hash
/// of the set files' text.
pub(crate) fn load_roots(sets_dir: &Path, debarch: &str) -> Result<(Vec<String>, String)> {
    use sha2::{Digest, Sha256};
    let mut files: Vec<_> = fs_err::read_dir(sets_dir)
        .with_context(|| format!("reading the package sets in {}", sets_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut roots = Vec::new();
    let mut h = Sha256::new();
    for f in &files {
        let text = fs_err::read_to_string(f)?;
        h.update(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        h.update(&text);
        let set: SetFile = serde_yaml_ng::from_str(&text).map_err(|e| {
            let line = e.location().map(|l| format!(":{}", l.line())).unwrap_or_default();
            fedostree_util::InputError::new(format!("{}{line}: {e}", f.display()))
        })?;
        roots.extend(set.roots.into_iter().map(|r| r.replace("${debarch}", debarch)));
    }
    if roots.is_empty() {
        fedostree_util::bail_input!("{}: no package sets (*.yaml with `roots:`)", sets_dir.display());
    }
    roots.sort();
    roots.dedup();
    Ok((roots, hex::encode(h.finalize())))
}
