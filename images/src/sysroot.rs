//! OSTree operations on a mounted image sysroot (all behind [`GuardedSysroot`]), BLS entry parsing and
//! boot-artifact extraction into `$STATE/images/boot/<boot_checksum>/`.

use crate::guard::GuardedSysroot;
use crate::BootArtifacts;
use anyhow::{anyhow, bail, Context, Result};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::Arch;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `ostree admin SUBCMD --sysroot=M …`: the only place `ostree admin` is spelled, reachable only with a
/// sysroot that passed the mount guard.
fn admin(sr: &GuardedSysroot, sub: &str) -> Command {
    let mut c = Command::new("ostree");
    c.args(["admin", sub]).arg(format!("--sysroot={}", sr.path().display()));
    c
}

/// `--repo=` the image's repository.
pub(crate) fn repo_arg(sr: &GuardedSysroot) -> String {
    format!("--repo={}", sr.path().join("ostree/repo").display())
}

/// `ostree admin init-fs`, `os-init`, the bootloader configuration firmware boots from
/// ([`crate::firmware`]), and the image id marker in the stateroot.
pub fn init(sr: &GuardedSysroot, osname: &str, arch: Arch, image_id: &str) -> Result<()> {
    admin(sr, "init-fs").arg(sr.path()).run()?;
    admin(sr, "os-init").arg(osname).run()?;
    crate::firmware::configure(sr, arch)?;
    let marker = sr.path().join("ostree/deploy").join(osname).join("var/lib/fedostree");
    fs_err::create_dir_all(&marker)?;
    fs_err::write(marker.join("image-id"), format!("{image_id}\n"))?;
    Ok(())
}

/// Bytes of content written, from pull-local's "… imported; 1.2 MB content written" (glib
/// `g_format_size`: SI units, "bytes" below 1 kB).
pub fn parse_pulled_bytes(out: &str) -> Option<u64> {
    let head = &out[..out.find(" content written")?];
    let mut toks = head.rsplit(|c: char| c.is_whitespace() || c == ';');
    let unit = toks.next()?;
    let num: f64 = toks.next()?.parse().ok()?;
    let mult = match unit {
        "bytes" | "byte" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    Some((num * mult).round() as u64)
}

/// `ostree pull-local SRC COMMIT` into the sysroot repo (only missing objects); returns bytes written.
pub fn pull_local(sr: &GuardedSysroot, src_repo: &Path, commit: &str) -> Result<u64> {
    let out = Command::new("ostree")
        .arg(repo_arg(sr))
        .arg("pull-local")
        // Durability is the update's: the work copy is thrown away on any failure, and its qcow2 is
        // synced once after the filesystem is unmounted.
        .arg("--disable-fsync")
        .arg(src_repo)
        .arg(commit)
        .run_get_string()?;
    Ok(parse_pulled_bytes(&out).unwrap_or(0))
}

/// `ostree admin deploy --os=OS COMMIT [--karg=…] [--karg-append=…] [--karg-delete=…]`.
pub fn deploy(sr: &GuardedSysroot, osname: &str, commit: &str, kargs: &crate::kargs::KargChanges) -> Result<()> {
    let mut c = admin(sr, "deploy");
    c.arg(format!("--os={osname}")).arg(commit);
    for (flag, list) in [
        ("karg", &kargs.set),
        ("karg-append", &kargs.append),
        ("karg-delete", &kargs.delete),
    ] {
        for k in list {
            c.arg(format!("--{flag}={k}"));
        }
    }
    c.run()?;
    // The stateroot's /var is shared by every deployment: a log of what this image deployed lets the guest
    // check that /var written by earlier updates is still there (the deployments test reads it).
    let log = sr.path().join("ostree/deploy").join(osname).join("var/lib/fedostree");
    fs_err::create_dir_all(&log)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log.join("deployments"))?;
    std::io::Write::write_all(&mut f, format!("{commit}\n").as_bytes())?;
    Ok(())
}

/// Undeploy the oldest deployments until at most `keep` remain, then prune unreferenced objects.
pub fn undeploy_and_prune(sr: &GuardedSysroot, keep: usize) -> Result<usize> {
    let mut removed = 0;
    loop {
        let n = bls_entries(sr.path())?.len();
        if n <= keep {
            break;
        }
        admin(sr, "undeploy").arg((n - 1).to_string()).run()?;
        removed += 1;
        if bls_entries(sr.path())?.len() >= n {
            bail!("undeploy {} did not remove a deployment", n - 1);
        }
    }
    Command::new("ostree")
        .arg(repo_arg(sr))
        .args(["prune", "--refs-only", "--depth=0"])
        .run()?;
    Ok(removed)
}

/// A Boot Loader Specification entry as ostree writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlsEntry {
    pub path: PathBuf,
    pub version: u64,
    pub linux: String,
    pub initrd: String,
    pub options: String,
}

pub fn parse_bls(path: &Path, text: &str) -> Result<BlsEntry> {
    let mut e = BlsEntry {
        path: path.to_path_buf(),
        version: 0,
        linux: String::new(),
        initrd: String::new(),
        options: String::new(),
    };
    for line in text.lines() {
        let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let v = v.trim();
        match k {
            "version" => {
                e.version = v
                    .parse()
                    .with_context(|| format!("{}: version {v:?}", path.display()))?
            }
            "linux" => e.linux = v.to_string(),
            "initrd" => e.initrd = v.to_string(),
            "options" => e.options = v.to_string(),
            _ => {}
        }
    }
    if e.linux.is_empty() {
        bail!("{}: BLS entry has no linux line", path.display());
    }
    Ok(e)
}

/// Every BLS entry under `SYSROOT/boot/loader/entries`.
pub fn bls_entries(sysroot: &Path) -> Result<Vec<BlsEntry>> {
    let dir = sysroot.join("boot/loader/entries");
    let mut v = vec![];
    let rd = match fs_err::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for ent in rd {
        let p = ent?.path();
        if p.extension().is_some_and(|x| x == "conf") {
            let text = fs_err::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            v.push(parse_bls(&p, &text)?);
        }
    }
    v.sort_by_key(|e| std::cmp::Reverse(e.version));
    Ok(v)
}

/// The default entry: the highest `version`.
pub fn default_entry(sysroot: &Path) -> Result<BlsEntry> {
    bls_entries(sysroot)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no BLS entries in {}/boot/loader/entries", sysroot.display()))
}

/// The boot checksum from a linux path like `/ostree/fedostree-<csum>/vmlinuz-6.0.0`.
pub fn boot_checksum(linux: &str) -> Result<String> {
    let dir = linux
        .trim_start_matches('/')
        .split('/')
        .nth(1)
        .ok_or_else(|| anyhow!("linux path {linux:?} has no boot directory"))?;
    let (_, csum) = dir
        .rsplit_once('-')
        .ok_or_else(|| anyhow!("boot directory {dir:?} has no checksum"))?;
    if csum.len() < 32 || !csum.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("boot directory {dir:?}: {csum:?} is not a checksum");
    }
    Ok(csum.to_string())
}

/// Path of a BLS-relative file (relative to /boot) inside the sysroot, refusing `..`.
fn boot_file(sysroot: &Path, rel: &str) -> Result<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        bail!("suspicious BLS path {rel:?}");
    }
    Ok(sysroot.join("boot").join(rel))
}

/// Copy the default entry's kernel, initramfs and options into `boot_cache/<csum>/` (write-once by
/// checksum; the options file is rewritten every time).
pub fn extract_boot(sysroot: &Path, boot_cache: &Path) -> Result<BootArtifacts> {
    let e = default_entry(sysroot)?;
    let csum = boot_checksum(&e.linux)?;
    if e.initrd.is_empty() {
        bail!("{}: BLS entry has no initrd", e.path.display());
    }
    let dest = boot_cache.join(&csum);
    let kernel = dest.join("vmlinuz");
    let initrd = dest.join("initramfs.img");
    if !(kernel.is_file() && initrd.is_file()) {
        fs_err::create_dir_all(boot_cache)?;
        let tmp = boot_cache.join(format!(".tmp-{csum}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&tmp);
        fs_err::create_dir_all(&tmp)?;
        for (rel, name) in [(&e.linux, "vmlinuz"), (&e.initrd, "initramfs.img")] {
            let src = boot_file(sysroot, rel)?;
            fs_err::copy(&src, tmp.join(name)).with_context(|| format!("copying {}", src.display()))?;
        }
        // Content is named by its checksum, so a directory another run put there first is the same:
        // keep it (a VM may be booting from it) and drop ours.
        if let Err(err) = fs_err::rename(&tmp, &dest) {
            let _ = fs_err::remove_dir_all(&tmp);
            if !(kernel.is_file() && initrd.is_file()) {
                return Err(err).with_context(|| format!("renaming to {}", dest.display()));
            }
        }
    }
    Ok(BootArtifacts {
        kernel,
        initrd,
        options: e.options,
        boot_checksum: csum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = "title fedostree 1 (ostree:0)\nversion 2\n\
        options root=LABEL=root rw console=ttyS0 ostree=/ostree/boot.1/fedostree/5a1e0c7a8e3c3a0b4e0bd1e6a2b1f1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8/0\n\
        linux /ostree/fedostree-5a1e0c7a8e3c3a0b4e0bd1e6a2b1f1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8/vmlinuz-6.0.0-test\n\
        initrd /ostree/fedostree-5a1e0c7a8e3c3a0b4e0bd1e6a2b1f1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8/initramfs-6.0.0-test.img\n";

    #[test]
    fn parses_bls_entry_and_checksum() {
        let e = parse_bls(Path::new("ostree-1.conf"), ENTRY).unwrap();
        assert_eq!(e.version, 2);
        assert!(e.options.starts_with("root=LABEL=root rw"));
        assert_eq!(
            boot_checksum(&e.linux).unwrap(),
            "5a1e0c7a8e3c3a0b4e0bd1e6a2b1f1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8"
        );
        assert!(boot_checksum("/vmlinuz").is_err());
        assert!(boot_file(Path::new("/x"), "/../etc/passwd").is_err());
    }

    #[test]
    fn parses_pull_local_output() {
        assert_eq!(
            parse_pulled_bytes("5 metadata, 1 content objects imported; 1234 bytes content written\n"),
            Some(1234)
        );
        assert_eq!(
            parse_pulled_bytes("9 metadata, 3 content objects imported; 1.5 MB content written"),
            Some(1_500_000)
        );
        assert_eq!(parse_pulled_bytes("nothing"), None);
    }
}
