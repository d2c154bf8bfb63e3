//! Test fixtures for the real-VM tests: Debian's cloud kernel and a static busybox (fetched with apt once
//! and cached under /tmp), and a tiny initramfs whose /init speaks the guest protocol.
//!
//! The init's behaviour is picked on the kernel command line (`harness.scenario=ok|fail|panic|exit|hang|linger`)
//! so one initramfs serves every test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const CACHE: &str = "/tmp/fedostree-harness-testkernel";

/// Modules the init needs for the results port, when the kernel has them as modules.
const WANTED_MODULES: &[&str] = &["virtio_pci", "virtio_console"];

pub struct Fixture {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub kver: String,
}

/// Run a short command; Err carries its stderr. (Test-only: the crate itself runs no such commands.)
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn have(binary: &str) -> bool {
    which::which(binary).is_ok()
}

/// The fixture, or the reason VM tests must be skipped (printed by the caller).
pub fn fixture() -> Result<&'static Fixture, String> {
    static F: OnceLock<Result<Fixture, String>> = OnceLock::new();
    F.get_or_init(|| {
        if !have("qemu-system-x86_64") {
            return Err("qemu-system-x86_64 is not installed".into());
        }
        if std::env::consts::ARCH != "x86_64" {
            return Err("the test kernel and busybox are amd64 packages".into());
        }
        build()
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The fixture; the test runner has already checked the machine's prerequisites, so building it
/// can only fail for a real reason (a download, a missing package), which fails the test.
#[macro_export]
macro_rules! vm_fixture {
    () => {
        support::fixture().unwrap_or_else(|why| panic!("building the real-VM fixture: {why}"))
    };
}

/// `apt-get download` a package into `dir` and unpack it into `dir/root`; cached by the .deb's presence.
fn fetch_deb(dir: &Path, package: &str) -> Result<(), String> {
    let root = dir.join("root");
    let have_deb = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&format!("{package}_")));
    if !have_deb {
        run(Command::new("apt-get").arg("download").arg(package).current_dir(dir))
            .map_err(|e| format!("{e} (is `apt-get update` done?)"))?;
    }
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{package}_")) && name.ends_with(".deb") {
            run(Command::new("dpkg-deb").arg("-x").arg(e.path()).arg(&root))?;
        }
    }
    Ok(())
}

fn build() -> Result<Fixture, String> {
    // linux-image-cloud-amd64 is a metapackage: the kernel is in its versioned dependency.
    let deps = run(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
    let image = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-cloud-amd64"))
        .ok_or_else(|| format!("no versioned kernel in `apt-cache depends linux-image-cloud-amd64`: {deps}"))?
        .to_owned();
    let kver = image.trim_start_matches("linux-image-").to_owned();
    let dir = PathBuf::from(CACHE).join(&kver);
    let kernel = dir.join("root/boot").join(format!("vmlinuz-{kver}"));
    let busybox = dir.join("root/bin/busybox");
    if !kernel.exists() {
        // Fetch in a private directory and rename into place, so concurrent test processes never see
        // a half-written cache.
        let tmp = PathBuf::from(CACHE).join(format!(".build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        fetch_deb(&tmp, &image)?;
        fetch_deb(&tmp, "busybox-static")?;
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another process won the race; use its copy.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    // Named after the /init it carries: a changed scenario script gets a new initramfs.
    let init_id = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        INIT.hash(&mut h);
        h.finish()
    };
    let initrd = dir.join(format!("initrd-{init_id:016x}.cpio"));
    if !initrd.exists() {
        let part = dir.join(format!(".initrd-{}.cpio", std::process::id()));
        make_initramfs(&dir.join("root"), &kver, &part)?;
        std::fs::rename(&part, &initrd).map_err(|e| e.to_string())?;
    }
    for p in [&kernel, &busybox, &initrd] {
        if !p.exists() {
            return Err(format!("{} missing after fetch", p.display()));
        }
    }
    Ok(Fixture { kernel, initrd, kver })
}

/// `depends=` from a module's .modinfo section (no modules.dep in the package: depmod never ran).
fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .map(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn find_ko(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_ko(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == format!("{name}.ko").as_str()) {
            return Some(p);
        }
    }
    None
}

/// Modules (dependencies first) to insmod for `WANTED_MODULES`, skipping built-ins.
fn module_load_order(moddir: &Path) -> Result<Vec<PathBuf>, String> {
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let mut order = Vec::new();
    fn visit(moddir: &Path, builtin: &str, name: &str, order: &mut Vec<PathBuf>) -> Result<(), String> {
        let name = name.replace('-', "_");
        if builtin.lines().any(|l| l.ends_with(&format!("/{name}.ko"))) {
            return Ok(());
        }
        let ko = find_ko(&moddir.join("kernel"), &name).ok_or_else(|| format!("module {name} not found"))?;
        if order.contains(&ko) {
            return Ok(());
        }
        let bytes = std::fs::read(&ko).map_err(|e| e.to_string())?;
        for dep in module_depends(&bytes) {
            visit(moddir, builtin, &dep, order)?;
        }
        order.push(ko);
        Ok(())
    }
    for m in WANTED_MODULES {
        visit(moddir, &builtin, m, &mut order)?;
    }
    Ok(order)
}

fn make_initramfs(root: &Path, kver: &str, out: &Path) -> Result<(), String> {
    let w = tempfile::tempdir().map_err(|e| e.to_string())?;
    let w = w.path();
    for d in ["bin", "dev", "proc", "sys", "lib/modules"] {
        std::fs::create_dir_all(w.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(root.join("bin/busybox"), w.join("bin/busybox")).map_err(|e| e.to_string())?;
    // Only the applets the init uses; never a `busybox` link to itself (ELOOP, "No working init found").
    for applet in [
        "sh", "mount", "insmod", "cat", "echo", "sleep", "poweroff", "basename", "uname",
    ] {
        std::os::unix::fs::symlink("busybox", w.join("bin").join(applet)).map_err(|e| e.to_string())?;
    }
    let mut load = String::new();
    for ko in module_load_order(&root.join("lib/modules").join(kver))? {
        let name = ko.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&ko, w.join("lib/modules").join(&name)).map_err(|e| e.to_string())?;
        load.push_str(&name);
        load.push('\n');
    }
    std::fs::write(w.join("lib/modules/load-order"), load).map_err(|e| e.to_string())?;
    let init = w.join("init");
    std::fs::write(&init, INIT).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let list = run(Command::new("find").arg(".").current_dir(w))?;
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(w)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cpio: {e}"))?;
    use std::io::Write;
    cpio.stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .map_err(|e| e.to_string())?;
    let st = cpio.wait().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("cpio failed: {st}"));
    }
    Ok(())
}

/// The test /init: finds the results port by name in sysfs (no udev, so no /dev/virtio-ports symlink),
/// then acts out the scenario from the kernel command line.
const INIT: &str = r#"#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m || echo "init: insmod $m failed"; done
scenario=ok
for a in $(cat /proc/cmdline); do case "$a" in harness.scenario=*) scenario=${a#harness.scenario=} ;; esac; done
port=
i=0
while [ -z "$port" ] && [ $i -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] && [ "$(cat $p/name)" = org.fedostree.results ] && port=/dev/$(basename $p)
  done
  [ -n "$port" ] || sleep 0.05
  i=$((i+1))
done
[ -n "$port" ] || { echo "init: results port not found"; poweroff -f; }
exec 3>"$port"
say() { echo "$1" >&3; }
echo "init: scenario $scenario, results on $port"
say '{"event":"run-started","tests":2,"arch":"x86_64","kernel":"'"$(uname -r)"'","deployment":"/ostree/deploy/fedostree/deploy/feed.0","commit":"feed"}'
say '{"event":"test-started","name":"harness/tap"}'
case "$scenario" in
  panic) echo c > /proc/sysrq-trigger ;;
  exit) exit 1 ;;
  hang) while true; do sleep 1; done ;;
  fail)
    say '{"event":"test-finished","name":"harness/tap","status":"fail","exit_code":1,"duration_ms":4,"output":"not ok 1 boots\n"}'
    echo "init: harness/tap failed on purpose; this line is on the screen"
    # Alive a moment longer, as a guest is while its other tests run: the screendump needs a VM.
    sleep 2
    say '{"event":"run-finished","passed":0,"failed":1,"skipped":0,"timed_out":0}'
    poweroff -f ;;
esac
say '{"event":"subtest","test":"harness/tap","number":1,"description":"boots","status":"pass"}'
say '{"event":"subtest","test":"harness/tap","number":2,"description":"later","status":"skip"}'
say '{"event":"test-finished","name":"harness/tap","status":"pass","exit_code":0,"duration_ms":4,"output":"1..2\nok 1 boots\nok 2 later # SKIP\n"}'
say '{"event":"test-started","name":"harness/skip"}'
say '{"event":"test-finished","name":"harness/skip","status":"skip","exit_code":77,"duration_ms":1,"output":""}'
say '{"event":"run-finished","passed":1,"failed":0,"skipped":1,"timed_out":0}'
echo "init: done"
[ "$scenario" = linger ] && while true; do sleep 1; done
poweroff -f
"#;
