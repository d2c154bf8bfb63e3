//! The update pipeline: lock → recover → (create | copy) → attach → init/pull-local/deploy/prune/extract
//! → detach → state.json → atomic swap. Also overlays and backend selection.

use crate::guard::{guard_sysroot, ExpectedSource, GuardedSysroot};
use crate::layout::{self, ImageLock, ImagePaths, ImageStateFile, ResourceRecord, LAYOUT_VERSION};
use crate::resources::{guestfs_env, GuestMount, LoopDevice, Mount, QsdExport};
use crate::{crash_point, sysroot, Backend, BootArtifacts, ImageSpec, ImageState, UpdateStats};
use anyhow::{bail, Context, Result};
use fedostree_util::cleanup;
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::state::StateDir;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Virtual size of a new image.
const DISK_SIZE: &str = "4G";
/// Backing layers an image may have: an update adds one (see `prepare_work_copy`), and the update
/// that would pass this writes a single compacted image instead.
const MAX_LAYERS: usize = 4;
/// Deployments kept after an update: the new default plus one rollback.
pub const KEEP_DEPLOYMENTS: usize = 2;
/// How long a second run waits for the image lock (override: `FEDOSTREE_IMAGE_LOCK_TIMEOUT` seconds).
const LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn which(prog: &str) -> bool {
    which::which(prog).is_ok()
}

/// [`Backend::Qsd`] where we are root and `/dev/fuse`, loop devices and qemu-storage-daemon exist;
/// [`Backend::Guestfs`] otherwise.
pub fn default_backend() -> Backend {
    let qsd_ok = fedostree_util::sys::is_root()
        && Path::new("/dev/fuse").exists()
        && Path::new("/dev/loop-control").exists()
        && which("qemu-storage-daemon");
    if qsd_ok {
        Backend::Qsd
    } else {
        Backend::Guestfs
    }
}

/// A throwaway copy-on-write overlay over `base` for one boot: `qemu-img create -f qcow2 -b BASE -F qcow2`.
/// The base is referenced by absolute path; an overlay must not outlive the next [`update_image`] of its base.
pub fn create_overlay(base: &Path, overlay: &Path) -> Result<()> {
    let base = base
        .canonicalize()
        .with_context(|| format!("overlay base {}", base.display()))?;
    Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&base)
        .arg(overlay)
        .run()
}

fn random_id() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn secs(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

fn lock_timeout() -> Duration {
    std::env::var("FEDOSTREE_IMAGE_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(LOCK_TIMEOUT)
}

/// Bring the cached image for (`spec.tree`, `spec.arch`) to `spec.commit`; create it when missing or when
/// its layout version is stale. Already at the commit: returns at once without mounting anything.
#[tracing::instrument(skip_all, fields(tree = %spec.tree, arch = %spec.arch, commit = %spec.commit))]
pub fn update_image(state: &StateDir, spec: &ImageSpec, backend: Backend) -> Result<ImageState> {
    let t0 = Instant::now();
    cleanup::install_signal_handler();
    let paths = ImagePaths::new(state, &spec.tree, spec.arch)?;
    fs_err::create_dir_all(paths.dir.parent().unwrap())?;
    let _lock = ImageLock::acquire(&paths.lock, lock_timeout())?;
    layout::recover_stale(&paths).context("cleaning up after an interrupted update")?;

    let current =
        layout::read_state(&paths.dir).filter(|s| s.layout_version == LAYOUT_VERSION && paths.disk().is_file());
    if let Some(st) = current.as_ref().filter(|s| s.commit == spec.commit) {
        if let Some(boot) = cached_boot(&paths, st) {
            return Ok(ImageState {
                disk: paths.disk(),
                commit: st.commit.clone().into(),
                image_id: st.image_id.clone(),
                boot,
                created: false,
                updated: false,
                backend,
                stats: UpdateStats {
                    total_s: secs(t0),
                    ..Default::default()
                },
            });
        }
    }
    let mut stats = UpdateStats::default();
    let plan = prepare_work_copy(&paths, spec, current.as_ref(), &mut stats)?;

    let gf_env = match backend {
        Backend::Guestfs => crate::guestfs::supermin_env(state)?,
        Backend::Qsd => vec![],
    };
    if backend == Backend::Guestfs && !plan.created && plan.deploy_needed {
        // Deployments are `chattr +i` and FUSE cannot clear that flag, so ostree could not remove the
        // oldest one through guestmount: clear it with libguestfs itself first.
        clear_immutable_deployments(&plan.work_disk, &gf_env)?;
    }
    let boot = with_sysroot(
        backend,
        &paths,
        &plan.work_disk,
        plan.created,
        &gf_env,
        &mut stats,
        |sr, stats| update_sysroot(sr, spec, &paths, &plan, stats),
    );
    let boot = match boot {
        Ok(b) => b,
        Err(e) => {
            // The owners have released what they could; drop the half-done work copy, keep the old image.
            if let Err(e2) = layout::recover_stale(&paths) {
                tracing::warn!("cleaning up the failed update: {e2:#}");
            }
            return Err(e);
        }
    };
    crash_point("detach");

    commit_work_copy(&paths, spec, &plan, &boot, &mut stats)?;
    stats.total_s = secs(t0);
    tracing::info!(?stats, "image updated");
    Ok(ImageState {
        disk: paths.disk(),
        commit: spec.commit.clone().into(),
        image_id: plan.image_id,
        boot,
        created: plan.created,
        updated: plan.deploy_needed,
        backend,
        stats,
    })
}

/// What one [`update_image`] run decided before attaching: new image or not, deploy or not, and its work copy.
struct UpdatePlan {
    /// No usable current image: the work copy is a fresh, empty qcow2.
    created: bool,
    /// The work copy is not at `spec.commit` yet.
    deploy_needed: bool,
    image_id: String,
    /// `<work>/disk.qcow2`
    work_disk: PathBuf,
    /// The commit the image was at, whose tree kernel arguments a deploy replaces.
    previous: Option<String>,
}

/// Owns the work copy: a new empty qcow2 when there is no current image, else a new top layer over the
/// current one (its files hardlinked in, read-only from then on), or every few updates a compacted copy.
fn prepare_work_copy(
    paths: &ImagePaths,
    spec: &ImageSpec,
    current: Option<&ImageStateFile>,
    stats: &mut UpdateStats,
) -> Result<UpdatePlan> {
    let created = current.is_none();
    fs_err::create_dir_all(&paths.work)?;
    let work_disk = paths.work.join("disk.qcow2");
    let t = Instant::now();
    if created {
        if paths.dir.exists() {
            tracing::info!("rebuilding {} (missing or layout changed)", paths.dir.display());
        }
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o", "cluster_size=65536"])
            .arg(&work_disk)
            .arg(DISK_SIZE)
            .run()?;
        stats.create_s = secs(t);
    } else {
        stats.qcow2_before = layout::allocated_bytes(&paths.dir)?;
        let layers = layout::layers(&paths.dir)?;
        if layers.len() + 1 > MAX_LAYERS && !paths.throwaway {
            // Long chains slow every read down: write one image again, compacted.
            Command::new("qemu-img")
                .args([
                    "convert",
                    "-q",
                    "-f",
                    "qcow2",
                    "-O",
                    "qcow2",
                    "-o",
                    "cluster_size=65536",
                ])
                .arg(paths.disk())
                .arg(&work_disk)
                .run()?;
        } else {
            // The published image becomes a read-only layer under a new, empty top: the update
            // writes only what changes, and the published files are never opened for writing.
            for l in &layers {
                fs_err::hard_link(paths.dir.join(l), paths.work.join(l))?;
            }
            let next = layout::layer_name(layers.len());
            fs_err::hard_link(paths.disk(), paths.work.join(&next))?;
            Command::new("qemu-img")
                .args([
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-o",
                    "cluster_size=65536",
                    "-F",
                    "qcow2",
                    "-b",
                ])
                .arg(&next)
                .arg(&work_disk)
                .run()?;
        }
        stats.copy_s = secs(t);
    }
    crash_point("copy");
    let image_id = match current {
        Some(s) => s.image_id.clone(),
        None => random_id()?,
    };
    let deploy_needed = current.is_none_or(|s| s.commit != spec.commit);
    Ok(UpdatePlan {
        created,
        deploy_needed,
        image_id,
        work_disk,
        previous: current.map(|s| s.commit.clone()),
    })
}

/// `guestfish` on the qcow2 `disk`, with the libguestfs environment (and `gf_env`) set; commands follow.
fn guestfish_on(disk: &Path, gf_env: &[(&str, PathBuf)]) -> Command {
    let mut c = Command::new("guestfish");
    guestfs_env(&mut c)
        .envs(gf_env.iter().map(|(k, v)| (k, v)))
        .args(["--format=qcow2", "-a"])
        .arg(disk);
    c
}

/// Owns the guestfish pass that clears `chattr +i` on the existing deployments of `disk`.
fn clear_immutable_deployments(disk: &Path, gf_env: &[(&str, PathBuf)]) -> Result<()> {
    guestfish_on(disk, gf_env)
        .args([
            "-m",
            "/dev/sda1",
            "--",
            "glob",
            "set-e2attrs",
            "/ostree/deploy/*/deploy/*",
            "i",
            "clear:true",
        ])
        .run()
        .context("clearing the immutable flag on old deployments")
}

/// Owns the work on the attached sysroot: init (new image), pull-local/deploy/prune (new commit), extract boot.
fn update_sysroot(
    sr: &GuardedSysroot,
    spec: &ImageSpec,
    paths: &ImagePaths,
    plan: &UpdatePlan,
    stats: &mut UpdateStats,
) -> Result<BootArtifacts> {
    if plan.created {
        let t = Instant::now();
        sysroot::init(sr, &spec.osname, spec.arch, &plan.image_id)?;
        stats.create_s += secs(t);
    }
    if plan.deploy_needed {
        let t = Instant::now();
        stats.pulled_bytes = sysroot::pull_local(sr, &spec.repo, &spec.commit)?;
        stats.pull_local_s = secs(t);
        crash_point("pull-local");
        let t = Instant::now();
        let kargs = deploy_kargs(sr, spec, plan.previous.as_deref())?;
        sysroot::deploy(sr, &spec.osname, &spec.commit, &kargs)?;
        let deployment = crate::relabel::deployment_dir(sr, &spec.osname, &spec.commit)?;
        stats.selinux = crate::relabel::relabel(sr, &spec.osname, &deployment)?;
        stats.deploy_s = secs(t);
        crash_point("deploy");
        let t = Instant::now();
        sysroot::undeploy_and_prune(sr, spec.keep_deployments.max(1))?;
        stats.prune_s = secs(t);
        crash_point("prune");
    }
    let t = Instant::now();
    let boot = sysroot::extract_boot(sr.path(), &paths.boot_cache)?;
    stats.extract_s = secs(t);
    crash_point("extract");
    Ok(boot)
}

/// The first deploy of an image sets the harness's kernel arguments and the tree's; a later one
/// changes what the tree's changed (see [`crate::kargs`]).
fn deploy_kargs(sr: &GuardedSysroot, spec: &ImageSpec, previous: Option<&str>) -> Result<crate::kargs::KargChanges> {
    let tree = crate::kargs::of_commit(sr, &spec.commit, spec.arch)?;
    if sysroot::bls_entries(sr.path())?.is_empty() {
        return Ok(crate::kargs::first_deploy(&spec.kargs, &tree));
    }
    let old = match previous {
        Some(c) => crate::kargs::of_commit(sr, c, spec.arch)?,
        None => Vec::new(),
    };
    Ok(crate::kargs::update(&old, &tree))
}

/// Owns publishing the detached work copy: final size, fsync, state.json, then the atomic swap.
fn commit_work_copy(
    paths: &ImagePaths,
    spec: &ImageSpec,
    plan: &UpdatePlan,
    boot: &BootArtifacts,
    stats: &mut UpdateStats,
) -> Result<()> {
    stats.qcow2_after = layout::allocated_bytes(&paths.work)?;
    // The layers below are the published image's files, already on disk.
    std::fs::File::open(&plan.work_disk)?.sync_all()?;
    let st = ImageStateFile {
        layout_version: LAYOUT_VERSION,
        commit: spec.commit.clone(),
        image_id: plan.image_id.clone(),
        boot_checksum: boot.boot_checksum.clone(),
        options: boot.options.clone(),
    };
    layout::write_state(&paths.work, &st)?;
    crash_point("state");
    layout::swap_in(paths)?;
    Ok(())
}

/// Boot artifacts of an image at its commit, if they are still in the boot cache.
fn cached_boot(paths: &ImagePaths, st: &ImageStateFile) -> Option<BootArtifacts> {
    let dir = paths.boot_cache.join(&st.boot_checksum);
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initramfs.img"));
    (kernel.is_file() && initrd.is_file()).then(|| BootArtifacts {
        kernel,
        initrd,
        options: st.options.clone(),
        boot_checksum: st.boot_checksum.clone(),
    })
}

/// What both backends share while attaching a disk: where it lives, where it mounts, and its resource record.
struct Attach<'a> {
    paths: &'a ImagePaths,
    disk: &'a Path,
    /// Partition + mkfs the disk before mounting it.
    create: bool,
    /// The canonical work dir.
    work: PathBuf,
    mnt: PathBuf,
    /// Saved to `paths.resources` after each step, so [`layout::recover_stale`] can undo what a killed run left.
    rec: ResourceRecord,
}

/// Attach `disk` with `backend`, partition + mkfs it when `create`, run `f` on the guarded sysroot, and
/// detach in the right order on every path (the owners' Drop covers panics, the cleanup registry signals).
fn with_sysroot<T>(
    backend: Backend,
    paths: &ImagePaths,
    disk: &Path,
    create: bool,
    gf_env: &[(&str, PathBuf)],
    stats: &mut UpdateStats,
    f: impl FnOnce(&GuardedSysroot, &mut UpdateStats) -> Result<T>,
) -> Result<T> {
    let work = paths.work.canonicalize()?;
    let mnt = work.join(format!("mnt-{}", std::process::id()));
    fs_err::create_dir_all(&mnt)?;
    let rec = ResourceRecord {
        owner_pid: std::process::id(),
        work: work.clone(),
        mountpoint: Some(mnt.clone()),
        ..Default::default()
    };
    rec.save(&paths.resources)?;
    let mut a = Attach {
        paths,
        disk,
        create,
        work,
        mnt,
        rec,
    };
    let r = match backend {
        Backend::Qsd => with_qsd_sysroot(&mut a, stats, f),
        Backend::Guestfs => with_guestfs_sysroot(&mut a, gf_env, stats, f),
    };
    if r.is_ok() {
        remove_attach_leftovers(paths, &a.work, &a.mnt)?;
    }
    r
}

/// Owns the qsd backend: qemu-storage-daemon export → loop device → mount, `f`, then fstrim and detach in order.
fn with_qsd_sysroot<T>(
    a: &mut Attach,
    stats: &mut UpdateStats,
    f: impl FnOnce(&GuardedSysroot, &mut UpdateStats) -> Result<T>,
) -> Result<T> {
    let t = Instant::now();
    let raw = a.work.join("raw.img");
    a.rec.qsd_raw = Some(raw.clone());
    a.rec.save(&a.paths.resources)?;
    let qsd = QsdExport::start(a.disk, &raw, &a.work.join("qsd.pid"))?;
    a.rec.qsd_pid = Some(qsd.pid());
    a.rec.save(&a.paths.resources)?;
    let lp = LoopDevice::attach(&raw)?;
    a.rec.loop_device = Some(lp.path().to_path_buf());
    a.rec.save(&a.paths.resources)?;
    let part = if a.create {
        partition_loop_device(&lp, &a.work)?
    } else {
        lp.partition(1)?
    };
    let m = Mount::new(&part, &a.mnt)?;
    stats.attach_s = secs(t);
    crash_point("attach");
    let r = guard_sysroot(m.target(), &ExpectedSource::Block(part)).and_then(|sr| f(&sr, stats));
    let t = Instant::now();
    if r.is_ok() {
        // hand freed blocks back to the qcow2 (loop → FUSE punch-hole → qsd discard=unmap)
        if let Err(e) = Command::new("fstrim").arg(m.target()).run() {
            tracing::debug!("fstrim: {e:#}");
        }
    }
    // umount → losetup -d (+ wait for backing_file to vanish) → stop qsd and wait for it to exit
    let closed = m.close().and_then(|()| lp.close()).and_then(|()| qsd.close());
    stats.detach_s = secs(t);
    r.and_then(|v| closed.map(|()| v))
}

/// Owns formatting a new disk on the qsd backend: one GPT root partition (sfdisk) and ext4 on it; returns it.
fn partition_loop_device(lp: &LoopDevice, work: &Path) -> Result<PathBuf> {
    let script = work.join("sfdisk.script");
    fs_err::write(&script, "label: gpt\nsize=+, type=linux, name=root\n")?;
    Command::new("sh")
        .args(["-c", "sfdisk -q \"$1\" < \"$2\"", "sh"])
        .arg(lp.path())
        .arg(&script)
        .run()?;
    let part = lp.partition(1)?;
    Command::new("mkfs.ext4").args(["-q", "-L", "root"]).arg(&part).run()?;
    Ok(part)
}

/// Owns the guestfs backend: partition + mkfs with guestfish when creating, guestmount, `f`, then unmount.
fn with_guestfs_sysroot<T>(
    a: &mut Attach,
    gf_env: &[(&str, PathBuf)],
    stats: &mut UpdateStats,
    f: impl FnOnce(&GuardedSysroot, &mut UpdateStats) -> Result<T>,
) -> Result<T> {
    let t = Instant::now();
    if a.create {
        partition_with_guestfish(a.disk, gf_env)?;
        stats.create_s += secs(t);
    }
    let t = Instant::now();
    let gm = GuestMount::mount(a.disk, &a.mnt, &a.work.join("guestmount.pid"), gf_env)?;
    a.rec.guestmount_pid = Some(gm.pid());
    a.rec.save(&a.paths.resources)?;
    stats.attach_s = secs(t);
    crash_point("attach");
    let r = guard_sysroot(gm.target(), &ExpectedSource::Fuse).and_then(|sr| f(&sr, stats));
    let t = Instant::now();
    let closed = gm.close();
    stats.detach_s = secs(t);
    r.and_then(|v| closed.map(|()| v))
}

/// Owns formatting a new disk on the guestfs backend: one GPT partition named root with ext4 on it, via guestfish.
fn partition_with_guestfish(disk: &Path, gf_env: &[(&str, PathBuf)]) -> Result<()> {
    guestfish_on(disk, gf_env)
        .args([
            "run",
            ":",
            "part-disk",
            "/dev/sda",
            "gpt",
            ":",
            "part-set-name",
            "/dev/sda",
            "1",
            "root",
        ])
        .args([":", "mkfs", "ext4", "/dev/sda1", "label:root"])
        .run()
}

/// Owns the tidy-up after a clean detach: nothing still mounted, then mountpoint, scratch files and record removed.
fn remove_attach_leftovers(paths: &ImagePaths, work: &Path, mnt: &Path) -> Result<()> {
    if crate::guard::mount_at(mnt)?.is_some() {
        bail!("{} is still mounted after detach", mnt.display());
    }
    fs_err::remove_dir(mnt)?;
    for f in ["raw.img", "qsd.pid", "guestmount.pid", "sfdisk.script"] {
        let _ = fs_err::remove_file(work.join(f));
    }
    let _ = fs_err::remove_file(&paths.resources);
    Ok(())
}
