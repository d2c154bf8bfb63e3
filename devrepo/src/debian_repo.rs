//! The Debian repository, `$STATE/devrepo/debian/<arch>/`: the dependency closure of
//! `devrepo/sets/*.yaml` in Debian's archive, each .deb converted to a signed RPM, in rpm-md.
//!
//! Incremental at every step: the closure is memoized under the apt lists' stamp and the sets'
//! hash; .debs are downloaded once into `$STATE/cache/debs/<debarch>/` (sha256 checked against the
//! index); control-archive facts are memoized by .deb checksum; a package is converted again only
//! when its .deb, the alternatives it wins or the converter's source changed. Same inputs →
//! byte-identical RPMs and repodata.

use crate::convert::{self, ControlFacts, ConvertInput};
use crate::repo::{self, Manifest, ManifestEntry};
use crate::{closure, debian_index, sets, BuiltPackage};
use anyhow::{anyhow, bail, Context, Result};
use debian_control::lossy::apt::Package;
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::state::StateDir;
use fedostree_util::Arch;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The repository id trees name in their `.repo` file.
pub const REPO_ID: &str = "fedostree-debian";

pub fn repo_dir(state: &StateDir, arch: Arch) -> PathBuf {
    state.devrepo_root().join("debian").join(arch.as_str())
}

/// The converter's own source: a change to how packages are converted converts them all again.
fn recipe_hash() -> String {
    let sources = [
        include_str!("debian_repo.rs"),
        include_str!("convert/mod.rs"),
        include_str!("convert/relations.rs"),
        include_str!("convert/scripts.rs"),
        include_str!("convert/version.rs"),
        include_str!("spec.rs"),
        crate::dev_key::DEV_PUBLIC_KEY,
    ];
    crate::hash_sources(&sources)
}

/// `closure-<debarch>.json`: the closure's index records, valid for one apt-lists stamp and sets hash.
#[derive(Default, Serialize, Deserialize)]
struct ClosureMemo {
    stamp: String,
    sets: String,
    records: Vec<String>,
}

/// The closure of the sets' roots for `debarch`, as index records sorted by name.
pub(crate) fn resolve(state: &StateDir, source_dir: &Path, debarch: &str) -> Result<Vec<Package>> {
    let lists = Path::new(debian_index::APT_LISTS);
    let (roots, sets_hash) = sets::load_roots(&source_dir.join("devrepo/sets"), debarch)?;
    let stamp = debian_index::lists_stamp(lists)?;
    let memo_path = state
        .devrepo_root()
        .join("debian")
        .join(format!("closure-{debarch}.json"));
    let memo: ClosureMemo = repo::load_json(&memo_path)?;
    let records = if memo.stamp == stamp && memo.sets == sets_hash {
        memo.records
    } else {
        let t = Instant::now();
        let u = debian_index::Universe::load(lists, debarch)?;
        let pkgs = closure::closure(&u, &roots).map_err(fedostree_util::InputError::wrap)?;
        let records: Vec<String> = pkgs
            .iter()
            .map(|p| u.record(&p.name).expect("closure members are candidates").to_string())
            .collect();
        let what = format!("debian {debarch}: {} roots → {} packages", roots.len(), records.len());
        fedostree_util::events::step(
            fedostree_util::events::Stage::Devrepo,
            what,
            Some(t.elapsed().as_secs_f64()),
        );
        repo::save_json(
            &memo_path,
            &ClosureMemo {
                stamp,
                sets: sets_hash,
                records: records.clone(),
            },
        )?;
        records
    };
    records
        .iter()
        .map(|r| {
            r.parse::<Package>()
                .map_err(|e| anyhow!("{}: {e}", memo_path.display()))
        })
        .collect()
}

/// The cached .deb of `p` (downloaded by [`download`]).
fn deb_path(state: &StateDir, debarch: &str, p: &Package) -> Result<PathBuf> {
    let f = p
        .filename
        .as_deref()
        .and_then(|f| f.rsplit('/').next())
        .ok_or_else(|| anyhow!("{} {}: the index names no Filename", p.name, p.version))?;
    Ok(state.deb_cache().join(debarch).join(f))
}

/// Download every missing .deb with one `apt-get download`, each checked against the index's sha256.
pub(crate) fn download(state: &StateDir, debarch: &str, pkgs: &[Package]) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = pkgs
        .iter()
        .map(|p| deb_path(state, debarch, p))
        .collect::<Result<_>>()?;
    let missing: Vec<(&Package, &PathBuf)> = pkgs.iter().zip(&paths).filter(|(_, d)| !d.exists()).collect();
    if missing.is_empty() {
        return Ok(paths);
    }
    let dir = state.deb_cache().join(debarch);
    fs_err::create_dir_all(&dir)?;
    let tmp = tempfile::tempdir_in(&dir)?;
    let what = format!("debian {debarch}: downloading {} packages", missing.len());
    let downloading = fedostree_util::events::current().stage(fedostree_util::events::Stage::Devrepo, what);
    Command::new("apt-get")
        // Our cache is not readable by apt's _apt sandbox user; without this apt warns on every download.
        .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
        // `Architecture: all` packages are one file for every architecture: no qualifier.
        .args(missing.iter().map(|(p, _)| match p.architecture.as_str() {
            "all" => format!("{}={}", p.name, p.version),
            _ => format!("{}:{debarch}={}", p.name, p.version),
        }))
        .current_dir(tmp.path())
        .run()?;
    for (p, dest) in missing {
        // apt names the file NAME_VERSION_ARCH.deb with the epoch's ':' as "%3a"; the archive's pool
        // name has no epoch.
        let apt_name = format!(
            "{}_{}_{}.deb",
            p.name,
            p.version.to_string().replace(':', "%3a"),
            p.architecture
        );
        let got = tmp.path().join(apt_name);
        let want = p
            .sha256
            .as_deref()
            .ok_or_else(|| anyhow!("{} {}: no SHA256 in the index", p.name, p.version))?;
        let actual = crate::debian::sha256_file(&got)
            .with_context(|| format!("apt-get download {} {} gave no {}", p.name, p.version, got.display()))?;
        if actual != want {
            bail!("{}: sha256 {actual} does not match the index's {want}", got.display());
        }
        fs_err::rename(&got, dest)?;
    }
    downloading.finish(format!("debian {debarch}: downloaded"));
    Ok(paths)
}

/// `control-facts.json`: control-archive facts per .deb sha256, for one converter recipe.
#[derive(Default, Serialize, Deserialize)]
struct FactsMemo {
    recipe: String,
    facts: BTreeMap<String, ControlFacts>,
}

/// `files.json`: per package, the input hash it was built from and its non-directory paths.
#[derive(Default, Serialize, Deserialize)]
struct FileLists(BTreeMap<String, (String, Vec<String>)>);

fn input_hash(recipe: &str, sha256: &str, alternatives: &[(String, String)], conflicts: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(recipe);
    h.update(sha256);
    h.update(format!("{conflicts:?}"));
    for (l, t) in alternatives {
        h.update(format!("\n{l}\0{t}"));
    }
    hex::encode(h.finalize())
}

/// Build (incrementally) the Debian repository for `arch`.
pub fn build(state: &StateDir, arch: Arch, source_dir: &Path) -> Result<Vec<BuiltPackage>> {
    let debarch = arch.debian();
    let dir = repo_dir(state, arch);
    let pkgdir = dir.join("Packages");
    fs_err::create_dir_all(&pkgdir)?;
    let pkgs = resolve(state, source_dir, debarch)?;
    let debs = download(state, debarch, &pkgs)?;
    let recipe = recipe_hash();
    let facts = control_facts(&dir, &recipe, &pkgs, &debs)?;
    let alternatives = convert::choose_alternatives(&facts);

    let unversioned = convert::unversioned_provides(&pkgs);
    let mut manifest = Manifest::load(&dir)?;
    let files_path = dir.join("files.json");
    let mut files: FileLists = repo::load_json(&files_path)?;
    let mut out = Vec::new();
    let mut rewrote_in_place = false;
    let t_all = Instant::now();
    for (p, deb) in pkgs.iter().zip(&debs) {
        let alts = alternatives.get(&p.name).map(Vec::as_slice).unwrap_or(&[]);
        let input = input_hash(
            &recipe,
            p.sha256.as_deref().unwrap_or_default(),
            alts,
            &convert::conflicts(p, &unversioned),
        );
        if let Some(kept) = up_to_date(&manifest, &files, &pkgdir, &p.name, &input) {
            out.push(kept);
            continue;
        }
        let t0 = Instant::now();
        let spec = convert::convert(&ConvertInput {
            pkg: p,
            deb,
            control: &facts[&p.name],
            alternatives: alts,
            unversioned_provides: &unversioned,
        })
        .with_context(|| format!("converting {} {} ({})", p.name, p.version, deb.display()))?;
        let (file, nevra) = (spec.file_name(), spec.nevra());
        let path = pkgdir.join(&file);
        rewrote_in_place |= path.exists();
        let size = spec.write_rpm(&path)?;
        tracing::debug!("devrepo debian {arch}: {nevra} ({size} bytes) in {:?}", t0.elapsed());
        files.0.insert(p.name.clone(), (input.clone(), shipped_paths(&spec)));
        manifest.packages.insert(
            p.name.clone(),
            ManifestEntry {
                nevra: nevra.clone(),
                file,
                input,
            },
        );
        out.push(BuiltPackage {
            name: p.name.clone(),
            nevra,
            path,
            rebuilt: true,
        });
    }
    save_state(&dir, &files_path, &mut files, &mut manifest, &pkgs)?;
    let rebuilt = out.iter().filter(|p| p.rebuilt).count();
    if rebuilt > 0 {
        let what = format!("debian {arch}: converted {rebuilt} packages");
        fedostree_util::events::step(
            fedostree_util::events::Stage::Devrepo,
            what,
            Some(t_all.elapsed().as_secs_f64()),
        );
    }
    check_clashes(&files)?;
    finish(state, arch, &out, rewrote_in_place)?;
    Ok(out)
}

/// The existing RPM of package `name`, when it was built from `input` and it and its file list are still there.
fn up_to_date(manifest: &Manifest, files: &FileLists, pkgdir: &Path, name: &str, input: &str) -> Option<BuiltPackage> {
    let old = manifest.packages.get(name).cloned();
    if let Some(o) = old.filter(|o| o.input == input) {
        let path = pkgdir.join(&o.file);
        if path.exists() && files.0.get(name).is_some_and(|(i, _)| *i == input) {
            return Some(BuiltPackage {
                name: name.to_string(),
                nevra: o.nevra,
                path,
                rebuilt: false,
            });
        }
    }
    None
}

/// The spec's non-directory paths, as `files.json` records them.
fn shipped_paths(spec: &crate::spec::PkgSpec) -> Vec<String> {
    spec.entries
        .iter()
        .filter(|(_, e)| !matches!(e.content, crate::spec::Content::Dir))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Forget packages no longer in `pkgs`, then save `files.json` and the manifest.
fn save_state(
    dir: &Path,
    files_path: &Path,
    files: &mut FileLists,
    manifest: &mut Manifest,
    pkgs: &[Package],
) -> Result<()> {
    files.0.retain(|n, _| pkgs.iter().any(|p| &p.name == n));
    repo::save_json(files_path, &*files)?;
    manifest.packages.retain(|n, _| pkgs.iter().any(|p| &p.name == n));
    manifest.save(dir)?;
    Ok(())
}

/// Each package's control-archive facts (by name), read from the .deb only when its checksum is new.
fn control_facts(
    dir: &Path,
    recipe: &str,
    pkgs: &[Package],
    debs: &[PathBuf],
) -> Result<BTreeMap<String, ControlFacts>> {
    let facts_path = dir.join("control-facts.json");
    let mut memo: FactsMemo = repo::load_json(&facts_path)?;
    if memo.recipe != recipe {
        memo = FactsMemo {
            recipe: recipe.to_string(),
            ..Default::default()
        };
    }
    let mut facts = BTreeMap::new();
    for (p, deb) in pkgs.iter().zip(debs) {
        let sha = p.sha256.clone().unwrap_or_default();
        let f = match memo.facts.get(&sha) {
            Some(f) => f.clone(),
            None => {
                let f = convert::read_control(deb).with_context(|| format!("{} {}", p.name, p.version))?;
                memo.facts.insert(sha, f.clone());
                f
            }
        };
        facts.insert(p.name.clone(), f);
    }
    memo.facts
        .retain(|sha, _| pkgs.iter().any(|p| p.sha256.as_deref() == Some(sha)));
    repo::save_json(&facts_path, &memo)?;
    Ok(facts)
}

/// A path shipped by two packages is an error naming both (directories may be shared).
fn check_clashes(files: &FileLists) -> Result<()> {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    let mut clashes = Vec::new();
    for (pkg, (_, paths)) in &files.0 {
        for p in paths {
            if let Some(other) = owner.insert(p.as_str(), pkg.as_str()) {
                clashes.push(format!("{p}: {other} and {pkg}"));
            }
        }
    }
    if !clashes.is_empty() {
        fedostree_util::bail_input!(
            "devrepo debian: {} paths are shipped by two packages after the /usr merge:\n  {}",
            clashes.len(),
            clashes.join("\n  ")
        );
    }
    Ok(())
}

/// Remove RPMs no longer in the set; when anything changed, index and sign again.
fn finish(state: &StateDir, arch: Arch, out: &[BuiltPackage], rewrote_in_place: bool) -> Result<()> {
    let dir = repo_dir(state, arch);
    let keep = out
        .iter()
        .filter_map(|p| p.path.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let removed = repo::remove_stale(&dir.join("Packages"), &keep)?;
    let signed = dir.join("repodata/repomd.xml.asc").exists();
    if removed.is_empty() && !out.iter().any(|p| p.rebuilt) && signed {
        let what = format!("debian {arch}: {} packages up to date", out.len());
        fedostree_util::events::step(fedostree_util::events::Stage::Devrepo, what, None);
        return Ok(());
    }
    let t0 = Instant::now();
    // The revision is fixed: the repodata's bytes then depend on the packages alone.
    let revision = u64::from(crate::spec::SOURCE_DATE);
    repo::createrepo(&dir, revision, !rewrote_in_place)
        .with_context(|| format!("devrepo debian {arch}: createrepo_c"))?;
    repo::sign_repomd(&dir, revision)?;
    repo::install_public_key(&state.devrepo_root())?;
    let what = format!("debian {arch}: repodata for {} packages", out.len());
    fedostree_util::events::step(
        fedostree_util::events::Stage::Devrepo,
        what,
        Some(t0.elapsed().as_secs_f64()),
    );
    Ok(())
}
