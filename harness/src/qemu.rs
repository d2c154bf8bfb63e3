//! The QEMU command line as a pure function of the VM configuration (kola's `platformQemuArgs`).
//!
//! Nothing here touches the system: `qemu_command` is snapshot-tested for both arches, and `vm.rs` is the
//! only place that turns its output into a process.

use std::path::PathBuf;

pub use fedostree_util::Arch;

/// What QEMU calls each architecture's emulator and machine.
pub trait QemuArch {
    /// `qemu-system-<arch>`.
    fn qemu_binary(self) -> String;
    /// The machine type every fedostree VM of this arch uses.
    fn machine(self) -> &'static str;
}

impl QemuArch for Arch {
    fn qemu_binary(self) -> String {
        format!("qemu-system-{}", self.as_str())
    }

    fn machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "q35",
            Arch::Aarch64 => "virt",
        }
    }
}

fedostree_util::word_enum! {
    /// Which accelerator QEMU uses. Chosen by `accel::choose_accel`, never assumed.
    pub enum Accel, "accelerator" {
        Kvm = "kvm",
        Tcg = "tcg",
    }
}

/// Default guest memory: enough for systemd, dockerd and a container (real trees); QEMU allocates
/// guest pages on first touch, so a busybox dev guest still costs only what it uses.
pub const DEFAULT_MEMORY_MB: u32 = 1536;
/// The serial console's chardev; QEMU labels the screen with it ("serial0 console").
const SERIAL_ID: &str = "serial0";
/// The screen's size in characters (8×16 pixels each): 800×592, wide enough for a kernel oops line.
pub const SCREEN_COLS: u32 = 100;
pub const SCREEN_ROWS: u32 = 37;

/// Default vCPUs of a [`VmConfig`]; the pipeline sizes its guests with [`vcpus_for`].
pub const DEFAULT_SMP: u32 = 1;

/// vCPUs for each of `guests` VMs booting at once: the host's cores shared out, at least one.
/// Multi-threaded TCG runs each vCPU on its own host thread and systemd starts units in parallel:
/// one server/docker-io guest went from 155 s to 116 s QEMU start → exit with 2 vCPUs on this 2-core
/// host, while two guests with 2 vCPUs each on the same cores only fight over them.
pub fn vcpus_for(guests: usize) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / guests.max(1)).clamp(1, 8) as u32
}

fedostree_util::word_enum! {
    /// How the guest's kernel is chosen.
    #[derive(Default)]
    pub enum BootPath, "boot path" {
        /// QEMU loads the host's copy of the default entry's kernel and initramfs (`-kernel`): the
        /// fastest boot, but the host decides what boots and a guest reboot ends the VM. Single-boot runs.
        #[default]
        DirectKernel = "direct-kernel",
        /// Real firmware (U-Boot) boots what the disk's ostree configuration names, and a guest reboot
        /// boots again: a deployment made in the guest is what runs next. Runs that reboot.
        Firmware = "firmware",
    }
}

/// Debian's `u-boot-qemu` build for `arch`, given to QEMU as `-bios`. x86's is the 32-bit qemu-x86
/// build: the 64-bit one cannot start a Linux kernel ("Note many features are missing"), and both
/// are made for the i440fx machine (`pc`), which the firmware path therefore uses.
pub fn firmware_file(arch: Arch) -> PathBuf {
    PathBuf::from(match arch {
        Arch::X86_64 => "/usr/lib/u-boot/qemu-x86/u-boot.rom",
        Arch::Aarch64 => "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
    })
}

/// A value the host hands the guest through QEMU's firmware configuration device; the guest reads it
/// at `/sys/firmware/qemu_fw_cfg/by_name/opt/org.fedostree/<name>/raw` whatever booted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FwCfgValue {
    Text(String),
    File(PathBuf),
}

/// The fw_cfg name prefix of every item the harness passes (QEMU reserves `opt/` for users).
pub const FW_CFG_PREFIX: &str = "opt/org.fedostree/";

/// The virtio-serial port name the in-guest runner writes its JSON lines to.
pub const RESULTS_PORT: &str = "org.fedostree.results";

/// Everything that decides a VM's command line. `run_dir` receives console.log, results.jsonl, qmp.sock,
/// qemu.log and qemu-cmdline.txt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub arch: Arch,
    pub accel: Accel,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Kernel arguments from the deployment's BLS entry; `qemu_command` adds `console=` and `panic=-1`
    /// when absent.
    pub cmdline: String,
    /// A throwaway qcow2 overlay: the VM writes to it with `cache=unsafe`.
    pub disk: PathBuf,
    pub memory_mb: u32,
    pub smp: u32,
    pub run_dir: PathBuf,
    pub boot: BootPath,
    /// Items for the guest, named below [`FW_CFG_PREFIX`].
    pub fw_cfg: Vec<(String, FwCfgValue)>,
}

impl VmConfig {
    /// A config with the default memory and vCPU count.
    pub fn new(
        arch: Arch,
        accel: Accel,
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: impl Into<String>,
        disk: PathBuf,
        run_dir: PathBuf,
    ) -> Self {
        VmConfig {
            arch,
            accel,
            kernel,
            initrd,
            cmdline: cmdline.into(),
            disk,
            memory_mb: DEFAULT_MEMORY_MB,
            smp: DEFAULT_SMP,
            run_dir,
            boot: BootPath::DirectKernel,
            fw_cfg: Vec::new(),
        }
    }

    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join("console.log")
    }
    pub fn results_log(&self) -> PathBuf {
        self.run_dir.join("results.jsonl")
    }
    /// The VM's screen when a test failed or the boot broke: QMP `screendump` of the serial console's
    /// terminal, the last [`SCREEN_ROWS`] rows of what the guest printed as a terminal drew them.
    pub fn screenshot(&self) -> PathBuf {
        self.run_dir.join("screenshot.png")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        let in_run_dir = self.run_dir.join("qmp.sock");
        // sockaddr_un holds 107 bytes: deep run dirs (CI checkouts, nextest run ids) get a socket in
        // the temp dir instead, named after the run dir so the command line stays a pure function.
        if in_run_dir.as_os_str().len() <= 100 {
            return in_run_dir;
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.run_dir.hash(&mut h);
        std::env::temp_dir().join(format!("fedostree-qmp-{:016x}.sock", h.finish()))
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.run_dir.join("qemu.log")
    }
    pub fn cmdline_file(&self) -> PathBuf {
        self.run_dir.join("qemu-cmdline.txt")
    }
}

/// The kernel command line the guest actually gets: the BLS options plus what the harness relies on.
/// `console=` routes the kernel log to the logged serial port; `panic=-1` with `-no-reboot` makes a panic
/// end the VM at once instead of waiting for the whole-VM timeout.
///
/// An x86_64 guest under TCG also gets `tsc=reliable`. TCG derives every vCPU's TSC from QEMU's one
/// tick counter, so the TSCs agree by construction, yet the guest's warp check (timing loops on vCPUs
/// that are host threads) marks them unstable and falls back to the HPET: every `clock_gettime` then
/// becomes a syscall plus an emulated MMIO read instead of a vDSO `rdtsc`, and systemd and Go daemons
/// ask for the time constantly.
pub fn kernel_cmdline(cfg: &VmConfig) -> String {
    let mut args: Vec<String> = cfg.cmdline.split_whitespace().map(str::to_owned).collect();
    if !args.iter().any(|a| a.starts_with("console=")) {
        args.push(format!("console={}", cfg.arch.console_tty()));
    }
    if !args.iter().any(|a| a.starts_with("panic=")) {
        args.push("panic=-1".to_owned());
    }
    if cfg.arch == Arch::X86_64 && cfg.accel == Accel::Tcg && !args.iter().any(|a| a.starts_with("tsc=")) {
        args.push("tsc=reliable".to_owned());
    }
    args.join(" ")
}

/// QEMU binary and arguments for `cfg`. Pure: same config, same command line.
pub fn qemu_command(cfg: &VmConfig) -> (String, Vec<String>) {
    let p = |path: &std::path::Path| path.display().to_string();
    let opt = fedostree_util::qemu_opt::path_value;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    match cfg.arch {
        Arch::X86_64 if cfg.boot == BootPath::Firmware => push(&["-M", "pc"]),
        Arch::X86_64 => push(&["-M", "q35"]),
        Arch::Aarch64 => {
            // cortex-a57 under TCG: `-cpu max` emulates every optional extension and is 4–5× slower.
            let cpu = match cfg.accel {
                Accel::Kvm => "host",
                Accel::Tcg => "cortex-a57",
            };
            push(&["-M", "virt", "-cpu", cpu]);
        }
    }
    push(&["-accel", cfg.accel.as_str()]);
    push(&["-m", &cfg.memory_mb.to_string(), "-smp", &cfg.smp.to_string()]);
    push(&["-nodefaults", "-display", "none"]);
    match cfg.boot {
        // A guest reboot ends QEMU, so a panic ends the run.
        BootPath::DirectKernel => push(&[
            "-no-reboot",
            "-kernel",
            &p(&cfg.kernel),
            "-initrd",
            &p(&cfg.initrd),
            "-append",
            &kernel_cmdline(cfg),
        ]),
        // Reboots are part of the run; a panic (panic=-1 reboots at once) is seen on the console.
        BootPath::Firmware => push(&["-bios", &p(&firmware_file(cfg.arch))]),
    }
    for (name, value) in &cfg.fw_cfg {
        let v = match value {
            FwCfgValue::Text(t) => format!("string={}", opt(std::path::Path::new(t))),
            FwCfgValue::File(f) => format!("file={}", opt(f)),
        };
        push(&["-fw_cfg", &format!("name={FW_CFG_PREFIX}{name},{v}")]);
    }
    push(&[
        "-drive",
        &format!("if=none,id=d0,file={},format=qcow2,cache=unsafe", opt(&cfg.disk)),
        "-device",
        "virtio-blk-pci,drive=d0",
    ]);
    // QEMU's user network (slirp: DHCP and NAT, nothing reachable from outside): real trees
    // configure it with systemd-networkd, and network-online.target then means something.
    push(&["-nic", "user,model=virtio-net-pci"]);
    // An entropy source, as kola gives its guests: without one the kernel's pool fills from timer
    // jitter, slow under TCG, and systemd-random-seed holds sysinit.target for it (~2 s of each boot).
    push(&["-device", "virtio-rng-pci"]);
    // The guest's console is its serial port, and that port is the VM's screen: a QEMU text console
    // (what a QEMU window shows for `-serial vc`), so QMP `screendump` works on both arches, while
    // `logfile` keeps every byte in console.log. No display device: aarch64's `virt` has none, and
    // Debian's cloud kernels draw on nothing QEMU can add under direct kernel boot (cloud-arm64's
    // only framebuffers are EFI's and the PL111 that `virt` lacks); x86's VGA showed SeaBIOS only.
    push(&[
        "-chardev",
        &format!(
            "vc,id={SERIAL_ID},cols={SCREEN_COLS},rows={SCREEN_ROWS},logfile={},logappend=off",
            opt(&cfg.console_log())
        ),
        "-serial",
        &format!("chardev:{SERIAL_ID}"),
    ]);
    push(&[
        "-device",
        "virtio-serial-pci",
        "-chardev",
        &format!("file,id=results,path={}", opt(&cfg.results_log())),
        "-device",
        &format!("virtserialport,chardev=results,name={RESULTS_PORT}"),
    ]);
    push(&["-qmp", &format!("unix:{},server=on,wait=off", opt(&cfg.qmp_socket()))]);
    (cfg.arch.qemu_binary(), a)
}

/// Quote one word for a POSIX shell so `qemu-cmdline.txt` can be pasted back into a terminal.
pub fn shell_quote(word: &str) -> String {
    // A word with a NUL cannot be an argument at all; show it rather than fail the report.
    shlex::try_quote(word).map_or_else(|_| format!("{word:?}"), |q| q.into_owned())
}

/// The whole command as one shell line.
pub fn shell_line(binary: &str, args: &[String]) -> String {
    std::iter::once(binary)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arch: Arch, accel: Accel) -> VmConfig {
        VmConfig::new(
            arch,
            accel,
            "/boot/vmlinuz".into(),
            "/boot/initramfs.img".into(),
            "root=LABEL=root rw ostree=/ostree/boot.1/fedostree/abc/0 quiet",
            "/run/vm/overlay.qcow2".into(),
            "/run/vm".into(),
        )
    }

    #[test]
    fn x86_64_tcg() {
        let (bin, args) = qemu_command(&cfg(Arch::X86_64, Accel::Tcg));
        assert_eq!(bin, "qemu-system-x86_64");
        insta::assert_snapshot!(shell_line(&bin, &args).replace(" -", "\n  -"));
    }

    #[test]
    fn aarch64_tcg() {
        let (bin, args) = qemu_command(&cfg(Arch::Aarch64, Accel::Tcg));
        assert_eq!(bin, "qemu-system-aarch64");
        insta::assert_snapshot!(shell_line(&bin, &args).replace(" -", "\n  -"));
    }

    /// The firmware path: U-Boot as -bios (x86 on the i440fx machine it is built for), no host kernel, no
    /// -no-reboot (a guest reboot continues the run), fw_cfg items named under the project's prefix.
    #[test]
    fn firmware_boot_uses_u_boot_and_lets_the_guest_reboot() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let mut c = cfg(arch, Accel::Tcg);
            c.boot = BootPath::Firmware;
            c.fw_cfg = vec![
                ("scenario".into(), FwCfgValue::Text("lifecycle".into())),
                ("gpg".into(), FwCfgValue::File("/run/vm,x/key.gpg".into())),
            ];
            let (_, args) = qemu_command(&c);
            let bios = args.windows(2).find(|w| w[0] == "-bios").map(|w| w[1].clone());
            assert_eq!(bios.as_deref(), Some(firmware_file(arch).to_str().unwrap()));
            for absent in ["-kernel", "-initrd", "-append", "-no-reboot"] {
                assert!(!args.iter().any(|a| a == absent), "{arch}: {absent} in {args:?}");
            }
            if arch == Arch::X86_64 {
                assert!(args.windows(2).any(|w| w == ["-M", "pc"]), "{args:?}");
            }
            let fw: Vec<&String> = args.windows(2).filter(|w| w[0] == "-fw_cfg").map(|w| &w[1]).collect();
            assert_eq!(
                fw,
                [
                    "name=opt/org.fedostree/scenario,string=lifecycle",
                    "name=opt/org.fedostree/gpg,file=/run/vm,,x/key.gpg"
                ]
            );
        }
        assert_eq!(BootPath::default(), BootPath::DirectKernel);
    }

    #[test]
    fn aarch64_kvm_uses_host_cpu() {
        let (_, args) = qemu_command(&cfg(Arch::Aarch64, Accel::Kvm));
        let i = args.iter().position(|a| a == "-cpu").unwrap();
        assert_eq!(args[i + 1], "host");
        assert!(args.windows(2).any(|w| w == ["-accel", "kvm"]));
    }

    #[test]
    fn cmdline_keeps_explicit_console_and_panic() {
        let mut c = cfg(Arch::X86_64, Accel::Tcg);
        c.cmdline = "console=hvc0 panic=5 rw tsc=unstable".into();
        assert_eq!(kernel_cmdline(&c), "console=hvc0 panic=5 rw tsc=unstable");
        c.cmdline = "rw".into();
        c.arch = Arch::Aarch64;
        assert_eq!(kernel_cmdline(&c), "rw console=ttyAMA0 panic=-1");
    }

    #[test]
    fn tsc_is_trusted_only_for_x86_64_under_tcg() {
        let mut c = cfg(Arch::X86_64, Accel::Tcg);
        c.cmdline = "rw".into();
        assert_eq!(kernel_cmdline(&c), "rw console=ttyS0 panic=-1 tsc=reliable");
        c.accel = Accel::Kvm;
        assert_eq!(kernel_cmdline(&c), "rw console=ttyS0 panic=-1");
        c.arch = Arch::Aarch64;
        c.accel = Accel::Tcg;
        assert!(!kernel_cmdline(&c).contains("tsc="));
    }

    #[test]
    fn arch_and_accel_round_trip() {
        for a in [Arch::X86_64, Arch::Aarch64] {
            assert_eq!(a.as_str().parse::<Arch>().unwrap(), a);
            assert_eq!(a.to_string(), a.as_str());
        }
        for a in [Accel::Kvm, Accel::Tcg] {
            assert_eq!(a.as_str().parse::<Accel>().unwrap(), a);
        }
        assert!("ppc64le".parse::<Arch>().unwrap_err().contains("ppc64le"));
    }

    /// A state dir with `,` in its path: every option value QEMU splits on commas still names the whole
    /// path (QEMU reads `,,` as one comma), so no path can end a value and inject an option.
    #[test]
    fn commas_in_paths_cannot_inject_options() {
        let c = VmConfig::new(
            Arch::X86_64,
            Accel::Tcg,
            "/k".into(),
            "/i".into(),
            "rw",
            "/s,format=raw/overlay.qcow2".into(),
            "/s,format=raw".into(),
        );
        let (_, args) = qemu_command(&c);
        // Split the way QEMU's option parser does: `,,` is a literal comma.
        let split = |v: &str| -> Vec<String> {
            v.replace(",,", "\u{0}")
                .split(',')
                .map(|s| s.replace('\u{0}', ","))
                .collect()
        };
        let value = |flag: &str, key: &str| -> String {
            let v = args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].clone());
            let hits: Vec<String> = v
                .flat_map(|v| split(&v))
                .filter_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
                .collect();
            assert_eq!(hits.len(), 1, "{flag} {key}: {hits:?} in {args:?}");
            hits[0].clone()
        };
        assert_eq!(value("-drive", "file"), "/s,format=raw/overlay.qcow2");
        assert_eq!(value("-drive", "format"), "qcow2");
        let paths: Vec<String> = args
            .windows(2)
            .filter(|w| w[0] == "-chardev")
            .flat_map(|w| split(&w[1]))
            .filter_map(|kv| {
                let kv = kv.strip_prefix("path=").or_else(|| kv.strip_prefix("logfile="))?;
                Some(kv.to_owned())
            })
            .collect();
        assert_eq!(paths, ["/s,format=raw/console.log", "/s,format=raw/results.jsonl"]);
    }

    #[test]
    fn shell_quoting_round_trips() {
        for w in ["a-b,c=d/e.f", "two words", "it's", "", "$HOME `x` \\"] {
            assert_eq!(shlex::split(&shell_quote(w)).unwrap(), [w], "{w}");
        }
        let (bin, args) = qemu_command(&cfg(Arch::X86_64, Accel::Tcg));
        let back = shlex::split(&shell_line(&bin, &args)).unwrap();
        assert_eq!(back[0], bin);
        assert_eq!(back[1..], args[..]);
    }
}
