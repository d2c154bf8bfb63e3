//! Treefiles: rpm-ostree's YAML format (key names and include semantics), parsed strictly.
//!
//! Unknown keys are errors naming file and line; rpm-ostree keys that fedostree does not implement
//! yet are a distinct "not supported yet" error, never silently ignored.

use crate::treefile_checks;
use crate::treefile_vars::{self, VarValue, Variables};
use fedostree_util::Arch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// rpm-ostree's limit on include nesting.
const INCLUDE_MAX_DEPTH: usize = 50;

/// rpm-ostree treefile keys that fedostree recognises but does not implement yet.
const NOT_SUPPORTED_YET: &[&str] = &[
    "edition",
    "metadata",
    "gpg-key",
    "gpg_key",
    "modules",
    "install-langs",
    "sysroot-readonly",
    "etc-transient",
    "root-transient",
    "rpmdb-normalize",
    "basearch",
    "exclude-packages-list",
    "packages-pinned",
    "container-imgref",
    "gpg-key-path",
    "automatic-version-suffix",
    "ignore-pkgs",
    "bootstrap-packages",
    "documentation-langs",
    "arch-include",
];

#[derive(Debug, thiserror::Error)]
pub enum TreefileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Syntax { path: PathBuf, msg: String },
    #[error("{path}:{line}: unknown treefile key `{key}`")]
    UnknownKey { path: PathBuf, line: usize, key: String },
    #[error("{path}:{line}: treefile key `{key}` (rpm-ostree) is not supported yet by fedostree")]
    NotSupported { path: PathBuf, line: usize, key: String },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("include cycle: {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" → "))]
    IncludeCycle(Vec<PathBuf>),
    #[error("{path}: includes nested deeper than {INCLUDE_MAX_DEPTH}")]
    IncludeDepth { path: PathBuf },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Includes {
    One(String),
    Many(Vec<String>),
}

impl Includes {
    fn into_vec(self) -> Vec<String> {
        match self {
            Includes::One(s) => vec![s],
            Includes::Many(v) => v,
        }
    }
}

/// One `conditional-include` entry: `include` (a file, a list of files, or a treefile written
/// inline) applies when every `if` condition holds. `include` is read as YAML first so that a
/// mistake in an inline treefile is reported like one in a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionalInclude {
    #[serde(rename = "if")]
    conditions: Includes,
    include: serde_yaml_ng::Value,
}

/// Keys an inline treefile may not use: it has no file of its own to resolve paths against, and
/// rpm-ostree does not follow includes or take variables from it.
const NOT_INLINE: &[&str] = &[
    "include",
    "conditional-include",
    "variables",
    "postprocess-script",
    "add-files",
];

/// `boot-location`: where the kernel and initramfs live in the tree. rpm-ostree's default `new` also
/// links them into `/usr/lib/ostree-boot` (for very old libostree) and warns that it is deprecated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootLocation {
    #[default]
    New,
    Modules,
    /// Accepted by the parser so that it is refused by name.
    KernelInstall,
}

/// `check-passwd` / `check-groups`: what the tree's accounts are checked against before commit
/// (rpm-ostree's default is `previous`, the previous commit's). `file` names a passwd or group file
/// beside the treefile (resolved while it is read; its content is a compose input).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AccountCheck<E> {
    None,
    #[default]
    Previous,
    File {
        /// As written (relative to the treefile naming it): serialized, so the compose hash does not
        /// depend on where the checkout is.
        filename: PathBuf,
        /// Resolved while the treefile is read.
        #[serde(skip)]
        path: PathBuf,
    },
    Data {
        entries: BTreeMap<String, E>,
    },
}

impl<E> AccountCheck<E> {
    fn resolve_file(&mut self, dir: &Path) {
        if let AccountCheck::File { filename, path } = self {
            *path = dir.join(&*filename);
        }
    }
}

/// A `check-passwd` data entry: a uid (the primary gid then equals it) or `[uid, gid]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PasswdIds {
    Same(u32),
    /// `[uid]`, as rpm-ostree also accepts.
    One((u32,)),
    Pair(u32, u32),
}

impl PasswdIds {
    pub fn ids(self) -> (u32, u32) {
        match self {
            PasswdIds::Same(id) | PasswdIds::One((id,)) => (id, id),
            PasswdIds::Pair(uid, gid) => (uid, gid),
        }
    }
}

/// Whether `lockfile-repos` are enabled: only when lockfiles are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockfileRepos {
    Enabled,
    Disabled,
}

/// One `repo-packages` entry: these packages are installed, and only from that repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoPackages {
    pub repo: String,
    pub packages: Vec<String>,
}

/// `opt-usrlocal`: `/opt` and `/usr/local` as links into `/var` (machine-local state, the default)
/// or plain directories (`root`). rpm-ostree's `state-overlay` needs ostree's state-overlay units,
/// which ostree 2022.7 lacks: refused with that reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptUsrLocal {
    #[default]
    Var,
    Root,
    #[serde(alias = "stateoverlay")]
    StateOverlay,
}

/// `rpmdb`: the database is written in the format the tree's own rpm reads (`target`) or in the
/// host rpm's default (`host`); rpm-ostree reads the legacy backend names as `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpmdbBackend {
    #[default]
    Target,
    Host,
    #[serde(rename = "bdb")]
    Bdb,
    #[serde(rename = "ndb")]
    Ndb,
    #[serde(rename = "sqlite")]
    Sqlite,
}

impl RpmdbBackend {
    /// Whether the tree's rpm decides the format.
    pub fn is_target(self) -> bool {
        self != RpmdbBackend::Host
    }
}

/// One `add-files` entry, `[source, destination]`: the source is a file beside the treefile that
/// names it, copied with its mode to the destination in the tree.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "(String, String)")]
pub struct AddFile {
    /// Resolved against the declaring treefile's directory while it is read.
    pub source: PathBuf,
    /// The source as written, for `--print-only` and the compose hash (its content digest is hashed
    /// too).
    pub source_as_written: String,
    pub dest: String,
}

impl From<(String, String)> for AddFile {
    fn from((source_as_written, dest): (String, String)) -> AddFile {
        AddFile {
            source: PathBuf::from(&source_as_written),
            source_as_written,
            dest,
        }
    }
}

impl Serialize for AddFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.source_as_written, &self.dest).serialize(s)
    }
}

/// rpm-ostree's rule for `add-files` destinations: the OS content directories, never `/usr/local`
/// or `/var`.
fn add_files_dest_is_valid(dest: &str) -> bool {
    let p = dest.trim_start_matches('/');
    let inside = (p.starts_with("usr/") && !p.starts_with("usr/local/"))
        || ["etc/", "bin/", "sbin/", "lib/", "lib64/"]
            .iter()
            .any(|d| p.starts_with(d));
    inside && !p.split('/').any(|c| c == ".." || c == ".")
}

/// Declares the raw treefile's keys once (see the invocation below).
macro_rules! treefile_keys {
    ($( $(#[$meta:meta])* $field:ident : $ty:ty = $key:literal, $merge:ident; )*) => {
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawTreefile {
            $( $(#[$meta])* #[serde(rename = $key)] $field: Option<$ty>, )*
        }

        /// Every key a treefile may use, as spelled in YAML.
        const KEYS: &[&str] = &[$($key),*];

        impl RawTreefile {
            /// rpm-ostree's include merge (`treefile_merge`): lists are the included values followed by
            /// the includer's, maps are merged key by key with the includer winning, scalars come from
            /// the includer when it sets them. A file merges its includes one by one in order, so among
            /// siblings the first sets a scalar and the last one's list items come first.
            fn merge_over(self, base: RawTreefile) -> RawTreefile {
                RawTreefile { $( $field: merge::$merge(base.$field, self.$field), )* }
            }
        }
    };
}

/// How one key's values merge, included (`base`) first, includer (`top`) second.
mod merge {
    use std::collections::BTreeMap;

    /// The included items, then the includer's.
    pub fn list<T>(base: Option<Vec<T>>, top: Option<Vec<T>>) -> Option<Vec<T>> {
        extend(base, top)
    }

    /// Key by key, the includer's entries winning.
    pub fn map<V>(base: Option<BTreeMap<String, V>>, top: Option<BTreeMap<String, V>>) -> Option<BTreeMap<String, V>> {
        extend(base, top)
    }

    fn extend<C: Extend<I> + IntoIterator<Item = I>, I>(base: Option<C>, top: Option<C>) -> Option<C> {
        match (base, top) {
            (Some(mut b), Some(t)) => {
                b.extend(t);
                Some(b)
            }
            (b, t) => t.or(b),
        }
    }

    pub fn scalar<T>(base: Option<T>, top: Option<T>) -> Option<T> {
        top.or(base)
    }

    /// Read while each file loads (includes, variables, older spellings): nothing to merge.
    pub fn consumed<T>(_: Option<T>, _: Option<T>) -> Option<T> {
        None
    }
}

// One treefile as written, before includes are merged. Each key is declared here once, with how an
// includer's value merges over an included one's (`list`: the included items first; `map`: key by
// key, the includer winning; `scalar`: the includer's when it sets one; `consumed`: read while the
// file loads, never merged). The struct, `merge_over` and `KEYS` (the unknown-key check) are
// generated from this one list.
treefile_keys! {
    include: Includes = "include", consumed;
    ref_: String = "ref", scalar;
    repos: Vec<String> = "repos", list;
    packages: Vec<String> = "packages", list;
    packages_x86_64: Vec<String> = "packages-x86_64", list;
    packages_aarch64: Vec<String> = "packages-aarch64", list;
    packages_ppc64le: Vec<String> = "packages-ppc64le", list;
    packages_s390x: Vec<String> = "packages-s390x", list;
    packages_armhfp: Vec<String> = "packages-armhfp", list;
    exclude_packages: Vec<String> = "exclude-packages", list;
    recommends: bool = "recommends", scalar;
    add_commit_metadata: BTreeMap<String, serde_json::Value> = "add-commit-metadata", map;
    automatic_version_prefix: String = "automatic-version-prefix", scalar;
    remove_files: Vec<String> = "remove-files", list;
    documentation: bool = "documentation", scalar;
    units: Vec<String> = "units", list;
    default_target: String = "default-target", scalar;
    etc_group_members: Vec<String> = "etc-group-members", list;
    ignore_removed_users: Vec<String> = "ignore-removed-users", list;
    ignore_removed_groups: Vec<String> = "ignore-removed-groups", list;
    initramfs_args: Vec<String> = "initramfs-args", list;
    /// Resolved against the directory of the treefile that names it (as rpm-ostree loads externals).
    postprocess_script: PathBuf = "postprocess-script", scalar;
    machineid_compat: bool = "machineid-compat", scalar;
    variables: Variables = "variables", consumed;
    conditional_include: Vec<ConditionalInclude> = "conditional-include", consumed;
    /// A string or an unsigned integer; `$releasever` in `.repo` files, `${releasever}` and conditions.
    releasever: VarValue = "releasever", scalar;
    /// Inline scripts, run in the sandbox before `postprocess-script`.
    postprocess: Vec<String> = "postprocess", list;
    /// rpm-ostree's older spellings, moved to the kebab-case keys as each file is read.
    default_target_legacy: String = "default_target", consumed;
    automatic_version_prefix_legacy: String = "automatic_version_prefix", consumed;
    /// Deprecated in rpm-ostree and unused there: accepted with a warning, ignored.
    rojig: serde_yaml_ng::Value = "rojig", scalar;
    cliwrap: bool = "cliwrap", scalar;
    /// `[[package, regex...]...]`: files of those packages whose path matches are left out.
    remove_from_packages: Vec<Vec<String>> = "remove-from-packages", list;
    add_files: Vec<AddFile> = "add-files", list;
    mutate_os_release: String = "mutate-os-release", scalar;
    tmp_is_dir: bool = "tmp-is-dir", scalar;
    readonly_executables: bool = "readonly-executables", scalar;
    container_cmd: Vec<String> = "container-cmd", scalar;
    boot_location: BootLocation = "boot-location", scalar;
    boot_location_legacy: BootLocation = "boot_location", consumed;
    rpmdb: RpmdbBackend = "rpmdb", scalar;
    preserve_passwd: bool = "preserve-passwd", scalar;
    check_passwd: AccountCheck<PasswdIds> = "check-passwd", scalar;
    check_groups: AccountCheck<u32> = "check-groups", scalar;
    lockfile_repos: Vec<String> = "lockfile-repos", list;
    repo_packages: Vec<RepoPackages> = "repo-packages", list;
    ostree_layers: Vec<String> = "ostree-layers", list;
    ostree_override_layers: Vec<String> = "ostree-override-layers", list;
    container: bool = "container", scalar;
    opt_usrlocal: OptUsrLocal = "opt-usrlocal", scalar;
    repovars: BTreeMap<String, String> = "repovars", map;
    /// Label every file of the commit with the tree's own SELinux policy (rpm-ostree's meaning).
    selinux: bool = "selinux", scalar;
    /// 1: files beneath `/usr/etc` are labelled as they will be in `/etc` (libostree's
    /// `SELINUX_LABEL_V1`); 0: by their own path.
    selinux_label_version: u32 = "selinux-label-version", scalar;
}

impl RawTreefile {
    /// What rpm-ostree does to each file as it is read, before merging: older spellings move to the
    /// kebab-case keys (both forms is an error) and `container: true` sets what it implies (so an
    /// includer's explicit value still wins). Errors name the key.
    fn normalize(&mut self) -> Result<(), (&'static str, String)> {
        let twice = |name: &'static str| {
            (
                name,
                format!(
                    "set twice, also as `{}` (rpm-ostree refuses both forms too)",
                    name.replace('-', "_")
                ),
            )
        };
        for (new, legacy, name) in [
            (
                &mut self.default_target,
                self.default_target_legacy.take(),
                "default-target",
            ),
            (
                &mut self.automatic_version_prefix,
                self.automatic_version_prefix_legacy.take(),
                "automatic-version-prefix",
            ),
        ] {
            match (new.is_some(), legacy) {
                (true, Some(_)) => return Err(twice(name)),
                (false, Some(l)) => *new = Some(l),
                _ => {}
            }
        }
        match (self.boot_location, self.boot_location_legacy.take()) {
            (Some(_), Some(_)) => return Err(twice("boot-location")),
            (None, Some(l)) => self.boot_location = Some(l),
            _ => {}
        }
        if self.boot_location == Some(BootLocation::KernelInstall) {
            return Err((
                "boot-location",
                "`kernel-install` (rpm-ostree's container flow) is not supported by fedostree: use `modules`".into(),
            ));
        }
        if self.container == Some(true) {
            self.boot_location = Some(BootLocation::Modules);
            self.tmp_is_dir = Some(true);
            self.preserve_passwd = Some(false);
            self.check_passwd = Some(AccountCheck::None);
            self.check_groups = Some(AccountCheck::None);
        }
        Ok(())
    }

    fn packages_for(&mut self, arch: &str) -> Option<Vec<String>> {
        match arch {
            "x86_64" => self.packages_x86_64.take(),
            "aarch64" => self.packages_aarch64.take(),
            "ppc64le" => self.packages_ppc64le.take(),
            "s390x" => self.packages_s390x.take(),
            "armhfp" => self.packages_armhfp.take(),
            _ => None,
        }
    }

    /// Substitute variables where rpm-ostree does: `automatic-version-prefix`, `add-commit-metadata` strings.
    fn substitute_variables(&mut self, vars: &Variables) {
        self.automatic_version_prefix = self
            .automatic_version_prefix
            .take()
            .map(|p| treefile_vars::substitute(&p, vars));
        if let Some(metadata) = &mut self.add_commit_metadata {
            for v in metadata.values_mut() {
                if let serde_json::Value::String(s) = v {
                    *s = treefile_vars::substitute(s, vars);
                }
            }
        }
    }
}

/// A treefile with its includes merged and resolved for one architecture.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Treefile {
    #[serde(skip)]
    pub path: PathBuf,
    /// Tree name: the path under `trees/` without `.yaml`, or the file stem for other paths.
    pub name: String,
    #[serde(rename = "basearch")]
    pub arch: Arch,
    /// As written: a string or a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub releasever: Option<VarValue>,
    #[serde(rename = "ref")]
    pub ref_: String,
    pub repos: Vec<String>,
    pub packages: Vec<String>,
    pub exclude_packages: Vec<String>,
    pub recommends: bool,
    pub add_commit_metadata: BTreeMap<String, serde_json::Value>,
    pub automatic_version_prefix: Option<String>,
    pub remove_files: Vec<String>,
    pub documentation: bool,
    /// systemd units to enable after `systemctl preset-all`.
    pub units: Vec<String>,
    pub default_target: Option<String>,
    pub etc_group_members: Vec<String>,
    pub ignore_removed_users: Vec<String>,
    pub ignore_removed_groups: Vec<String>,
    /// Extra arguments for the tree's dracut.
    pub initramfs_args: Vec<String>,
    /// A script run in the sandbox with the tree as `/` before commit; a relative path is relative to
    /// the treefile that names it.
    pub postprocess_script: Option<PathBuf>,
    /// The content digests of the files the treefile names (`postprocess-script`, `add-files`
    /// sources): inputs of the compose, like the treefile itself.
    #[serde(skip)]
    pub external_digests: Vec<String>,
    /// Inline scripts (`postprocess`), included files' first; they run before `postprocess-script`.
    pub postprocess: Vec<String>,
    pub machineid_compat: bool,
    /// Every variable after the include walk (`basearch`, `releasever`, `variables`); substituted
    /// already where rpm-ostree substitutes.
    #[serde(skip)]
    pub variables: Variables,
    /// Deprecated keys the treefile uses, as rpm-ostree warns of them (printed by compose).
    #[serde(skip)]
    pub warnings: Vec<String>,
    pub remove_from_packages: Vec<Vec<String>>,
    /// `remove-from-packages` compiled: package name → patterns searched in each file's path.
    #[serde(skip)]
    pub files_remove_regex: BTreeMap<String, Vec<regex::Regex>>,
    pub add_files: Vec<AddFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutate_os_release: Option<String>,
    pub tmp_is_dir: bool,
    pub readonly_executables: bool,
    /// Recorded as the commit's `ostree.container-cmd`, as rpm-ostree does.
    pub container_cmd: Vec<String>,
    pub boot_location: BootLocation,
    pub rpmdb: RpmdbBackend,
    /// Seed the tree's accounts with the previous commit's (or `check-*`'s file's) before
    /// sysusers runs, so ids stay stable.
    pub preserve_passwd: bool,
    pub check_passwd: AccountCheck<PasswdIds>,
    pub check_groups: AccountCheck<u32>,
    /// Repositories enabled only when lockfiles are in use, offering only locked packages.
    pub lockfile_repos: Vec<String>,
    pub repo_packages: Vec<RepoPackages>,
    /// Refs checked out on top of the packages before the scriptlets; a file that differs from a
    /// package's is an error. `overlay/NAME` is committed from `overlay.d/NAME` beside the treefile
    /// first, as coreos-assembler does.
    pub ostree_layers: Vec<String>,
    /// Like `ostree-layers`, but their files replace the packages' (and earlier layers').
    pub ostree_override_layers: Vec<String>,
    /// Variables for `.repo` files (rpm-ostree's `repovars`), over dnf's `DNF_VAR_*` environment.
    pub repovars: BTreeMap<String, String>,
    /// `container: true`: no kernel, initramfs or /boot handling (a container base or a layer
    /// source); implies `boot-location: modules`, `tmp-is-dir: true`, no passwd preservation or
    /// checks, as in rpm-ostree. Such a tree composes but does not boot.
    pub container: bool,
    pub opt_usrlocal: OptUsrLocal,
    pub selinux: bool,
    pub selinux_label_version: u32,
}

impl Treefile {
    /// Load `path` and everything it includes, resolved for `arch`.
    pub fn load(path: &Path, name: &str, arch: Arch) -> Result<Treefile, TreefileError> {
        let mut walk = Walk {
            arch,
            chain: Vec::new(),
            seen: Vec::new(),
            vars: Variables::new(),
        };
        let mut raw = walk.load(path)?;
        let vars = walk.vars;
        let checked = CheckedKeys::take(&mut raw, path, arch, &vars)?;
        let mutate_os_release = raw
            .mutate_os_release
            .take()
            .map(|m| treefile_vars::substitute(&m, &vars));
        let selinux_label_version = raw.selinux_label_version.unwrap_or(0);
        if selinux_label_version > 1 {
            return Err(TreefileError::Invalid {
                path: path.to_owned(),
                msg: format!("`selinux-label-version`: {selinux_label_version} is not a label version (0 or 1)"),
            });
        }
        let mut warnings = deprecation_warnings(&raw.rojig, raw.cliwrap);
        let boot_location = raw.boot_location.unwrap_or_default();
        if boot_location != BootLocation::Modules {
            warnings.push("boot-location: new is deprecated, use boot-location: modules (as rpm-ostree warns)".into());
        }
        Ok(Treefile {
            path: path.to_owned(),
            name: name.to_owned(),
            arch,
            releasever: raw.releasever,
            ref_: checked.ref_,
            repos: raw.repos.unwrap_or_default(),
            packages: checked.packages,
            exclude_packages: checked.exclude_packages,
            recommends: raw.recommends.unwrap_or(true),
            add_commit_metadata: raw.add_commit_metadata.unwrap_or_default(),
            automatic_version_prefix: raw.automatic_version_prefix,
            remove_files: checked.remove_files,
            documentation: raw.documentation.unwrap_or(true),
            units: raw.units.unwrap_or_default(),
            default_target: raw.default_target,
            etc_group_members: raw.etc_group_members.unwrap_or_default(),
            ignore_removed_users: raw.ignore_removed_users.unwrap_or_default(),
            ignore_removed_groups: raw.ignore_removed_groups.unwrap_or_default(),
            initramfs_args: raw.initramfs_args.unwrap_or_default(),
            postprocess_script: raw.postprocess_script,
            external_digests: checked.external_digests,
            postprocess: raw.postprocess.unwrap_or_default(),
            machineid_compat: raw.machineid_compat.unwrap_or(true),
            variables: vars,
            warnings,
            remove_from_packages: checked.remove_from_packages,
            files_remove_regex: checked.files_remove_regex,
            add_files: checked.add_files,
            mutate_os_release,
            tmp_is_dir: raw.tmp_is_dir.unwrap_or(false),
            readonly_executables: raw.readonly_executables.unwrap_or(false),
            container_cmd: raw.container_cmd.unwrap_or_default(),
            boot_location,
            rpmdb: raw.rpmdb.unwrap_or_default(),
            preserve_passwd: checked.preserve_passwd,
            check_passwd: checked.check_passwd,
            check_groups: checked.check_groups,
            lockfile_repos: raw.lockfile_repos.unwrap_or_default(),
            repo_packages: checked.repo_packages,
            ostree_layers: raw.ostree_layers.unwrap_or_default(),
            ostree_override_layers: raw.ostree_override_layers.unwrap_or_default(),
            container: raw.container.unwrap_or(false),
            opt_usrlocal: checked.opt_usrlocal,
            repovars: checked.repovars,
            selinux: raw.selinux.unwrap_or(false),
            selinux_label_version,
        })
    }

    /// The repositories the treefile names, from the `*.repo` files beside it, with dnf's variables
    /// (`$basearch`, `$releasever`) and fedostree's `$devrepo` (`devrepo`) expanded.
    pub fn load_repos(&self, devrepo: &Path) -> anyhow::Result<Vec<crate::repo::RepoConfig>> {
        self.load_repos_with(devrepo, LockfileRepos::Disabled)
    }

    /// [`Treefile::load_repos`], with the `lockfile-repos` after `repos` when lockfiles are in use.
    pub fn load_repos_with(
        &self,
        devrepo: &Path,
        lockfile_repos: LockfileRepos,
    ) -> anyhow::Result<Vec<crate::repo::RepoConfig>> {
        let releasever = self.releasever.as_ref().map(|r| r.to_string());
        // dnf's variables from the environment (`DNF_VAR_name`), then the treefile's `repovars`.
        let mut extra: BTreeMap<String, String> = std::env::vars()
            .filter_map(|(k, v)| Some((k.strip_prefix("DNF_VAR_")?.to_owned(), v)))
            .collect();
        extra.extend(self.repovars.clone());
        let vars = crate::repo::RepoVars {
            basearch: self.arch.as_str(),
            releasever: releasever.as_deref(),
            devrepo,
            extra: &extra,
        };
        let mut ids = self.repos.clone();
        if lockfile_repos == LockfileRepos::Enabled {
            ids.extend(self.lockfile_repos.iter().filter(|r| !self.repos.contains(r)).cloned());
        }
        crate::repo::load_repos(self.dir(), &ids, &vars)
    }

    /// The directory holding the top-level treefile and its `*.repo` files.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Canonical serialization of the merged treefile, an input of the compose hash.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("treefile serializes")
    }
}

/// The keys of a merged treefile that [`Treefile::load`] checks, or computes from, taken out of it.
struct CheckedKeys {
    ref_: String,
    packages: Vec<String>,
    exclude_packages: Vec<String>,
    remove_files: Vec<String>,
    external_digests: Vec<String>,
    add_files: Vec<AddFile>,
    remove_from_packages: Vec<Vec<String>>,
    files_remove_regex: BTreeMap<String, Vec<regex::Regex>>,
    repovars: BTreeMap<String, String>,
    opt_usrlocal: OptUsrLocal,
    check_passwd: AccountCheck<PasswdIds>,
    check_groups: AccountCheck<u32>,
    repo_packages: Vec<RepoPackages>,
    preserve_passwd: bool,
}

impl CheckedKeys {
    /// Take the keys that need checks or digests out of the merged `raw`, in order; errors name `path`.
    fn take(raw: &mut RawTreefile, path: &Path, arch: Arch, vars: &Variables) -> Result<CheckedKeys, TreefileError> {
        let invalid = |msg: String| TreefileError::Invalid {
            path: path.to_owned(),
            msg,
        };
        let mut packages = raw.packages.take().unwrap_or_default();
        packages.extend(raw.packages_for(arch.as_str()).unwrap_or_default());
        let packages = split_names(packages);
        let ref_ = raw
            .ref_
            .take()
            .ok_or_else(|| invalid("missing mandatory key `ref`".into()))?;
        let ref_ = treefile_vars::substitute(&ref_, vars);
        treefile_checks::check_ref(&ref_).map_err(invalid)?;
        let remove_files = raw.remove_files.take().unwrap_or_default();
        treefile_checks::check_remove_files(&remove_files).map_err(invalid)?;
        if packages.is_empty() {
            return Err(invalid(format!("no packages for {arch}")));
        }
        let exclude_packages = split_names(raw.exclude_packages.take().unwrap_or_default());
        treefile_checks::check_package_names(&packages, &exclude_packages).map_err(invalid)?;
        raw.substitute_variables(vars);
        let mut external_digests = Vec::new();
        let add_files = digest_scripts_and_add_files(raw, &mut external_digests, &invalid)?;
        let remove_from_packages = raw.remove_from_packages.take().unwrap_or_default();
        let files_remove_regex = compile_remove_from_packages(&remove_from_packages)
            .map_err(|msg| invalid(format!("`remove-from-packages`: {msg}")))?;
        let repovars = raw.repovars.take().unwrap_or_default();
        treefile_checks::check_repovars(&repovars).map_err(invalid)?;
        let opt_usrlocal = raw.opt_usrlocal.unwrap_or_default();
        check_opt_usrlocal(opt_usrlocal).map_err(invalid)?;
        let check_passwd = raw.check_passwd.take().unwrap_or_default();
        let check_groups = raw.check_groups.take().unwrap_or_default();
        digest_account_files(&check_passwd, &check_groups, &mut external_digests, &invalid)?;
        let repo_packages = raw.repo_packages.take().unwrap_or_default();
        check_repo_packages(&repo_packages).map_err(invalid)?;
        let preserve_passwd = raw.preserve_passwd.unwrap_or(true);
        check_account_sources(preserve_passwd, &check_passwd, &check_groups).map_err(invalid)?;
        if let Some(prefix) = &raw.automatic_version_prefix {
            crate::version::check_version_prefix(prefix)
                .map_err(|msg| invalid(format!("`automatic-version-prefix`: {msg}")))?;
        }
        Ok(CheckedKeys {
            ref_,
            packages,
            exclude_packages,
            remove_files,
            external_digests,
            add_files,
            remove_from_packages,
            files_remove_regex,
            repovars,
            opt_usrlocal,
            check_passwd,
            check_groups,
            repo_packages,
            preserve_passwd,
        })
    }
}

/// The SHA-256 of a file the treefile names: an input of the compose, like the treefile itself.
fn file_digest(file: &Path) -> Result<String, TreefileError> {
    use sha2::Digest;
    let bytes = fs_err::read(file).map_err(|source| TreefileError::Io {
        path: file.to_owned(),
        source,
    })?;
    Ok(hex::encode(sha2::Sha256::digest(bytes)))
}

/// Digest `postprocess-script` and the `add-files` sources (which must be files); returns `add-files`.
fn digest_scripts_and_add_files(
    raw: &mut RawTreefile,
    external_digests: &mut Vec<String>,
    invalid: &dyn Fn(String) -> TreefileError,
) -> Result<Vec<AddFile>, TreefileError> {
    if let Some(script) = &raw.postprocess_script {
        external_digests.push(format!("postprocess-script {}", file_digest(script)?));
    }
    let add_files = raw.add_files.take().unwrap_or_default();
    for f in &add_files {
        if !f.source.is_file() {
            return Err(invalid(format!("`add-files`: {} is not a file", f.source.display())));
        }
        external_digests.push(format!(
            "add-files {:?} {}",
            f.source_as_written,
            file_digest(&f.source)?
        ));
    }
    Ok(add_files)
}

/// Digest the `check-passwd`/`check-groups` files (which must exist) into `external_digests`.
fn digest_account_files(
    check_passwd: &AccountCheck<PasswdIds>,
    check_groups: &AccountCheck<u32>,
    external_digests: &mut Vec<String>,
    invalid: &dyn Fn(String) -> TreefileError,
) -> Result<(), TreefileError> {
    for (key, file) in [
        ("check-passwd", check_file(Some(check_passwd))),
        ("check-groups", check_file(Some(check_groups))),
    ] {
        if let Some(file) = file {
            if !file.is_file() {
                return Err(invalid(format!("`{key}`: {} is not a file", file.display())));
            }
            external_digests.push(format!("{key} {}", file_digest(file)?));
        }
    }
    Ok(())
}

/// `opt-usrlocal: state-overlay` needs ostree units this ostree lacks.
fn check_opt_usrlocal(opt_usrlocal: OptUsrLocal) -> Result<(), String> {
    if opt_usrlocal == OptUsrLocal::StateOverlay {
        return Err(
            "`opt-usrlocal: state-overlay` needs ostree's ostree-state-overlay@ units (ostree 2023.3); \
                  this ostree (2022.7) has none: use `var` or `root`"
                .into(),
        );
    }
    Ok(())
}

/// Every `repo-packages` entry names at least one package.
fn check_repo_packages(repo_packages: &[RepoPackages]) -> Result<(), String> {
    for rp in repo_packages {
        let names = split_names(rp.packages.clone());
        if names.is_empty() {
            return Err(format!(
                "`repo-packages`: the entry for repository `{}` names no package",
                rp.repo
            ));
        }
    }
    Ok(())
}

/// Accounts preserved from files take both from files, or neither (as rpm-ostree).
fn check_account_sources(
    preserve_passwd: bool,
    check_passwd: &AccountCheck<PasswdIds>,
    check_groups: &AccountCheck<u32>,
) -> Result<(), String> {
    if preserve_passwd && check_file(Some(check_passwd)).is_some() != check_file(Some(check_groups)).is_some() {
        return Err(
            "`check-passwd` and `check-groups` must both be of type file or neither: accounts are \
                  preserved from the files or from the previous commit, not one from each (as rpm-ostree)"
                .into(),
        );
    }
    Ok(())
}

/// Find a tree by name under `trees_dir` (`dev/minimal` → `trees/dev/minimal.yaml`) or take a path.
pub fn locate(tree: &str, trees_dir: &Path) -> Result<(PathBuf, String), TreefileError> {
    let as_path = Path::new(tree);
    if as_path.is_file() {
        let name = as_path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        return Ok((as_path.to_owned(), name));
    }
    for ext in ["yaml", "yml", "json"] {
        let p = trees_dir.join(format!("{tree}.{ext}"));
        if p.is_file() {
            return Ok((p, tree.to_owned()));
        }
    }
    Err(TreefileError::Io {
        path: trees_dir.join(format!("{tree}.yaml")),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no tree named `{tree}` and no such file"),
        ),
    })
}

/// rpm-ostree accepts several whitespace-separated names in one list entry.
fn split_names(v: Vec<String>) -> Vec<String> {
    v.iter().flat_map(|s| s.split_whitespace().map(str::to_owned)).collect()
}

fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start_matches(['"', '\'']);
            l.starts_with(key)
                && l[key.len()..]
                    .trim_start_matches(['"', '\''])
                    .trim_start()
                    .starts_with(':')
        })
        .map(|i| i + 1)
        .unwrap_or(1)
}

/// The resolved file of a `check-passwd`/`check-groups` of type file.
pub fn check_file<E>(check: Option<&AccountCheck<E>>) -> Option<&Path> {
    match check {
        Some(AccountCheck::File { path, .. }) => Some(path),
        _ => None,
    }
}

/// `remove-from-packages` entries are `[package, regex, ...]`; the patterns are searched (not anchored)
/// in each file's path as the commit will hold it, as rpm-ostree's checkout filter does with GLib's
/// JavaScript-compatible regexes.
fn compile_remove_from_packages(entries: &[Vec<String>]) -> Result<BTreeMap<String, Vec<regex::Regex>>, String> {
    let mut rules: BTreeMap<String, Vec<regex::Regex>> = BTreeMap::new();
    for (n, entry) in entries.iter().enumerate() {
        let [package, patterns @ ..] = entry.as_slice() else {
            return Err(format!("entry {} is empty", n + 1));
        };
        if patterns.is_empty() {
            return Err(format!("entry {} (`{package}`) names no pattern", n + 1));
        }
        for p in patterns {
            let re = regex::Regex::new(p).map_err(|e| format!("entry {} (`{package}`): {e}", n + 1))?;
            rules.entry(package.clone()).or_default().push(re);
        }
    }
    Ok(rules)
}

/// rpm-ostree accepts these keys but has deprecated them; fedostree ignores them and says so.
fn deprecation_warnings(rojig: &Option<serde_yaml_ng::Value>, cliwrap: Option<bool>) -> Vec<String> {
    let mut w = Vec::new();
    if rojig.is_some() {
        w.push("treefile key `rojig` is deprecated (rpm-ostree no longer uses it): ignored".to_owned());
    }
    if cliwrap == Some(true) {
        w.push("treefile key `cliwrap` is deprecated and slated for removal in rpm-ostree: ignored".to_owned());
    }
    w
}

/// The include walk of one treefile for one architecture.
struct Walk {
    arch: Arch,
    /// The files being loaded, outermost first: a cycle is an error naming them.
    chain: Vec<PathBuf>,
    /// Every file loaded so far: including one twice is an error, as in rpm-ostree.
    seen: Vec<PathBuf>,
    /// Variables in walk order; the first definition wins (the includer's over its includes').
    vars: Variables,
}

impl Walk {
    /// Load one file and, depth first, what it includes. A file's `conditional-include` sees the
    /// variables known when it is read, before its own includes, as in rpm-ostree.
    fn load(&mut self, path: &Path) -> Result<RawTreefile, TreefileError> {
        let canonical = self.enter(path)?;
        let (text, mut raw) = read_raw(path)?;

        let invalid = |key: &str, msg: String| TreefileError::Invalid {
            path: path.to_owned(),
            msg: format!("line {}: `{key}`: {msg}", line_of_key(&text, key)),
        };
        resolve_paths(&mut raw, path, &invalid)?;
        raw.normalize().map_err(|(key, msg)| invalid(key, msg))?;
        self.define_variables(&mut raw, &invalid)?;

        let mut includes = raw.include.take().map(Includes::into_vec).unwrap_or_default();
        let mut raw = self.conditional_includes(raw, &mut includes, &text, path, &invalid)?;
        // After the inline content: it may set releasever too.
        if matches!(raw.releasever, Some(VarValue::Bool(_))) {
            return Err(invalid("releasever", "must be a string or a number".into()));
        }

        self.chain.push(canonical);
        let dir = path.parent().unwrap_or(Path::new("."));
        for inc in includes {
            let included = self.load(&dir.join(&inc))?;
            raw = raw.merge_over(included);
        }
        self.chain.pop();
        Ok(raw)
    }

    /// Note `path` as seen unless it makes a cycle, a repeat or too deep nesting; returns it canonical.
    fn enter(&mut self, path: &Path) -> Result<PathBuf, TreefileError> {
        let canonical = path.canonicalize().map_err(|source| TreefileError::Io {
            path: path.to_owned(),
            source,
        })?;
        if let Some(pos) = self.chain.iter().position(|p| *p == canonical) {
            let mut cycle = self.chain[pos..].to_vec();
            cycle.push(canonical);
            return Err(TreefileError::IncludeCycle(cycle));
        }
        if self.seen.contains(&canonical) {
            return Err(TreefileError::Invalid {
                path: path.to_owned(),
                msg: "included twice (rpm-ostree refuses that too)".into(),
            });
        }
        if self.chain.len() >= INCLUDE_MAX_DEPTH {
            return Err(TreefileError::IncludeDepth { path: path.to_owned() });
        }
        self.seen.push(canonical.clone());
        Ok(canonical)
    }

    /// Add the file's checked `variables`, `basearch` and `releasever` to the walk's (first one wins).
    fn define_variables(
        &mut self,
        raw: &mut RawTreefile,
        invalid: &dyn Fn(&str, String) -> TreefileError,
    ) -> Result<(), TreefileError> {
        let mut own = raw.variables.take().unwrap_or_default();
        treefile_checks::check_variables(&own).map_err(|msg| invalid("variables", msg))?;
        own.insert("basearch".into(), VarValue::String(self.arch.as_str().into()));
        if let Some(r) = &raw.releasever {
            own.insert("releasever".into(), r.clone());
        }
        for (k, v) in own {
            self.vars.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// Apply the `conditional-include` entries that hold now: inline ones merged, files added to `includes`.
    fn conditional_includes(
        &self,
        mut raw: RawTreefile,
        includes: &mut Vec<String>,
        text: &str,
        path: &Path,
        invalid: &dyn Fn(&str, String) -> TreefileError,
    ) -> Result<RawTreefile, TreefileError> {
        for (n, entry) in raw
            .conditional_include
            .take()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let entry_error = |msg: String| invalid("conditional-include", format!("entry {}: {msg}", n + 1));
            if !treefile_vars::all_hold(&entry.conditions.into_vec(), &self.vars).map_err(entry_error)? {
                continue;
            }
            match entry.include {
                // Written inline: merged into this file at once (this file wins).
                serde_yaml_ng::Value::Mapping(m) => {
                    let inline = parse_inline(&m, text, path, &entry_error)?;
                    raw = raw.merge_over(inline);
                }
                files => {
                    let files: Includes = serde_yaml_ng::from_value(files)
                        .map_err(|_| entry_error("`include` must be a file, a list of files or a treefile".into()))?;
                    includes.extend(files.into_vec());
                }
            }
        }
        Ok(raw)
    }
}

/// Read one treefile: its text (for errors' line numbers) and its keys, checked before they are parsed.
fn read_raw(path: &Path) -> Result<(String, RawTreefile), TreefileError> {
    let text = fs_err::read_to_string(path).map_err(|source| TreefileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(|e| TreefileError::Syntax {
        path: path.to_owned(),
        msg: e.to_string(),
    })?;
    let map = match value {
        serde_yaml_ng::Value::Mapping(m) => m,
        serde_yaml_ng::Value::Null => serde_yaml_ng::Mapping::new(),
        _ => {
            return Err(TreefileError::Syntax {
                path: path.to_owned(),
                msg: "a treefile must be a mapping".into(),
            })
        }
    };
    check_keys(&map, &text, path)?;
    let raw: RawTreefile = serde_yaml_ng::from_str(&text).map_err(|e| TreefileError::Syntax {
        path: path.to_owned(),
        msg: e.to_string(),
    })?;
    Ok((text, raw))
}

/// Resolve the paths a file names against its directory, checking `add-files` destinations.
fn resolve_paths(
    raw: &mut RawTreefile,
    path: &Path,
    invalid: &dyn Fn(&str, String) -> TreefileError,
) -> Result<(), TreefileError> {
    if let Some(script) = raw.postprocess_script.take() {
        raw.postprocess_script = Some(path.parent().unwrap_or(Path::new(".")).join(script));
    }
    for f in raw.add_files.iter_mut().flatten() {
        if !add_files_dest_is_valid(&f.dest) {
            return Err(invalid(
                "add-files",
                format!(
                    "unsupported destination `{}` (rpm-ostree allows /usr except /usr/local, /etc, /bin, /sbin, /lib, /lib64)",
                    f.dest
                ),
            ));
        }
        f.source = path.parent().unwrap_or(Path::new(".")).join(&f.source_as_written);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(c) = &mut raw.check_passwd {
        c.resolve_file(dir);
    }
    if let Some(c) = &mut raw.check_groups {
        c.resolve_file(dir);
    }
    Ok(())
}

/// An inline `conditional-include` treefile, checked like the including file's keys and normalized.
fn parse_inline(
    m: &serde_yaml_ng::Mapping,
    text: &str,
    path: &Path,
    entry_error: &dyn Fn(String) -> TreefileError,
) -> Result<RawTreefile, TreefileError> {
    if let Some(k) = m.keys().filter_map(|k| k.as_str()).find(|k| NOT_INLINE.contains(k)) {
        return Err(entry_error(format!("an inline treefile cannot use `{k}`")));
    }
    check_keys(m, text, path)?;
    // Through text: serde_yaml's errors from text name the key at fault.
    let inline_text = serde_yaml_ng::to_string(m).unwrap_or_default();
    let mut inline: RawTreefile =
        serde_yaml_ng::from_str(&inline_text).map_err(|e| entry_error(format!("inline treefile: {e}")))?;
    if check_file(inline.check_passwd.as_ref()).is_some() || check_file(inline.check_groups.as_ref()).is_some() {
        return Err(entry_error(
            "an inline treefile cannot name a check-passwd/check-groups file".into(),
        ));
    }
    inline
        .normalize()
        .map_err(|(key, msg)| entry_error(format!("`{key}`: {msg}")))?;
    Ok(inline)
}

/// Every key of `map` is a treefile key fedostree implements; rpm-ostree keys it does not
/// implement yet, and unknown keys, are errors naming file and line.
fn check_keys(map: &serde_yaml_ng::Mapping, text: &str, path: &Path) -> Result<(), TreefileError> {
    for key in map.keys() {
        let key = key.as_str().unwrap_or_default();
        let line = line_of_key(text, key);
        if NOT_SUPPORTED_YET.contains(&key) {
            return Err(TreefileError::NotSupported {
                path: path.to_owned(),
                line,
                key: key.into(),
            });
        }
        let known = KEYS.contains(&key);
        if !known {
            return Err(TreefileError::UnknownKey {
                path: path.to_owned(),
                line,
                key: key.into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use indoc::indoc;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const VALID: &str = indoc! {"
        ref: fedostree/test/${basearch}/t
        repos: [dev]
        packages: [kernel, 'busybox fedostree-base']
        packages-aarch64: [arm-only]
        packages-x86_64: [x86-only]
        exclude-packages: [fedostree-motd]
        recommends: false
        automatic-version-prefix: '1.<date:%Y>'
        add-commit-metadata:
          fedostree.stream: dev
        remove-files: [usr/share/doc/busybox]
        documentation: false
    "};

    #[test]
    fn parses_valid_treefile_for_each_arch() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.yaml", VALID);
        let t = Treefile::load(&p, "t", Arch::Aarch64).unwrap();
        assert_eq!(t.ref_, "fedostree/test/aarch64/t");
        assert_eq!(t.packages, ["kernel", "busybox", "fedostree-base", "arm-only"]);
        assert_eq!(t.exclude_packages, ["fedostree-motd"]);
        assert!(!t.recommends && !t.documentation);
        let x = Treefile::load(&p, "t", Arch::X86_64).unwrap();
        assert_eq!(x.packages.last().unwrap(), "x86-only");
        assert_eq!(x.add_commit_metadata["fedostree.stream"], "dev");
    }

    #[test]
    fn real_tree_keys_merge_like_rpm_ostree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("base")).unwrap();
        write(
            &d.path().join("base"),
            "b.yaml",
            indoc! {"
                ref: b
                packages: [systemd]
                units: [systemd-networkd.service]
                default-target: multi-user.target
                etc-group-members: [wheel]
                ignore-removed-users: [olduser]
                ignore-removed-groups: [oldgroup]
                initramfs-args: [--omit, crypt]
                postprocess-script: post.sh
                machineid-compat: false
            "},
        );
        write(&d.path().join("base"), "post.sh", "#!/bin/sh\n");
        let p = write(
            d.path(),
            "top.yaml",
            "include: base/b.yaml\nref: t\npackages: [docker.io]\nunits: [docker.service]\netc-group-members: [docker]\n",
        );
        let t = Treefile::load(&p, "top", Arch::X86_64).unwrap();
        assert_eq!(t.units, ["systemd-networkd.service", "docker.service"]);
        assert_eq!(t.default_target.as_deref(), Some("multi-user.target"));
        assert_eq!(t.etc_group_members, ["wheel", "docker"]);
        assert_eq!(t.ignore_removed_users, ["olduser"]);
        assert_eq!(t.ignore_removed_groups, ["oldgroup"]);
        assert_eq!(t.initramfs_args, ["--omit", "crypt"]);
        assert_eq!(
            t.postprocess_script,
            Some(d.path().join("base/post.sh")),
            "relative to its own treefile"
        );
        assert!(!t.machineid_compat);

        // The includer replaces scalars; initramfs-args is a list (the included file's first); defaults hold.
        let p = write(
            d.path(),
            "over.yaml",
            "include: base/b.yaml\nref: o\ninitramfs-args: [--no-compress]\nmachineid-compat: true\ndefault-target: graphical.target\n",
        );
        let o = Treefile::load(&p, "over", Arch::X86_64).unwrap();
        assert_eq!(o.initramfs_args, ["--omit", "crypt", "--no-compress"]);
        assert!(o.machineid_compat);
        assert_eq!(o.default_target.as_deref(), Some("graphical.target"));
        let p = write(d.path(), "plain.yaml", "ref: p\npackages: [x]\n");
        let plain = Treefile::load(&p, "plain", Arch::X86_64).unwrap();
        assert!(plain.machineid_compat, "rpm-ostree's default");
        assert!(plain.units.is_empty() && plain.initramfs_args.is_empty() && plain.postprocess_script.is_none());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.yaml", "ref: a\npackages: [x]\npacakges: [y]\n");
        let e = Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("t.yaml:3: unknown treefile key `pacakges`"), "{e}");
    }

    #[test]
    fn rpm_ostree_key_not_supported_yet() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.yaml", "ref: a\npackages: [x]\nsysroot-readonly: true\n");
        let e = Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string();
        assert!(
            e.contains("t.yaml:3: treefile key `sysroot-readonly` (rpm-ostree) is not supported yet"),
            "{e}"
        );
        let p = write(d.path(), "t.yaml", "ref: a\npackages: [x]\nselinux-label-version: 2\n");
        let e = Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string();
        assert!(
            e.contains("t.yaml: `selinux-label-version`: 2 is not a label version (0 or 1)"),
            "{e}"
        );
        let p = write(
            d.path(),
            "t.yaml",
            "ref: a\npackages: [x]\nrepovars: {releasever: \"41\"}\n",
        );
        let e = Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("`repovars`: `releasever` cannot be set here"), "{e}");
    }

    #[test]
    fn type_errors_and_missing_ref() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.yaml", "ref: a\npackages: 5\n");
        let e = Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("t.yaml") && e.contains("packages"), "{e}");
        let p = write(d.path(), "n.yaml", "packages: [x]\n");
        let e = Treefile::load(&p, "n", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("n.yaml: missing mandatory key `ref`"), "{e}");
    }

    #[test]
    fn includes_merge_like_rpm_ostree() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "base.yaml", "ref: base/ref\nrepos: [a]\npackages: [one]\nrecommends: false\nadd-commit-metadata: {k: base, only-base: 1}\n");
        write(
            d.path(),
            "mid.yaml",
            "include: base.yaml\npackages: [two]\nexclude-packages: [x]\n",
        );
        let p = write(
            d.path(),
            "top.yaml",
            "include: [mid.yaml]\nref: top/ref\npackages: [three]\nadd-commit-metadata: {k: top}\n",
        );
        let t = Treefile::load(&p, "top", Arch::X86_64).unwrap();
        assert_eq!(t.ref_, "top/ref");
        assert_eq!(t.packages, ["one", "two", "three"]);
        assert_eq!(t.repos, ["a"]);
        assert!(!t.recommends, "scalar inherited from include");
        assert_eq!(t.add_commit_metadata["k"], "top");
        assert_eq!(t.add_commit_metadata["only-base"], 1);
    }

    #[test]
    fn include_cycle_is_detected() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "include: b.yaml\nref: a\npackages: [x]\n");
        write(d.path(), "b.yaml", "include: a.yaml\n");
        let e = Treefile::load(&d.path().join("a.yaml"), "a", Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("include cycle:") && e.contains("a.yaml → ") && e.contains("b.yaml"),
            "{e}"
        );
    }

    #[test]
    fn include_depth_is_limited() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..60 {
            write(d.path(), &format!("{i}.yaml"), &format!("include: {}.yaml\n", i + 1));
        }
        write(d.path(), "60.yaml", "ref: a\npackages: [x]\n");
        let e = Treefile::load(&d.path().join("0.yaml"), "0", Arch::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nested deeper than 50"), "{e}");
    }

    #[test]
    fn missing_include_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.yaml", "include: nope.yaml\nref: a\npackages: [x]\n");
        let e = Treefile::load(&p, "a", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("nope.yaml"), "{e}");
    }

    #[test]
    fn remove_files_must_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.yaml", "ref: a\npackages: [x]\nremove-files: [../etc]\n");
        assert!(Treefile::load(&p, "a", Arch::X86_64)
            .unwrap_err()
            .to_string()
            .contains("remove-files"));
    }

    #[test]
    fn bad_values_are_errors_naming_file_and_key_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.yaml", "ref: r\npackages: [\"busybox\\0x\"]\n");
        let e = Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string();
        assert!(
            e.contains("t.yaml") && e.contains("`packages`") && e.contains("control character"),
            "{e}"
        );
        let p = write(
            d.path(),
            "u.yaml",
            "ref: r\npackages: [a]\nautomatic-version-prefix: '1.<date:%Q>'\n",
        );
        let e = Treefile::load(&p, "u", Arch::X86_64).unwrap_err().to_string();
        assert!(
            e.contains("u.yaml") && e.contains("`automatic-version-prefix`") && e.contains("%Q"),
            "{e}"
        );
    }

    #[test]
    fn variables_and_conditional_includes() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "x86.yaml",
            "packages: [x86-tools]\npostprocess: ['#!/bin/sh\necho x86']\n",
        );
        write(
            d.path(),
            "new.yaml",
            "packages: [new-thing]\nadd-commit-metadata: {era: new}\n",
        );
        write(d.path(), "old.yaml", "packages: [old-thing]\n");
        write(
            d.path(),
            "common.yaml",
            indoc! {r#"
                variables:
                  stream: ignored-the-includer-wins
                  from_common: 7
                conditional-include:
                  - if: from_common == 7
                    include:
                      packages: [inline-pkg]
            "#},
        );
        let p = write(
            d.path(),
            "top.yaml",
            indoc! {r#"
                ref: os/${releasever}/${basearch}/${stream}
                releasever: 41
                variables:
                  stream: next
                  rawhide: false
                include: common.yaml
                packages: [base]
                automatic-version-prefix: "${releasever}.<date:%Y%m%d>"
                add-commit-metadata: {stream: "${stream}", nested: {s: "${stream}"}}
                postprocess: ['#!/bin/sh
                  echo top']
                conditional-include:
                  - if: basearch == "x86_64"
                    include: x86.yaml
                  - if: [releasever >= 40, rawhide == false]
                    include: [new.yaml]
                  - if: releasever < 40
                    include: old.yaml
            "#},
        );
        let t = Treefile::load(&p, "top", Arch::X86_64).unwrap();
        assert_eq!(t.ref_, "os/41/x86_64/next");
        assert_eq!(t.releasever, Some(VarValue::Number(41)));
        assert_eq!(t.automatic_version_prefix.as_deref(), Some("41.<date:%Y%m%d>"));
        assert_eq!(t.add_commit_metadata["stream"], "next");
        assert_eq!(
            t.add_commit_metadata["nested"]["s"], "${stream}",
            "only top-level strings"
        );
        assert_eq!(t.add_commit_metadata["era"], "new");
        // Included files' items first; among the includes the last one's first.
        assert_eq!(t.packages, ["new-thing", "x86-tools", "inline-pkg", "base"]);
        assert_eq!(t.postprocess.len(), 2);
        assert!(t.postprocess[0].contains("x86") && t.postprocess[1].contains("top"));
        assert_eq!(t.variables["from_common"], VarValue::Number(7));
        assert_eq!(t.variables["stream"], VarValue::String("next".into()));

        let a = Treefile::load(&p, "top", Arch::Aarch64).unwrap();
        assert_eq!(a.ref_, "os/41/aarch64/next");
        assert_eq!(a.packages, ["new-thing", "inline-pkg", "base"]);
        assert_eq!(a.postprocess.len(), 1);

        let json: serde_json::Value = serde_json::from_str(&t.canonical_json()).unwrap();
        assert_eq!(json["basearch"], "x86_64");
        assert_eq!(json["releasever"], 41);
        assert!(json.get("variables").is_none());
    }

    #[test]
    fn variable_errors_name_file_and_key() {
        let d = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let p = write(d.path(), "t.yaml", text);
            Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string()
        };
        let e = load("ref: a\npackages: [x]\nvariables: {basearch: ppc}\n");
        assert!(
            e.contains("t.yaml: line 3: `variables`") && e.contains("`basearch`"),
            "{e}"
        );
        let e = load("ref: a\npackages: [x]\nconditional-include:\n  - if: nosuch == 1\n    include: a.yaml\n");
        assert!(
            e.contains("line 3: `conditional-include`") && e.contains("undefined variable `nosuch`"),
            "{e}"
        );
        let e = load("ref: a\npackages: [x]\nreleasever: \"41\"\nconditional-include:\n  - if: releasever >= 40\n    include: a.yaml\n");
        assert!(e.contains("is a string"), "{e}");
        let e = load("ref: a\npackages: [x]\nreleasever: true\n");
        assert!(e.contains("`releasever`: must be a string or a number"), "{e}");
        let e = load("ref: a\npackages: [x]\nvariables: {v: \"${x}\"}\n");
        assert!(e.contains("forbidden character"), "{e}");
        let e = load("ref: a\npackages: [x]\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: {include: b.yaml}\n");
        assert!(e.contains("entry 1: an inline treefile cannot use `include`"), "{e}");
        let e = load("ref: a\npackages: [x]\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: {pacakges: [y]}\n");
        assert!(e.contains("unknown treefile key `pacakges`"), "{e}");
        let e = load(
            "ref: a\npackages: [x]\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: {edition: x}\n",
        );
        assert!(e.contains("`edition` (rpm-ostree) is not supported yet"), "{e}");
        let e = load("ref: a\npackages: [x]\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: {add-files: []}\n");
        assert!(e.contains("entry 1: an inline treefile cannot use `add-files`"), "{e}");
        let e = load(
            "ref: a\npackages: [x]\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: {packages: 5}\n",
        );
        assert!(e.contains("entry 1: inline treefile") && e.contains("packages"), "{e}");
        let e = load("ref: a\npackages: [x]\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: {releasever: true}\n");
        assert!(e.contains("must be a string or a number"), "{e}");
        let e = load("ref: a\npackages: [x]\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: {packages: [y]}\n  - if: [basearch != \"s390x\", nosuch == 2]\n    include: a.yaml\n");
        assert!(e.contains("entry 2: if `nosuch == 2`: undefined variable"), "{e}");
        let e = load("ref: os/${stream}\npackages: [x]\n");
        assert!(
            e.contains("`ref` `os/${stream}` names a variable that is not defined"),
            "{e}"
        );
    }

    #[test]
    fn a_file_included_twice_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "common.yaml", "packages: [c]\npostprocess: ['#!/bin/sh']\n");
        write(d.path(), "a.yaml", "include: common.yaml\n");
        write(d.path(), "b.yaml", "include: common.yaml\n");
        let p = write(
            d.path(),
            "top.yaml",
            "ref: t\npackages: [x]\ninclude: [a.yaml, b.yaml]\n",
        );
        let e = Treefile::load(&p, "top", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("common.yaml: included twice"), "{e}");
        let p = write(
            d.path(),
            "cond.yaml",
            "ref: t\npackages: [x]\ninclude: common.yaml\nconditional-include:\n  - if: basearch == \"x86_64\"\n    include: common.yaml\n",
        );
        let e = Treefile::load(&p, "cond", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("included twice"), "{e}");
        assert!(
            Treefile::load(&p, "cond", Arch::Aarch64).is_ok(),
            "the false condition includes nothing"
        );
    }

    #[test]
    fn postprocess_script_content_is_read_at_load() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "t.yaml",
            "ref: a\npackages: [x]\npostprocess-script: post.sh\n",
        );
        let e = Treefile::load(&p, "t", Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("post.sh"), "{e}");
        write(d.path(), "post.sh", "#!/bin/sh\necho one\n");
        let one = Treefile::load(&p, "t", Arch::X86_64).unwrap().external_digests;
        write(d.path(), "post.sh", "#!/bin/sh\necho two\n");
        let two = Treefile::load(&p, "t", Arch::X86_64).unwrap().external_digests;
        assert!(
            !one.is_empty() && one != two,
            "a changed script changes the compose's inputs"
        );
    }

    #[test]
    fn legacy_spellings_and_deprecated_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "t.yaml",
            "ref: a\npackages: [x]\ndefault_target: multi-user.target\nautomatic_version_prefix: '2'\nrojig: {name: a, summary: b, license: MIT}\ncliwrap: true\nboot_location: modules\n",
        );
        let t = Treefile::load(&p, "t", Arch::X86_64).unwrap();
        assert_eq!(t.boot_location, BootLocation::Modules);
        assert_eq!(t.default_target.as_deref(), Some("multi-user.target"));
        assert_eq!(t.automatic_version_prefix.as_deref(), Some("2"));
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(t.warnings[0].contains("`rojig` is deprecated") && t.warnings[1].contains("`cliwrap`"));
        let p = write(d.path(), "n.yaml", "ref: a\npackages: [x]\n");
        let t = Treefile::load(&p, "n", Arch::X86_64).unwrap();
        assert_eq!(t.boot_location, BootLocation::New, "rpm-ostree's default");
        assert!(
            t.warnings[0].contains("boot-location: new is deprecated"),
            "{:?}",
            t.warnings
        );
        let p = write(
            d.path(),
            "b.yaml",
            "ref: a\npackages: [x]\ndefault-target: a.target\ndefault_target: b.target\n",
        );
        let e = Treefile::load(&p, "b", Arch::X86_64).unwrap_err().to_string();
        assert!(
            e.contains("b.yaml: line 3: `default-target`: set twice, also as `default_target`"),
            "{e}"
        );
        let p = write(
            d.path(),
            "c.yaml",
            "ref: a\npackages: [x]\ncliwrap: false\nboot-location: modules\n",
        );
        assert!(Treefile::load(&p, "c", Arch::X86_64).unwrap().warnings.is_empty());
    }
}
