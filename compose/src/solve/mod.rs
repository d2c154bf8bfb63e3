//! Depsolving with libsolv, the solver dnf and rpm-ostree use: RPM version semantics, file and
//! soname provides, rich and weak deps, obsoletes. This module is the only place that touches its FFI.
//!
//! Every `unsafe` block below calls libsolv on the pool this `Solver` owns (created in `new`, freed
//! once in `Drop`, never shared across threads) and checks each pointer libsolv returns before use.
#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use std::ffi::{CStr, CString};
use std::path::Path;

#[allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code, clippy::all)]
mod ffi {
    include!(concat!(env!("OUT_DIR"), "/solv_bindings.rs"));
}

/// A package the solver chose, with what fetch needs to get and verify it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SolvedPackage {
    pub name: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// Index of the repository in the list given to [`Solver::add_repo`] order.
    pub repo: usize,
    /// `location href` from primary.xml, relative to the repository's baseurl.
    pub location: String,
    pub checksum_type: String,
    pub checksum: String,
    /// Download size from the repodata (bytes; 0 when the repodata does not say).
    #[serde(default)]
    pub size: u64,
}

impl SolvedPackage {
    /// `name-[epoch:]version-release.arch`, the way rpm prints it.
    pub fn nevra(&self) -> String {
        nevra(&self.name, self.epoch, &self.version, &self.release, &self.arch)
    }
    pub fn evr(&self) -> String {
        evr(self.epoch, &self.version, &self.release)
    }
}

/// `[epoch:]version-release`; epoch 0 is not printed, as rpm does.
pub fn evr(epoch: u32, version: &str, release: &str) -> String {
    if epoch > 0 {
        format!("{epoch}:{version}-{release}")
    } else {
        format!("{version}-{release}")
    }
}

/// `name-[epoch:]version-release.arch`.
pub fn nevra(name: &str, epoch: u32, version: &str, release: &str, arch: &str) -> String {
    format!("{name}-{}.{arch}", evr(epoch, version, release))
}

/// What to solve for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub install: Vec<String>,
    pub exclude: Vec<String>,
    pub recommends: bool,
}

/// A package of the pool, as a filter given to [`Solver::solve_filtered`] sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// `[epoch:]version-release`, as libsolv spells it.
    pub evr: String,
    pub arch: String,
    /// Index of its repository, in [`Solver::add_repo`] order.
    pub repo: usize,
    /// `type:hex` of the RPM in the repodata (rpm-ostree's digest form, e.g. `sha256:…`).
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("no package provides `{0}` in the enabled repositories")]
    NotFound(String),
    #[error("the package set cannot be solved:\n{}", .0.join("\n"))]
    Unsatisfiable(Vec<String>),
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
    #[error("libsolv returned no {0}")]
    Null(&'static str),
}

/// A libsolv pool for one target architecture.
pub struct Solver {
    pool: *mut ffi::Pool,
    repos: usize,
    arch: String,
}

fn cstr(s: &str) -> Result<CString, SolveError> {
    CString::new(s).map_err(|_| SolveError::Nul(s.into()))
}

/// What C sees of `s`: everything before the first NUL (for EVRs, which come from RPM headers).
fn cstr_lossy(s: &str) -> CString {
    let end = s.find('\0').unwrap_or(s.len());
    CString::new(&s[..end]).unwrap_or_default()
}

/// SAFETY: `p` is null or a NUL-terminated string owned by libsolv that outlives this call.
unsafe fn str_of(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl Solver {
    pub fn new(arch: &str) -> Self {
        let a = cstr_lossy(arch);
        // SAFETY: a fresh pool (aborts inside libsolv on OOM, never null); `a` outlives the call.
        unsafe {
            let pool = ffi::pool_create();
            assert!(!pool.is_null(), "pool_create returned NULL");
            // Debian builds libsolv with DEB as the default: without this noarch "does not exist".
            ffi::pool_setdisttype(pool, ffi::DISTTYPE_RPM as i32);
            ffi::pool_setarch(pool, a.as_ptr());
            Solver {
                pool,
                repos: 0,
                arch: arch.to_owned(),
            }
        }
    }

    /// Load one rpm-md repository: primary first, then filelists extending the same solvables.
    pub fn add_repo(&mut self, name: &str, primary: &Path, filelists: Option<&Path>) -> Result<()> {
        self.add_repo_prioritized(name, primary, filelists, 99, 1000)
    }

    /// A repository that could not be loaded (`skip_if_unavailable`): the next one keeps its index.
    pub fn skip_repo(&mut self) {
        self.repos += 1;
    }

    /// [`Solver::add_repo`] with dnf's `priority` (lower wins: a name offered by a repository of a
    /// better priority hides the others' packages of that name) and `cost` (lower preferred).
    pub fn add_repo_prioritized(
        &mut self,
        name: &str,
        primary: &Path,
        filelists: Option<&Path>,
        priority: i32,
        cost: i32,
    ) -> Result<()> {
        let n = cstr(name)?;
        // SAFETY: our pool; `repo` is checked non-null before it is written; the pool owns it after.
        unsafe {
            let repo = ffi::repo_create(self.pool, n.as_ptr());
            if repo.is_null() {
                return Err(SolveError::Null("repository").into());
            }
            (*repo).appdata = self.repos as *mut std::ffi::c_void;
            // libdnf's mapping: libsolv prefers higher numbers.
            (*repo).priority = -priority;
            (*repo).subpriority = -cost;
            self.repos += 1;
            self.load_xml(repo, primary, 0)?;
            if let Some(f) = filelists {
                self.load_xml(repo, f, ffi::REPO_EXTEND_SOLVABLES as i32)?;
            }
            ffi::repo_internalize(repo);
        }
        Ok(())
    }

    /// SAFETY: `repo` is a live repository of this pool.
    unsafe fn load_xml(&self, repo: *mut ffi::Repo, path: &Path, flags: i32) -> Result<()> {
        let p = cstr(path.to_str().context("non-UTF-8 path")?)?;
        let mode = cstr_lossy("r");
        let fp = ffi::solv_xfopen(p.as_ptr(), mode.as_ptr());
        if fp.is_null() {
            bail!("{}: cannot open rpm-md metadata", path.display());
        }
        let r = ffi::repo_add_rpmmd(repo, fp as *mut _, std::ptr::null(), flags);
        libc::fclose(fp as *mut libc::FILE);
        if r != 0 {
            let err = str_of(ffi::pool_errstr(self.pool));
            bail!("{}: invalid rpm-md metadata: {err}", path.display());
        }
        Ok(())
    }

    /// The names of the packages that the repositories loaded `from` onwards (by index) offer for this
    /// pool's architecture or as noarch.
    pub fn names_offered_from(&self, from: usize) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        // SAFETY: solvable ids 2..nsolvables index the pool's solvables; those with a repo are ours.
        unsafe {
            let pool = self.pool;
            for p in 2..(*pool).nsolvables {
                let s = (*pool).solvables.add(p as usize);
                if (*s).repo.is_null() || ((*(*s).repo).appdata as usize) < from {
                    continue;
                }
                let arch = str_of(ffi::pool_id2str(pool, (*s).arch));
                if arch == self.arch || arch == "noarch" {
                    out.insert(str_of(ffi::pool_id2str(pool, (*s).name)));
                }
            }
        }
        out
    }

    /// Compare two `[epoch:]version[-release]` strings with rpm's rules (rpmvercmp).
    pub fn evrcmp(&self, a: &str, b: &str) -> std::cmp::Ordering {
        let (a, b) = (cstr_lossy(a), cstr_lossy(b));
        // SAFETY: our pool; both strings outlive the call.
        let r = unsafe { ffi::pool_evrcmp_str(self.pool, a.as_ptr(), b.as_ptr(), ffi::EVRCMP_COMPARE as i32) };
        r.cmp(&0)
    }

    /// Solve a fresh install of `req` and return the chosen packages sorted by name.
    pub fn solve(&mut self, req: &Request) -> Result<Vec<SolvedPackage>, SolveError> {
        self.solve_filtered(req, |_| true)
    }

    /// [`Solver::solve`] on the packages `keep` accepts (and `req.exclude` does not name): the others
    /// leave the pool first, as dnf's excludes do (lockfiles, `repo-packages`).
    pub fn solve_filtered(
        &mut self,
        req: &Request,
        mut keep: impl FnMut(&Candidate) -> bool,
    ) -> Result<Vec<SolvedPackage>, SolveError> {
        // SAFETY: our pool; queues are initialised before use and freed on every path; the solver and
        // transaction are checked non-null and freed before returning; step ids index the pool.
        unsafe {
            let pool = self.pool;
            self.apply_excludes(|c| !req.exclude.contains(&c.name) && keep(c));
            ffi::pool_addfileprovides(pool);
            ffi::pool_createwhatprovides(pool);

            let mut job: ffi::Queue = std::mem::zeroed();
            ffi::queue_init(&mut job);
            for name in &req.install {
                // dnf's rule: a package of that exact name wins over other packages providing it
                // (kernel-core provides `kernel`, but `kernel` means the kernel package).
                let n = match cstr(name) {
                    Ok(n) => n,
                    Err(e) => {
                        ffi::queue_free(&mut job);
                        return Err(e);
                    }
                };
                let mut sel = self.select(&n, ffi::SELECTION_NAME);
                if sel.is_empty() {
                    sel = self.select(&n, ffi::SELECTION_PROVIDES | ffi::SELECTION_FILELIST);
                }
                if sel.is_empty() {
                    ffi::queue_free(&mut job);
                    return Err(SolveError::NotFound(name.clone()));
                }
                for pair in sel.chunks(2) {
                    ffi::queue_insert2(&mut job, job.count, pair[0] | ffi::SOLVER_INSTALL as i32, pair[1]);
                }
            }
            let solv = ffi::solver_create(pool);
            if solv.is_null() {
                ffi::queue_free(&mut job);
                return Err(SolveError::Null("solver"));
            }
            if !req.recommends {
                ffi::solver_set_flag(solv, ffi::SOLVER_FLAG_IGNORE_RECOMMENDED as i32, 1);
            }
            let nproblems = ffi::solver_solve(solv, &mut job);
            ffi::queue_free(&mut job);
            if nproblems > 0 {
                let problems = (1..=nproblems)
                    .map(|p| format!("  problem {p}: {}", str_of(ffi::solver_problem2str(solv, p))))
                    .collect();
                ffi::solver_free(solv);
                return Err(SolveError::Unsatisfiable(problems));
            }
            let trans = ffi::solver_create_transaction(solv);
            if trans.is_null() {
                ffi::solver_free(solv);
                return Err(SolveError::Null("transaction"));
            }
            let steps = &(*trans).steps;
            let mut out = Vec::with_capacity(steps.count as usize);
            for i in 0..steps.count as usize {
                let p = *steps.elements.add(i);
                out.push(self.describe(p));
            }
            ffi::transaction_free(trans);
            ffi::solver_free(solv);
            out.sort_by(|a, b| a.name.cmp(&b.name).then(a.arch.cmp(&b.arch)));
            Ok(out)
        }
    }

    /// dnf's excludes: packages `keep` refuses vanish from the pool, so a requirement only they
    /// could satisfy reads "nothing provides X needed by Y", naming both sides.
    ///
    /// SAFETY: solvable ids 2..nsolvables index the pool's solvables array.
    unsafe fn apply_excludes(&mut self, mut keep: impl FnMut(&Candidate) -> bool) {
        let pool = self.pool;
        for p in (2..(*pool).nsolvables).rev() {
            let s = (*pool).solvables.add(p as usize);
            if (*s).repo.is_null() {
                continue;
            }
            let d = self.describe(p);
            let candidate = Candidate {
                evr: d.evr(),
                name: d.name,
                arch: d.arch,
                repo: d.repo,
                digest: format!("{}:{}", d.checksum_type, d.checksum),
            };
            if !keep(&candidate) {
                ffi::repo_free_solvable((*s).repo, p, 0);
            }
        }
    }

    /// libsolv's selection for `n` with `flags`, as (how, what) job pairs.
    ///
    /// SAFETY: our pool; the queue is initialised and freed here.
    unsafe fn select(&self, n: &CStr, flags: u32) -> Vec<ffi::Id> {
        let mut sel: ffi::Queue = std::mem::zeroed();
        ffi::queue_init(&mut sel);
        ffi::selection_make(self.pool, &mut sel, n.as_ptr(), flags as i32);
        let out = (0..sel.count as usize).map(|i| *sel.elements.add(i)).collect();
        ffi::queue_free(&mut sel);
        out
    }

    /// SAFETY: `p` is a solvable id of this pool from a transaction, whose repo is one of ours.
    unsafe fn describe(&self, p: ffi::Id) -> SolvedPackage {
        let pool = self.pool;
        let s = (*pool).solvables.add(p as usize);
        let evr = str_of(ffi::pool_id2str(pool, (*s).evr));
        let (epoch, rest) = match evr.split_once(':') {
            Some((e, r)) => (e.parse().unwrap_or(0), r.to_string()),
            None => (0, evr.clone()),
        };
        let (version, release) = rest
            .rsplit_once('-')
            .map(|(v, r)| (v.to_string(), r.to_string()))
            .unwrap_or((rest, String::new()));
        let mut medianr = 0u32;
        let location = str_of(ffi::solvable_lookup_location(s, &mut medianr));
        let mut ctype: ffi::Id = 0;
        let checksum = str_of(ffi::solvable_lookup_checksum(
            s,
            ffi::solv_knownid_SOLVABLE_CHECKSUM as ffi::Id,
            &mut ctype,
        ));
        SolvedPackage {
            name: str_of(ffi::pool_id2str(pool, (*s).name)),
            epoch,
            version,
            release,
            arch: str_of(ffi::pool_id2str(pool, (*s).arch)),
            repo: (*(*s).repo).appdata as usize,
            location,
            checksum_type: str_of(ffi::solv_chksum_type2str(ctype)),
            checksum,
            size: ffi::solvable_lookup_num(s, ffi::solv_knownid_SOLVABLE_DOWNLOADSIZE as ffi::Id, 0),
        }
    }
}

impl Drop for Solver {
    fn drop(&mut self) {
        // SAFETY: the pool was created in `new` and is freed exactly once, here.
        unsafe { ffi::pool_free(self.pool) }
    }
}

/// Compare two EVR strings with rpm's rules, without a repository.
pub fn evrcmp(a: &str, b: &str) -> std::cmp::Ordering {
    // One pool per thread: lockfiles compare every candidate of a locked name.
    thread_local!(static POOL: Solver = Solver::new("noarch"));
    POOL.with(|p| p.evrcmp(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn rpmvercmp_corner_cases() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1:1.0", "2.0", Greater),
            ("0:2.0", "2.0", Equal),
            ("2.0-1", "2.0-2", Less),
            ("5.5p1", "5.5p10", Less),
            ("1.a", "1.1", Less),
            ("1.0-1.fc40", "1.0-1.fc39", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(evrcmp(a, b), want, "{a} vs {b}");
        }
    }
}
