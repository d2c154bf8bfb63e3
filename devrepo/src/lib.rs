//! Dev repository builder: real RPMs made from Debian binaries (cloud kernel, busybox-static) and
//! the project's own sources, published as one rpm-md repo per arch at `$STATE/devrepo/<arch>/`.
//!
//! Builds are incremental and reproducible: each package's inputs (Debian .deb checksums or file
//! contents, metadata, release, and this module's own source) are hashed into
//! `$STATE/devrepo/<arch>/manifest.json`; an unchanged package is not rebuilt, and the same inputs
//! always give byte-identical RPMs. `bump` raises a package's release so the next compose sees an
//! upgrade of exactly that package; counts persist in `$STATE/devrepo/bumps.json`.

mod busybox;
mod closure;
mod container_policy;
mod convert;
mod debian;
mod debian_index;
pub mod debian_repo;
#[cfg(test)]
mod debian_tests;
pub mod dev_key;
mod kernel;
mod own;
mod repo;
mod sets;
mod spec;
#[cfg(test)]
mod tests;

use anyhow::{anyhow, bail, Context, Result};
use fedostree_util::state::{Sources, StateDir};
use fedostree_util::Arch;
use fedostree_util::InputError;
use repo::{bumped_release, Bumps, Manifest, ManifestEntry};
use sha2::{Digest, Sha256};
use spec::PkgSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct DevRepoOptions {
    pub arches: Vec<Arch>,
    /// Package names whose release to raise by one before building.
    pub bump: Vec<String>,
    /// The project checkout (see [`fedostree_util::state::source_dir`]).
    pub source_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BuiltPackage {
    pub name: String,
    pub nevra: String,
    pub path: PathBuf,
    /// False when the package's inputs were unchanged and the existing RPM was kept.
    pub rebuilt: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Own(&'static own::OwnPackage),
    Busybox,
    KernelCore,
    KernelModules,
    Kernel,
    ContainerPolicy,
}

/// Every package of the dev repo, in build order.
fn kinds() -> Vec<(&'static str, Kind)> {
    let mut v: Vec<_> = own::OWN_PACKAGES.iter().map(|p| (p.name, Kind::Own(p))).collect();
    v.extend([
        ("busybox", Kind::Busybox),
        ("kernel-core", Kind::KernelCore),
        ("kernel-modules", Kind::KernelModules),
        ("kernel", Kind::Kernel),
        (container_policy::NAME, Kind::ContainerPolicy),
    ]);
    v
}

/// The package names `bump` accepts.
pub fn package_names() -> Vec<&'static str> {
    kinds().into_iter().map(|(n, _)| n).collect()
}

/// The three kernel packages require each other at the exact EVR, so they share one bump count.
fn bump_key(name: &str) -> &str {
    match name {
        "kernel-core" | "kernel-modules" => "kernel",
        n => n,
    }
}

/// This module's source: a change to how packages are made rebuilds them all.
fn recipe_hash() -> String {
    let sources = [
        include_str!("lib.rs"),
        include_str!("spec.rs"),
        include_str!("debian.rs"),
        include_str!("kernel.rs"),
        include_str!("busybox.rs"),
        include_str!("own.rs"),
        include_str!("container_policy.rs"),
        // Packages are signed with the dev key: a new key rebuilds them.
        crate::dev_key::DEV_PUBLIC_KEY,
    ];
    hash_sources(&sources)
}

/// One hash over source texts (each hashed first, so their boundaries count): a builder's recipe.
pub(crate) fn hash_sources(sources: &[&str]) -> String {
    let mut h = Sha256::new();
    for s in sources {
        h.update(Sha256::digest(s.as_bytes()));
    }
    hex::encode(h.finalize())
}

fn input_hash(parts: &[&str]) -> String {
    hex::encode(Sha256::digest(parts.join("\n").as_bytes()))
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

/// Metadata, its signature and the key the dev trees' `gpgkey=` names are all in place.
pub fn is_built(state: &StateDir, arch: Arch) -> bool {
    state.devrepo(arch).join("repodata/repomd.xml.asc").exists()
        && fs_err::read_to_string(state.devrepo_root().join(crate::dev_key::DEV_KEY_FILE))
            .is_ok_and(|k| k == crate::dev_key::DEV_PUBLIC_KEY)
}

/// Build (incrementally: milliseconds when nothing changed) the dev repositories that `tree`'s repos
/// point at, so that edits to tests-suite/ or devrepo/own/ reach the next compose. Callers run this
/// before [`fedostree_compose::compose_tree::compose_treefile`], which only reads repositories.
pub fn ensure_for_tree(state: &StateDir, sources: &Sources, tf: &fedostree_compose::treefile::Treefile) -> Result<()> {
    let arch = tf.arch;
    let devrepo_dir = state.devrepo_root();
    let repos = tf.load_repos(&devrepo_dir).map_err(InputError::wrap)?;
    let debian_dir = debian_repo::repo_dir(state, arch);
    let points_at = |dir: &Path| repos.iter().any(|r| r.baseurl.contains(&*dir.to_string_lossy()));
    if points_at(&debian_dir) {
        debian_repo::build(state, arch, &sources.checkout).context("building the Debian repository")?;
    }
    if repos.iter().any(|r| {
        r.baseurl.contains(&*devrepo_dir.to_string_lossy()) && !r.baseurl.contains(&*debian_dir.to_string_lossy())
    }) {
        let opts = DevRepoOptions {
            arches: vec![arch],
            bump: vec![],
            source_dir: sources.checkout.clone(),
        };
        build(state, &opts).context("building the dev repository")?;
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(arches = ?opts.arches, bump = ?opts.bump))]
pub fn build(state: &StateDir, opts: &DevRepoOptions) -> Result<Vec<(Arch, Vec<BuiltPackage>)>> {
    fs_err::create_dir_all(state.root())?;
    let _lock = fedostree_util::lock::FileLock::acquire_announced(
        &state.devrepo_root().with_extension("lock"),
        "dev repository build",
    )?;
    let bumps = apply_bumps(state, &opts.bump)?;
    let mut debarches: Vec<&str> = opts.arches.iter().map(|a| a.debian()).collect();
    debarches.push(host_debarch()?);
    debarches.sort();
    debarches.dedup();
    let debs = debian::resolve(state, &debarches)?;
    opts.arches
        .iter()
        .map(|&a| Ok((a, build_arch(state, a, &opts.source_dir, &bumps, &debs)?)))
        .collect()
}

/// `busybox --list` runs on the host, so the host's busybox-static is always needed.
fn host_debarch() -> Result<&'static str> {
    Arch::host().map(Arch::debian).ok_or_else(|| {
        anyhow!(
            "busybox: cannot run `busybox --list` on host architecture {}",
            std::env::consts::ARCH
        )
    })
}

/// Validate `names`, add one to each one's bump count and persist the counts.
fn apply_bumps(state: &StateDir, names: &[String]) -> Result<Bumps> {
    let known = package_names();
    for b in names {
        if !known.contains(&b.as_str()) {
            return Err(fedostree_util::InputError::new(format!(
                "cannot bump unknown package {b:?}; dev repo packages: {}",
                known.join(", ")
            )));
        }
    }
    let mut bumps = Bumps::load(&state.devrepo_root())?;
    if !names.is_empty() {
        for b in names {
            *bumps.0.entry(bump_key(b).to_string()).or_default() += 1;
        }
        bumps.save(&state.devrepo_root())?;
    }
    Ok(bumps)
}

/// What building one architecture's packages needs, shared by every package of it.
struct ArchBuild<'a> {
    arch: &'a str,
    source_dir: &'a Path,
    bumps: &'a Bumps,
    recipe: String,
    shared: BTreeSet<String>,
    kdeb: &'a debian::Deb,
    kmeta: kernel::KernelMeta,
    busybox: &'a debian::Deb,
    host_busybox: &'a debian::Deb,
    policy_src: &'a debian::Deb,
    policy_dev: &'a debian::Deb,
    /// Scratch space (the kernel staging is over 100 MB).
    /// Parent of the scratch directory, made on first need (an up-to-date repo makes none).
    tmp_parent: PathBuf,
    tmp: Option<fedostree_util::workdir::WorkDir>,
    /// The unpacked kernel .deb, staged on first use.
    kstage: Option<kernel::KernelStage>,
}

impl<'a> ArchBuild<'a> {
    /// The shared state for building `arch`'s packages, the kernel's release raised by its bump count.
    fn new(
        state: &StateDir,
        arch: Arch,
        source_dir: &'a Path,
        bumps: &'a Bumps,
        debs: &'a BTreeMap<String, debian::ArchDebs>,
    ) -> Result<Self> {
        let debarch = arch.debian();
        let debian::ArchDebs {
            kernel: kdeb,
            busybox,
            policy_src,
            policy_dev,
        } = &debs[debarch];
        let mut kv = debian::split_version(&kdeb.version)?;
        kv.release = bumped_release(&kv.release, bumps.count("kernel"));
        Ok(ArchBuild {
            arch: arch.as_str(),
            source_dir,
            bumps,
            recipe: recipe_hash(),
            shared: own::shared_dirs(),
            kdeb,
            kmeta: kernel::KernelMeta {
                arch: arch.to_string(),
                v: kv,
            },
            busybox,
            host_busybox: &debs[host_debarch()?].busybox,
            policy_src,
            policy_dev,
            tmp_parent: state.tmp(),
            tmp: None,
            kstage: None,
        })
    }
}

impl ArchBuild<'_> {
    /// A complete spec when it is cheap (own files, metadata only), else a skeleton whose metadata
    /// names the result and whose input hash stands in the .deb checksums for the content. Returns
    /// (complete?, spec, input hash).
    fn describe(&self, name: &str, kind: &Kind) -> Result<(bool, PkgSpec, String)> {
        let recipe = &self.recipe;
        Ok(match kind {
            Kind::Own(p) => {
                let rel = bumped_release(own::OWN_RELEASE, self.bumps.count(name));
                let s = own::spec(p, self.source_dir, &rel)?;
                let h = input_hash(&[recipe, &s.content_hash()?]);
                (true, s, h)
            }
            Kind::Kernel => {
                let s = self.kmeta.meta();
                let h = input_hash(&[recipe, &s.content_hash()?]);
                (true, s, h)
            }
            Kind::Busybox => {
                let s = busybox::skeleton(self.arch, self.busybox, self.bumps.count(name))?;
                let h = input_hash(&[recipe, &s.nevra(), &self.busybox.sha256, &self.host_busybox.sha256]);
                (false, s, h)
            }
            Kind::ContainerPolicy => {
                let s = container_policy::skeleton(self.policy_src, self.policy_dev, self.bumps.count(name))?;
                let overlay = container_policy::overlay_hash(self.source_dir)?;
                let h = input_hash(&[
                    recipe,
                    &s.nevra(),
                    &self.policy_src.sha256,
                    &self.policy_dev.sha256,
                    &overlay,
                ]);
                (false, s, h)
            }
            Kind::KernelCore | Kind::KernelModules => {
                let s = if matches!(kind, Kind::KernelCore) {
                    self.kmeta.core_skeleton()
                } else {
                    self.kmeta.modules_skeleton()
                };
                let h = input_hash(&[recipe, &s.nevra(), &self.kdeb.sha256]);
                (false, s, h)
            }
        })
    }

    /// Scratch space; kernel staging is over 100 MB: a WorkDir is removed on Ctrl-C and swept
    /// after a SIGKILL.
    fn tmp(&mut self) -> Result<PathBuf> {
        if self.tmp.is_none() {
            self.tmp = Some(fedostree_util::workdir::WorkDir::new(&self.tmp_parent, "devrepo")?);
        }
        Ok(self.tmp.as_ref().expect("made above").path().to_path_buf())
    }

    /// The complete spec of a package `describe` only sketched (unpacks the .debs).
    fn complete(&mut self, name: &str, kind: &Kind) -> Result<PkgSpec> {
        let tmp = self.tmp()?;
        match kind {
            Kind::Busybox => busybox::spec(
                self.arch,
                self.busybox,
                self.bumps.count(name),
                self.host_busybox,
                &self.shared,
                &tmp,
            ),
            Kind::KernelCore | Kind::KernelModules => {
                if self.kstage.is_none() {
                    self.kstage = Some(kernel::stage(self.kdeb, &tmp)?);
                }
                let st = self.kstage.as_ref().expect("staged above");
                if matches!(kind, Kind::KernelCore) {
                    self.kmeta.core(st, &self.shared)
                } else {
                    self.kmeta.modules(st, &self.shared)
                }
            }
            Kind::ContainerPolicy => container_policy::spec(
                self.policy_src,
                self.policy_dev,
                self.bumps.count(name),
                self.source_dir,
                &self.shared,
                &tmp,
            ),
            Kind::Own(_) | Kind::Kernel => unreachable!("full specs are built by describe"),
        }
    }
}

fn build_arch(
    state: &StateDir,
    arch: Arch,
    source_dir: &Path,
    bumps: &Bumps,
    debs: &BTreeMap<String, debian::ArchDebs>,
) -> Result<Vec<BuiltPackage>> {
    let dir = state.devrepo(arch);
    let pkgdir = dir.join("Packages");
    fs_err::create_dir_all(&pkgdir)?;
    let mut manifest = Manifest::load(&dir)?;
    let mut b = ArchBuild::new(state, arch, source_dir, bumps, debs)?;

    let mut out = Vec::new();
    let mut rewrote_in_place = false;
    for (name, kind) in kinds() {
        let t0 = Instant::now();
        let ctx = || format!("devrepo {arch}: {name}");
        let (full, skel, input) = b.describe(name, &kind).with_context(ctx)?;
        let (file, nevra) = (skel.file_name(), skel.nevra());
        let path = pkgdir.join(&file);
        let old = manifest.packages.get(name).cloned();
        if old.as_ref().is_some_and(|o| o.input == input && o.file == file) && path.exists() {
            tracing::debug!("devrepo {arch}: unchanged {nevra}");
            out.push(BuiltPackage {
                name: name.into(),
                nevra,
                path,
                rebuilt: false,
            });
            continue;
        }
        let s = if full {
            skel
        } else {
            b.complete(name, &kind).with_context(ctx)?
        };
        if s.nevra() != nevra {
            bail!("devrepo {arch}: {name}: built {} but expected {nevra}", s.nevra());
        }
        rewrote_in_place |= path.exists();
        let size = s.write_rpm(&path).with_context(ctx)?;
        let what = format!("{arch}: built {nevra} ({})", human_size(size));
        fedostree_util::events::step(
            fedostree_util::events::Stage::Devrepo,
            what,
            Some(t0.elapsed().as_secs_f64()),
        );
        manifest.packages.insert(
            name.into(),
            ManifestEntry {
                nevra: nevra.clone(),
                file,
                input,
            },
        );
        manifest.save(&dir)?;
        out.push(BuiltPackage {
            name: name.into(),
            nevra,
            path,
            rebuilt: true,
        });
    }
    drop(b);
    finish_repo(state, arch, &mut manifest, &out, bumps, rewrote_in_place)?;
    Ok(out)
}

/// Forget packages no longer built, remove their RPMs, and (when anything changed) index and sign the
/// repository again.
fn finish_repo(
    state: &StateDir,
    arch: Arch,
    manifest: &mut Manifest,
    out: &[BuiltPackage],
    bumps: &Bumps,
    rewrote_in_place: bool,
) -> Result<()> {
    let dir = state.devrepo(arch);
    let keep: BTreeSet<String> = out
        .iter()
        .filter_map(|p| p.path.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    manifest.packages.retain(|n, _| out.iter().any(|p| &p.name == n));
    manifest.save(&dir)?;
    let removed = repo::remove_stale(&dir.join("Packages"), &keep)?;
    for r in &removed {
        fedostree_util::events::step(
            fedostree_util::events::Stage::Devrepo,
            format!("{arch}: removed stale {r}"),
            None,
        );
    }
    if removed.is_empty() && !out.iter().any(|p| p.rebuilt) && is_built(state, arch) {
        fedostree_util::events::step(
            fedostree_util::events::Stage::Devrepo,
            format!("{arch}: {} packages up to date", out.len()),
            None,
        );
        return Ok(());
    }
    let t0 = Instant::now();
    let revision = u64::from(spec::SOURCE_DATE) + u64::from(bumps.total());
    repo::createrepo(&dir, revision, !rewrote_in_place).with_context(|| format!("devrepo {arch}: createrepo_c"))?;
    repo::sign_repomd(&dir, revision).with_context(|| format!("devrepo {arch}: signing repomd.xml"))?;
    repo::install_public_key(&state.devrepo_root())?;
    let what = format!("{arch}: repodata for {} packages", out.len());
    fedostree_util::events::step(
        fedostree_util::events::Stage::Devrepo,
        what,
        Some(t0.elapsed().as_secs_f64()),
    );
    Ok(())
}
