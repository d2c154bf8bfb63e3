//! Real images: real OSTree commits built here, real qcow2 images, real qemu-storage-daemon, loop devices,
//! mounts and libguestfs. Needs root, /dev/fuse, loop devices, ostree, qemu-img, qemu-storage-daemon and
//! (for the guestfs test) libguestfs: without them each test is reported ignored with the reason, and
//! fails under `CI` (`fedostree_util::prereq`).

use fedostree_images::resources::{LoopDevice, Mount, QsdExport};
use fedostree_images::{sysroot, update_image, Backend, ImageSpec, ImageState};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::prereq::{run_tests, Prereq, Test, IMAGE_BACKEND};
use fedostree_util::state::StateDir;
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    if let Some(root) = std::env::var_os("FEDOSTREE_TEST_CHILD_STATE") {
        child_update_entry(root);
        return;
    }
    let guestfs = [IMAGE_BACKEND, &[Prereq::Guestmount]].concat();
    let mut tests = vec![
        Test::new(
            "qsd_create_update_prune_noop",
            IMAGE_BACKEND,
            qsd_create_update_prune_noop,
        ),
        Test::new("guestfs_create_and_update", &guestfs, guestfs_create_and_update),
        Test::new(
            "guard_accepts_our_mount_only",
            IMAGE_BACKEND,
            guard_accepts_our_mount_only,
        ),
        Test::new("killed_mid_update_recovers", IMAGE_BACKEND, killed_mid_update_recovers),
        Test::new(
            "sigterm_mid_update_cleans_up",
            IMAGE_BACKEND,
            sigterm_mid_update_cleans_up,
        ),
        Test::new(
            "concurrent_updates_serialize",
            IMAGE_BACKEND,
            concurrent_updates_serialize,
        ),
    ];
    if std::env::var_os("FEDOSTREE_BENCH_REPO").is_some() && std::env::var_os("FEDOSTREE_BENCH_REF").is_some() {
        tests.push(Test::new("bench_real_tree", &guestfs, bench_real_tree));
    }
    run_tests(tests);
}

const KARGS: &[&str] = &["root=LABEL=root", "rw", "console=ttyS0", "quiet", "panic=-1"];

/// A temp state dir with an archive repo at `$STATE/repo`.
struct Fixture {
    _tmp: tempfile::TempDir,
    state: StateDir,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            // A comma in every state dir: paths pasted into qemu-storage-daemon options must survive it.
            .prefix("fedostree-images,test")
            .tempdir()
            .unwrap();
        let state = StateDir::new(tmp.path());
        Command::new("ostree")
            .arg(format!("--repo={}", state.repo().display()))
            .args(["init", "--mode=archive"])
            .run()
            .unwrap();
        Fixture { _tmp: tmp, state }
    }

    /// Commit a tiny but real OS tree; `kernel` varies the kernel bytes (and so the boot checksum).
    fn commit(&self, version: &str, kernel: &str) -> String {
        let t = self.state.root().join(format!("tree-{version}"));
        let kdir = t.join("usr/lib/modules/6.0.0-test");
        std::fs::create_dir_all(&kdir).unwrap();
        std::fs::write(kdir.join("vmlinuz"), format!("dummy kernel {kernel}\n")).unwrap();
        std::fs::write(kdir.join("initramfs.img"), format!("dummy initramfs {kernel}\n")).unwrap();
        std::fs::create_dir_all(t.join("usr/etc")).unwrap();
        std::fs::write(t.join("usr/etc/hostname"), "fedostree\n").unwrap();
        std::fs::create_dir_all(t.join("usr/bin")).unwrap();
        std::fs::write(t.join("usr/bin/busybox"), "not really busybox\n").unwrap();
        symlink("busybox", t.join("usr/bin/sh")).unwrap();
        std::fs::create_dir_all(t.join("usr/share/fedostree")).unwrap();
        // some payload so pulls have something to measure
        let payload: String = (0..20000).map(|i| format!("{version} line {i}\n")).collect();
        std::fs::write(t.join("usr/share/fedostree/version"), payload).unwrap();
        std::fs::write(
            t.join("usr/lib/os-release"),
            format!("NAME=fedostree\nID=fedostree\nPRETTY_NAME=\"fedostree {version}\"\nVERSION_ID={version}\n"),
        )
        .unwrap();
        let out = Command::new("ostree")
            .arg(format!("--repo={}", self.state.repo().display()))
            .args(["commit", "--branch=dev/minimal/x86_64", "--subject", version])
            .arg(format!("--tree=dir={}", t.display()))
            .run_get_string()
            .unwrap();
        out.trim().to_string()
    }

    fn spec(&self, commit: &str) -> ImageSpec {
        ImageSpec {
            tree: "dev/minimal".into(),
            arch: fedostree_util::Arch::X86_64,
            repo: self.state.repo(),
            commit: commit.into(),
            osname: "fedostree".into(),
            kargs: KARGS.iter().map(|s| s.to_string()).collect(),
            keep_deployments: fedostree_images::KEEP_DEPLOYMENTS,
        }
    }

    fn arch_dir(&self) -> PathBuf {
        self.state.images().join("dev/minimal/x86_64")
    }
}

/// Run `f` on a mounted scratch copy of `disk` (never the image itself).
fn inspect<T>(disk: &Path, f: impl FnOnce(&Path) -> T) -> T {
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("copy.qcow2");
    fedostree_images::create_overlay(disk, &copy).unwrap();
    let mnt = scratch.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let qsd = QsdExport::start(&copy, &scratch.path().join("raw"), &scratch.path().join("qsd.pid")).unwrap();
    let lp = LoopDevice::attach(qsd.raw()).unwrap();
    let m = Mount::new(&lp.partition(1).unwrap(), &mnt).unwrap();
    let r = f(m.target());
    m.close().unwrap();
    lp.close().unwrap();
    qsd.close().unwrap();
    r
}

/// Deployed commit checksums in the sysroot (`ostree/deploy/<os>/deploy/<csum>.<serial>`).
fn deployed(m: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(m.join("ostree/deploy/fedostree/deploy"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().split('.').next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn has_object(m: &Path, commit: &str) -> bool {
    m.join(format!("ostree/repo/objects/{}/{}.commit", &commit[..2], &commit[2..]))
        .exists()
}

/// Nothing of ours is left: no mount, loop device, FUSE export or qemu-storage-daemon under `root`.
fn assert_no_leftovers(root: &Path) {
    let root = root.canonicalize().unwrap();
    let needle = root.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&needle), "mount left under {needle}:\n{mounts}");
    let loops = Command::new("losetup").arg("-a").run_get_string().unwrap();
    assert!(!loops.contains(&needle), "loop device left: {loops}");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !(cmd.contains(&needle) && (cmd.contains("qemu-storage-daemon") || cmd.contains("guestmount"))),
                "process left: {cmd}"
            );
        }
    }
}

fn print_stats(what: &str, s: &ImageState) {
    eprintln!("TIMING {what}: {}", serde_json::to_string(&s.stats).unwrap());
}

fn qsd_create_update_prune_noop() {
    let fx = Fixture::new();
    let c1 = fx.commit("v1", "k1");

    let s1 = update_image(&fx.state, &fx.spec(&c1), Backend::Qsd).unwrap();
    print_stats("qsd create", &s1);
    assert!(s1.created && s1.updated);
    assert_eq!(s1.disk, fx.arch_dir().join("disk.qcow2"));
    assert_eq!(s1.image_id.len(), 32);
    assert_eq!(std::fs::read_to_string(&s1.boot.kernel).unwrap(), "dummy kernel k1\n");
    assert_eq!(
        std::fs::read_to_string(&s1.boot.initrd).unwrap(),
        "dummy initramfs k1\n"
    );
    assert_eq!(
        s1.boot.kernel,
        fx.state
            .images()
            .join("boot")
            .join(&s1.boot.boot_checksum)
            .join("vmlinuz")
    );
    for k in KARGS {
        assert!(
            s1.boot.options.split(' ').any(|o| o == *k),
            "{k} missing in {}",
            s1.boot.options
        );
    }
    assert!(s1.boot.options.contains("ostree=/ostree/boot."), "{}", s1.boot.options);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.arch_dir().join("state.json")).unwrap()).unwrap();
    assert_eq!(st["commit"], c1.as_str());
    assert_eq!(st["boot_checksum"], s1.boot.boot_checksum.as_str());
    assert!(!fx.arch_dir().with_extension("new").exists());
    inspect(&s1.disk, |m| {
        assert_eq!(deployed(m), vec![c1.clone()]);
        let entries = sysroot::bls_entries(m).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].options, s1.boot.options);
        let id = std::fs::read_to_string(m.join("ostree/deploy/fedostree/var/lib/fedostree/image-id")).unwrap();
        assert_eq!(id.trim(), s1.image_id);
        let cfg = std::fs::read_to_string(m.join("ostree/repo/config")).unwrap();
        assert!(cfg.contains("bootloader=uboot"), "{cfg}");
        // What U-Boot's boot.scr reads: the default entry, as ostree's uboot backend wrote it.
        let uenv = std::fs::read_to_string(m.join("boot/loader/uEnv.txt")).unwrap();
        assert!(
            uenv.contains(&format!("kernel_image=/boot{}", entries[0].linux)),
            "{uenv}"
        );
        assert!(uenv.contains(&format!("bootargs={}", entries[0].options)), "{uenv}");
        assert!(m.join("boot/boot.scr").is_file());
    });

    // v2: same kernel, new content
    use std::os::unix::fs::MetadataExt;
    let published = std::fs::metadata(&s1.disk).unwrap();
    let c2 = fx.commit("v2", "k1");
    let s2 = update_image(&fx.state, &fx.spec(&c2), Backend::Qsd).unwrap();
    print_stats("qsd update v2", &s2);
    assert!(!s2.created && s2.updated);
    // The v1 image is now the read-only bottom layer, untouched: same inode, size and mtime.
    let layer0 = std::fs::metadata(fx.arch_dir().join("layer-0.qcow2")).unwrap();
    assert_eq!(
        (layer0.ino(), layer0.size(), layer0.mtime(), layer0.mtime_nsec()),
        (
            published.ino(),
            published.size(),
            published.mtime(),
            published.mtime_nsec()
        )
    );
    assert!(s2.stats.qcow2_after > s2.stats.qcow2_before, "{:?}", s2.stats);
    assert_eq!(s2.image_id, s1.image_id);
    assert_eq!(s2.boot.boot_checksum, s1.boot.boot_checksum);
    assert!(s2.stats.pulled_bytes > 0, "{:?}", s2.stats);

    // v3: new kernel → new boot checksum; only v3 + one rollback (v2) remain, v1 pruned
    let c3 = fx.commit("v3", "k3");
    let s3 = update_image(&fx.state, &fx.spec(&c3), Backend::Qsd).unwrap();
    print_stats("qsd update v3", &s3);
    assert_ne!(s3.boot.boot_checksum, s1.boot.boot_checksum);
    assert_eq!(std::fs::read_to_string(&s3.boot.kernel).unwrap(), "dummy kernel k3\n");
    for k in KARGS {
        assert!(
            s3.boot.options.split(' ').any(|o| o == *k),
            "kargs not inherited: {}",
            s3.boot.options
        );
    }
    inspect(&s3.disk, |m| {
        let mut want = vec![c2.clone(), c3.clone()];
        want.sort();
        assert_eq!(deployed(m), want);
        let entries = sysroot::bls_entries(m).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].linux.contains(&s3.boot.boot_checksum));
        assert!(has_object(m, &c3) && has_object(m, &c2));
        assert!(!has_object(m, &c1), "v1 commit not pruned");
        let id = std::fs::read_to_string(m.join("ostree/deploy/fedostree/var/lib/fedostree/image-id")).unwrap();
        assert_eq!(id.trim(), s1.image_id);
    });

    assert!(fx.arch_dir().join("layer-1.qcow2").is_file());

    // Updates add layers until one more would pass the limit; that update writes one compacted image.
    let mut last = (c3.clone(), c2.clone());
    for v in 4..=6 {
        let c = fx.commit(&format!("v{v}"), "k3");
        update_image(&fx.state, &fx.spec(&c), Backend::Qsd).unwrap();
        last = (c, last.0);
    }
    assert!(!fx.arch_dir().join("layer-0.qcow2").exists(), "the chain was compacted");
    inspect(&fx.arch_dir().join("disk.qcow2"), |m| {
        let mut want = vec![last.0.clone(), last.1.clone()];
        want.sort();
        assert_eq!(deployed(m), want);
    });
    let s3 = update_image(&fx.state, &fx.spec(&last.0), Backend::Qsd).unwrap();

    // already at the latest: no mount, the disk is untouched
    let mtime = std::fs::metadata(&s3.disk).unwrap().modified().unwrap();
    let s4 = update_image(&fx.state, &fx.spec(&last.0), Backend::Qsd).unwrap();
    assert!(!s4.created && !s4.updated);
    assert_eq!(s4.stats.attach_s, 0.0);
    assert_eq!(s4.boot, s3.boot);
    assert_eq!(std::fs::metadata(&s4.disk).unwrap().modified().unwrap(), mtime);

    // an overlay boots on top without touching the base
    let ov = fx.state.root().join("overlay.qcow2");
    fedostree_images::create_overlay(&s4.disk, &ov).unwrap();
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&ov)
        .run_get_string()
        .unwrap();
    assert!(info.contains(&*s4.disk.to_string_lossy()), "{info}");

    assert_no_leftovers(fx.state.root());
}

/// The guestfs appliance needs a kernel: on hosts without one in /boot, hand the fixture's deb cache a
/// Debian linux-image package (from the compose tests' cache, or `FEDOSTREE_TEST_KERNEL_DEB`).
fn provide_supermin_kernel(fx: &Fixture) {
    let has_kernel = std::fs::read_dir("/boot")
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz"))
        })
        .unwrap_or(false);
    if has_kernel || std::env::var_os("SUPERMIN_KERNEL").is_some() {
        return;
    }
    let debarch = fedostree_util::Arch::host().unwrap().debian();
    let mut candidates: Vec<PathBuf> = std::env::var_os("FEDOSTREE_TEST_KERNEL_DEB")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    for dir in [Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-cache").join(debarch)] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            candidates.extend(rd.flatten().map(|e| e.path()).filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                // The kernel itself, not a metapackage the Debian repository caches beside it.
                n.strip_prefix("linux-image-")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    && n.ends_with(".deb")
            }));
        }
    }
    if candidates.is_empty() {
        // A fresh machine: fetch the cloud kernel package the dev repository uses anyway.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb-cache").join(debarch);
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "apt-get download -q $(apt-cache depends linux-image-cloud-{debarch} | awk '/Depends: linux-image-/{{print $2; exit}}')"
        );
        let _ = Command::new("sh").args(["-c", &script]).current_dir(&dir).status();
        candidates.extend(
            std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("linux-image-")),
        );
    }
    let Some(deb) = candidates.into_iter().find(|p| p.is_file()) else {
        panic!("no host kernel and no linux-image deb could be fetched for the libguestfs appliance");
    };
    let dest = fx.state.deb_cache().join(debarch);
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(&deb, dest.join(deb.file_name().unwrap())).unwrap();
}

fn guestfs_create_and_update() {
    let fx = Fixture::new();
    provide_supermin_kernel(&fx);
    let c1 = fx.commit("v1", "k1");
    let s1 = update_image(&fx.state, &fx.spec(&c1), Backend::Guestfs).unwrap();
    print_stats("guestfs create", &s1);
    assert!(s1.created);
    let c2 = fx.commit("v2", "k2");
    let s2 = update_image(&fx.state, &fx.spec(&c2), Backend::Guestfs).unwrap();
    print_stats("guestfs update", &s2);
    assert!(s2.updated && !s2.created);
    assert_eq!(std::fs::read_to_string(&s2.boot.kernel).unwrap(), "dummy kernel k2\n");
    inspect(&s2.disk, |m| {
        let mut want = vec![c1.clone(), c2.clone()];
        want.sort();
        assert_eq!(deployed(m), want);
        assert_eq!(sysroot::bls_entries(m).unwrap().len(), 2);
    });
    // and the qsd backend continues from a guestfs-made image
    let c3 = fx.commit("v3", "k2");
    let s3 = update_image(&fx.state, &fx.spec(&c3), Backend::Qsd).unwrap();
    assert!(s3.updated);
    inspect(&s3.disk, |m| assert_eq!(deployed(m).len(), 2));
    assert_no_leftovers(fx.state.root());
}

fn guard_accepts_our_mount_only() {
    let fx = Fixture::new();
    let c1 = fx.commit("v1", "k1");
    let s1 = update_image(&fx.state, &fx.spec(&c1), Backend::Qsd).unwrap();
    inspect(&s1.disk, |m| {
        use fedostree_images::guard::{guard_sysroot, ExpectedSource};
        let src = fedostree_images::guard::mount_at(m).unwrap().unwrap().source;
        guard_sysroot(m, &ExpectedSource::Block(src.clone().into())).unwrap();
        // a directory inside the image is not the mount point; another device is not ours
        assert!(guard_sysroot(&m.join("boot"), &ExpectedSource::Block(src.into())).is_err());
        assert!(guard_sysroot(m, &ExpectedSource::Block("/dev/loop999p1".into())).is_err());
        assert!(guard_sysroot(m, &ExpectedSource::Fuse).is_err());
    });
    assert!(
        fedostree_images::guard::guard_sysroot(fx.state.root(), &fedostree_images::guard::ExpectedSource::Fuse)
            .is_err()
    );
}

/// Entry point for the child processes below: `main` runs it instead of the tests when
/// `FEDOSTREE_TEST_CHILD_STATE` is set.
fn child_update_entry(root: std::ffi::OsString) {
    let commit = std::env::var("FEDOSTREE_TEST_CHILD_COMMIT").unwrap();
    let state = StateDir::new(root);
    let spec = ImageSpec {
        tree: "dev/minimal".into(),
        arch: fedostree_util::Arch::X86_64,
        repo: state.repo(),
        commit,
        osname: "fedostree".into(),
        kargs: vec![],
        keep_deployments: fedostree_images::KEEP_DEPLOYMENTS,
    };
    update_image(&state, &spec, Backend::Qsd).unwrap();
}

fn child(fx: &Fixture, commit: &str, envs: &[(&str, &str)]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env("FEDOSTREE_TEST_CHILD_STATE", fx.state.root())
        .env("FEDOSTREE_TEST_CHILD_COMMIT", commit);
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

fn read_state_commit(fx: &Fixture) -> String {
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.arch_dir().join("state.json")).unwrap()).unwrap();
    st["commit"].as_str().unwrap().to_string()
}

fn killed_mid_update_recovers() {
    let fx = Fixture::new();
    let c1 = fx.commit("v1", "k1");
    let s1 = update_image(&fx.state, &fx.spec(&c1), Backend::Qsd).unwrap();
    let c2 = fx.commit("v2", "k2");
    for step in ["pull-local", "deploy", "state", "swap"] {
        let out = child(&fx, &c2, &[("FEDOSTREE_TEST_CRASH_AFTER", step)])
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        match step {
            "swap" => assert_eq!(read_state_commit(&fx), c2, "swap happened before the kill"),
            _ => assert_eq!(read_state_commit(&fx), c1, "{step}: old image must stay current"),
        }
        // the old image's disk is intact and current (for the pre-swap kills)
        assert!(fx.arch_dir().join("disk.qcow2").is_file());
        if step == "swap" {
            break;
        }
        let s = update_image(&fx.state, &fx.spec(&c1), Backend::Qsd).unwrap();
        assert!(!s.updated, "{step}: still at v1");
        assert_eq!(s.image_id, s1.image_id);
        assert_no_leftovers(fx.state.root());
    }
    // the next run after the killed post-swap run is a no-op at v2; after a pre-swap kill it updates
    let s2 = update_image(&fx.state, &fx.spec(&c2), Backend::Qsd).unwrap();
    assert!(!s2.updated);
    assert_no_leftovers(fx.state.root());
    assert!(!fx.arch_dir().with_extension("new").exists());

    // a killed pre-swap run followed by a real update from the old image
    let c3 = fx.commit("v3", "k3");
    let out = child(&fx, &c3, &[("FEDOSTREE_TEST_CRASH_AFTER", "pull-local")])
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGABRT));
    assert!(
        fx.arch_dir().with_extension("new").exists(),
        "the killed run left its work copy"
    );
    let s3 = update_image(&fx.state, &fx.spec(&c3), Backend::Qsd).unwrap();
    assert!(s3.updated);
    inspect(&s3.disk, |m| {
        let mut want = vec![c2.clone(), c3.clone()];
        want.sort();
        assert_eq!(deployed(m), want);
    });
    assert_no_leftovers(fx.state.root());
}

fn sigterm_mid_update_cleans_up() {
    let fx = Fixture::new();
    let c1 = fx.commit("v1", "k1");
    update_image(&fx.state, &fx.spec(&c1), Backend::Qsd).unwrap();
    let c2 = fx.commit("v2", "k1");
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let marker = fx.state.root().join("paused");
        let _ = std::fs::remove_file(&marker);
        let mut ch = child(&fx, &c2, &[("FEDOSTREE_TEST_PAUSE_AFTER", "deploy")])
            .env("FEDOSTREE_TEST_PAUSE_MARKER", &marker)
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !marker.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "child never reached the pause point"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // it holds a mount, a loop device and a qsd right now
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(mi.contains(&*fx.state.root().canonicalize().unwrap().to_string_lossy()));
        let pid: i32 = std::fs::read_to_string(&marker).unwrap().parse().unwrap();
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .run()
            .unwrap();
        let st = ch.wait().unwrap();
        assert_eq!(st.code(), Some(code));
        // cleaned up by the dying process itself, before any later run
        assert_no_leftovers(fx.state.root());
        assert_eq!(read_state_commit(&fx), c1);
    }
    let s2 = update_image(&fx.state, &fx.spec(&c2), Backend::Qsd).unwrap();
    assert!(s2.updated);
}

fn concurrent_updates_serialize() {
    let fx = Fixture::new();
    let c1 = fx.commit("v1", "k1");
    update_image(&fx.state, &fx.spec(&c1), Backend::Qsd).unwrap();
    let c2 = fx.commit("v2", "k1");
    let c3 = fx.commit("v3", "k1");
    let results: Vec<(String, Instant, ImageState)> = std::thread::scope(|s| {
        let hs: Vec<_> = [c2.clone(), c3.clone()]
            .into_iter()
            .map(|c| {
                let fx = &fx;
                s.spawn(move || {
                    let r = update_image(&fx.state, &fx.spec(&c), Backend::Qsd).unwrap();
                    (c, Instant::now(), r)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|(_, _, r)| r.updated && !r.created));
    let last = results.iter().max_by_key(|(_, t, _)| *t).unwrap();
    assert_eq!(read_state_commit(&fx), last.0);
    inspect(&last.2.disk, |m| {
        let mut want = vec![c2.clone(), c3.clone()];
        want.sort();
        assert_eq!(deployed(m), want, "both updates applied, one after the other");
    });
    assert_no_leftovers(fx.state.root());
}

/// Timings on a real composed tree: `FEDOSTREE_BENCH_REPO=$STATE/repo FEDOSTREE_BENCH_REF=<ref>
/// cargo test -p fedostree-images --test images bench_real_tree -- --nocapture` (listed only when both
/// are set). The source repo is only read (pull-local into a temp repo); v2 = v1 plus one extra file.
fn bench_real_tree() {
    let src = std::env::var_os("FEDOSTREE_BENCH_REPO").unwrap();
    let r = std::env::var("FEDOSTREE_BENCH_REF").unwrap();
    let fx = Fixture::new();
    let repo = format!("--repo={}", fx.state.repo().display());
    Command::new("ostree")
        .arg(&repo)
        .arg("pull-local")
        .arg(&src)
        .arg(&r)
        .run()
        .unwrap();
    let c1 = Command::new("ostree")
        .arg(&repo)
        .args(["rev-parse", &r])
        .run_get_string()
        .unwrap()
        .trim()
        .to_string();
    let extra = fx.state.root().join("extra");
    std::fs::create_dir_all(extra.join("usr/share/bench")).unwrap();
    std::fs::write(extra.join("usr/share/bench/v2"), vec![7u8; 1 << 20]).unwrap();
    let c2 = Command::new("ostree")
        .arg(&repo)
        .args(["commit", "--branch", &r, "--subject", "bench v2"])
        .arg(format!("--tree=ref={c1}"))
        .arg(format!("--tree=dir={}", extra.display()))
        .run_get_string()
        .unwrap()
        .trim()
        .to_string();
    for backend in [Backend::Qsd, Backend::Guestfs] {
        if backend == Backend::Guestfs {
            provide_supermin_kernel(&fx);
        }
        let _ = std::fs::remove_dir_all(fx.arch_dir());
        let s1 = update_image(&fx.state, &fx.spec(&c1), backend).unwrap();
        print_stats(&format!("{backend} create (real tree)"), &s1);
        let s2 = update_image(&fx.state, &fx.spec(&c2), backend).unwrap();
        print_stats(&format!("{backend} update (real tree, +1 MiB file)"), &s2);
        let s3 = update_image(&fx.state, &fx.spec(&c1), backend).unwrap();
        print_stats(&format!("{backend} update back to v1"), &s3);
    }
    assert_no_leftovers(fx.state.root());
}
