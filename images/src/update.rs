//! The update pipeline: lock → recover → (create | copy) → attach → init/pull-local/deploy/prune/extract
//! → detach → state.json → atomic swap. Also overlays and backend selection.

use crate::guard::{guard_sysroot, ExpectedSource, GuardedSysroot};
use crate::layout::{self, ImageLock, ImagePaths, ImageStateFile, ResourceRecord, LAYOUT_VERSION};
use crate::resources::{guestfs_env, GuestMount, LoopDevice, Mount, QsdExport};
use crate::{cleanup, crash_point, sysroot, Backend, BootArtifacts, ImageSpec, ImageState, UpdateStats};
use anyhow::{bail, Context, Result};
use fedostree_compose::cmd::CommandRunExt;
use fedostree_compose::state::StateDir;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Virtual size of a new image.
const DISK_SIZE: &str = "4G";
/// Deployments kept after an update: the new default plus one rollback.
const KEEP_DEPLOYMENTS: usize = 2;
/// How long a second run waits for the image lock (override: `FEDOSTREE_IMAGE_LOCK_TIMEOUT` seconds).
const LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn which(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// [`Backend::Qsd`] where we are root and `/dev/fuse`, loop devices and qemu-storage-daemon exist;
/// [`Backend::Guestfs`] otherwise.
pub fn default_backend() -> Backend {
    let qsd_ok = crate::sys::geteuid() == 0
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

/// `actual-size` of a qcow2 (bytes allocated on the host).
pub fn qcow2_actual_size(disk: &Path) -> Result<u64> {
    let v: serde_json::Value = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(disk)
        .run_and_parse_json()?;
    v["actual-size"]
        .as_u64()
        .with_context(|| format!("qemu-img info {}: no actual-size", disk.display()))
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
    let paths = ImagePaths::new(state, &spec.tree, &spec.arch)?;
    std::fs::create_dir_all(paths.dir.parent().unwrap())?;
    let _lock = ImageLock::acquire(&paths.lock, lock_timeout())?;
    layout::recover_stale(&paths).context("cleaning up after an interrupted update")?;

    let current =
        layout::read_state(&paths.dir).filter(|s| s.layout_version == LAYOUT_VERSION && paths.disk().is_file());
    if let Some(st) = current.as_ref().filter(|s| s.commit == spec.commit) {
        if let Some(boot) = cached_boot(&paths, st) {
            return Ok(ImageState {
                disk: paths.disk(),
                commit: st.commit.clone(),
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
    let created = current.is_none();
    let mut stats = UpdateStats::default();
    std::fs::create_dir_all(&paths.work)?;
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
        stats.qcow2_before = qcow2_actual_size(&paths.disk())?;
        Command::new("cp")
            .arg("--reflink=auto")
            .arg(paths.disk())
            .arg(&work_disk)
            .run()?;
        stats.copy_s = secs(t);
    }
    crash_point("copy");
    let image_id = match &current {
        Some(s) => s.image_id.clone(),
        None => random_id()?,
    };
    let deploy_needed = current.as_ref().is_none_or(|s| s.commit != spec.commit);

    let gf_env = match backend {
        Backend::Guestfs => crate::guestfs::supermin_env(state)?,
        Backend::Qsd => vec![],
    };
    if backend == Backend::Guestfs && !created && deploy_needed {
        // Deployments are `chattr +i` and FUSE cannot clear that flag, so ostree could not remove the
        // oldest one through guestmount: clear it with libguestfs itself first.
        guestfs_env(&mut Command::new("guestfish"))
            .envs(gf_env.iter().map(|(k, v)| (k, v)))
            .args(["--format=qcow2", "-a"])
            .arg(&work_disk)
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
            .context("clearing the immutable flag on old deployments")?;
    }
    let boot = with_sysroot(
        backend,
        &paths,
        &work_disk,
        created,
        &gf_env,
        &mut stats,
        |sr, stats| {
            if created {
                let t = Instant::now();
                sysroot::init(sr, &spec.osname, &image_id)?;
                stats.create_s += secs(t);
            }
            if deploy_needed {
                let t = Instant::now();
                stats.pulled_bytes = sysroot::pull_local(sr, &spec.repo, &spec.commit)?;
                stats.pull_local_s = secs(t);
                crash_point("pull-local");
                let t = Instant::now();
                let first = sysroot::bls_entries(sr.path())?.is_empty();
                sysroot::deploy(sr, &spec.osname, &spec.commit, if first { &spec.kargs } else { &[] })?;
                stats.deploy_s = secs(t);
                crash_point("deploy");
                let t = Instant::now();
                sysroot::undeploy_and_prune(sr, KEEP_DEPLOYMENTS)?;
                stats.prune_s = secs(t);
                crash_point("prune");
            }
            let t = Instant::now();
            let boot = sysroot::extract_boot(sr.path(), &paths.boot_cache)?;
            stats.extract_s = secs(t);
            crash_point("extract");
            Ok(boot)
        },
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

    stats.qcow2_after = qcow2_actual_size(&work_disk)?;
    std::fs::File::open(&work_disk)?.sync_all()?;
    let st = ImageStateFile {
        layout_version: LAYOUT_VERSION,
        commit: spec.commit.clone(),
        image_id: image_id.clone(),
        boot_checksum: boot.boot_checksum.clone(),
        options: boot.options.clone(),
    };
    layout::write_state(&paths.work, &st)?;
    crash_point("state");
    layout::swap_in(&paths)?;
    stats.total_s = secs(t0);
    tracing::info!(?stats, "image updated");
    Ok(ImageState {
        disk: paths.disk(),
        commit: spec.commit.clone(),
        image_id,
        boot,
        created,
        updated: deploy_needed,
        backend,
        stats,
    })
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
    std::fs::create_dir_all(&mnt)?;
    let mut rec = ResourceRecord {
        owner_pid: std::process::id(),
        work: work.clone(),
        mountpoint: Some(mnt.clone()),
        ..Default::default()
    };
    rec.save(&paths.resources)?;
    let t = Instant::now();
    let r = match backend {
        Backend::Qsd => {
            let raw = work.join("raw.img");
            rec.qsd_raw = Some(raw.clone());
            rec.save(&paths.resources)?;
            let qsd = QsdExport::start(disk, &raw, &work.join("qsd.pid"))?;
            rec.qsd_pid = Some(qsd.pid());
            rec.save(&paths.resources)?;
            let lp = LoopDevice::attach(&raw)?;
            rec.loop_device = Some(lp.path().to_path_buf());
            rec.save(&paths.resources)?;
            let part = if create {
                let script = work.join("sfdisk.script");
                std::fs::write(&script, "label: gpt\nsize=+, type=linux, name=root\n")?;
                Command::new("sh")
                    .args(["-c", "sfdisk -q \"$1\" < \"$2\"", "sh"])
                    .arg(lp.path())
                    .arg(&script)
                    .run()?;
                let part = lp.partition(1)?;
                Command::new("mkfs.ext4").args(["-q", "-L", "root"]).arg(&part).run()?;
                part
            } else {
                lp.partition(1)?
            };
            let m = Mount::new(&part, &mnt)?;
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
        Backend::Guestfs => {
            if create {
                guestfs_env(&mut Command::new("guestfish"))
                    .envs(gf_env.iter().map(|(k, v)| (k, v)))
                    .args(["--format=qcow2", "-a"])
                    .arg(disk)
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
                    .run()?;
                stats.create_s += secs(t);
            }
            let t = Instant::now();
            let gm = GuestMount::mount(disk, &mnt, &work.join("guestmount.pid"), gf_env)?;
            rec.guestmount_pid = Some(gm.pid());
            rec.save(&paths.resources)?;
            stats.attach_s = secs(t);
            crash_point("attach");
            let r = guard_sysroot(gm.target(), &ExpectedSource::Fuse).and_then(|sr| f(&sr, stats));
            let t = Instant::now();
            let closed = gm.close();
            stats.detach_s = secs(t);
            r.and_then(|v| closed.map(|()| v))
        }
    };
    if r.is_ok() {
        if crate::guard::mount_at(&mnt)?.is_some() {
            bail!("{} is still mounted after detach", mnt.display());
        }
        std::fs::remove_dir(&mnt)?;
        for f in ["raw.img", "qsd.pid", "guestmount.pid", "sfdisk.script"] {
            let _ = std::fs::remove_file(work.join(f));
        }
        let _ = std::fs::remove_file(&paths.resources);
    }
    r
}
