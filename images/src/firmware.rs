//! What lets real firmware boot an image the way ostree configured it, so a deployment made inside the
//! guest (`ostree admin upgrade`, `switch`, a rollback) is what the next boot runs.
//!
//! ostree's `uboot` bootloader backend is set in the sysroot's repo config: on every deployment change,
//! on the host or in the guest, it writes `/boot/loader.N/uEnv.txt` (`kernel_image=`, `ramdisk_image=`,
//! `bootargs=` of the default entry, paths already prefixed with `/boot`) and swaps `/boot/loader` to it.
//! U-Boot's distro boot finds `/boot/boot.scr` on the disk's first partition; that script loads
//! `uEnv.txt` and boots the entry. Tried first: `sysroot.bootloader=syslinux` with U-Boot's `sysboot`,
//! which on x86 hands zboot the initramfs with size 0 (U-Boot 2023.01) — the kernel then panics.
//!
//! Memory on x86 (qemu-x86's U-Boot, i440fx): the bzImage is loaded at `kernel_addr_r` (16 MiB) and
//! decompresses itself upwards; the initramfs goes to 512 MiB instead of the default 64 MiB, which a
//! kernel's decompression overwrote ("Initramfs unpacking failed: invalid magic"). On arm64 `booti` of a
//! compressed Image (Fedora's arm64 vmlinuz is gzip) needs `kernel_comp_addr_r`/`kernel_comp_size`,
//! which the default environment does not set.

use crate::guard::GuardedSysroot;
use anyhow::{Context, Result};
use fedostree_util::cmd::CommandRunExt;
use fedostree_util::Arch;
use std::process::Command;

/// The U-Boot boot script for `arch`, as text (`mkimage -T script` wraps it).
pub fn boot_script(arch: Arch) -> String {
    let load = "load ${devtype} ${devnum}:${distro_bootpart}";
    let common = format!(
        "echo \"fedostree: booting the default entry ostree wrote (/boot/loader/uEnv.txt)\"\n\
         {load} ${{scriptaddr}} /boot/loader/uEnv.txt\n\
         env import -t ${{scriptaddr}} ${{filesize}}\n\
         echo \"fedostree-boot: ${{kernel_image}} ${{bootargs}}\"\n"
    );
    let boot = match arch {
        Arch::X86_64 => format!(
            "setenv ramdisk_addr_r 0x20000000\n\
             {load} ${{kernel_addr_r}} ${{kernel_image}}\n\
             {load} ${{ramdisk_addr_r}} ${{ramdisk_image}}\n\
             zboot ${{kernel_addr_r}} 0 ${{ramdisk_addr_r}} ${{filesize}}\n"
        ),
        Arch::Aarch64 => format!(
            "setenv kernel_comp_addr_r 0x50000000\n\
             setenv kernel_comp_size 0x4000000\n\
             {load} ${{kernel_addr_r}} ${{kernel_image}}\n\
             {load} ${{ramdisk_addr_r}} ${{ramdisk_image}}\n\
             booti ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{filesize}} ${{fdtcontroladdr}}\n"
        ),
    };
    common + &boot
}

/// `mkimage`'s name for `arch`.
fn mkimage_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "arm64",
        Arch::X86_64 => "x86",
    }
}

/// On a fresh sysroot, before its first deployment: ostree's `uboot` backend (it reads the current
/// `boot/loader/uEnv.txt` before writing the next one, so an empty one must exist) and `/boot/boot.scr`.
pub fn configure(sr: &GuardedSysroot, arch: Arch) -> Result<()> {
    let root = sr.path();
    let script = boot_script(arch);
    Command::new("ostree")
        .arg("config")
        .arg(format!("--repo={}", root.join("ostree/repo").display()))
        .args(["set", "sysroot.bootloader", "uboot"])
        .run()?;
    let boot = root.join("boot");
    fs_err::create_dir_all(boot.join("loader.0"))?;
    fs_err::write(boot.join("loader.0/uEnv.txt"), "")?;
    std::os::unix::fs::symlink("loader.0", boot.join("loader")).context("linking boot/loader")?;
    // Where U-Boot's conventions look for it; ostree itself only reads boot/loader/uEnv.txt.
    std::os::unix::fs::symlink("loader/uEnv.txt", boot.join("uEnv.txt")).context("linking boot/uEnv.txt")?;
    let text = boot.join("boot.cmd");
    fs_err::write(&text, script)?;
    Command::new("mkimage")
        .args(["-A", mkimage_arch(arch), "-O", "linux", "-T", "script", "-C", "none"])
        .args(["-n", "fedostree"])
        .arg("-d")
        .arg(&text)
        .arg(boot.join("boot.scr"))
        .run_get_string()
        .context("mkimage (install u-boot-tools: ci/setup)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_load_what_ostree_wrote_and_boot_it() {
        let x86 = boot_script(Arch::X86_64);
        assert!(x86.contains("/boot/loader/uEnv.txt"));
        assert!(x86.contains("zboot ${kernel_addr_r} 0 ${ramdisk_addr_r} ${filesize}"));
        let arm = boot_script(Arch::Aarch64);
        assert!(arm.contains("kernel_comp_addr_r"));
        assert!(arm.contains("booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize}"));
        // An architecture without a script cannot reach here: `Arch` refuses it when parsed.
        assert!("ppc64le".parse::<Arch>().unwrap_err().contains("ppc64le"));
    }
}
