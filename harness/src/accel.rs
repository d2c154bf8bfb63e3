//! Accelerator choice: KVM only when a short, bounded probe VM proves it actually executes guest code.
//!
//! On the machines this project runs on, /dev/kvm exists, QEMU starts with `-accel kvm`, QMP answers, and
//! `query-kvm` / `query-status` say "enabled" and "running" — yet a Linux kernel dies in early boot with
//! "KVM internal error. Suberror: 1" (the VM then sits paused), and SeaBIOS's POST takes 2.7 s instead of
//! the 0.09 s it takes under TCG. So on x86_64 the probe also requires SeaBIOS to finish POST ("No bootable
//! device." on its debug port) within `KVM_POST_BUDGET`: a KVM slower than emulation is not worth using.
//! `run_vm` backs this up: a KVM VM that stops with an internal error before the guest said anything
//! marks KVM broken (`mark_kvm_broken`) and is retried under TCG.

use crate::qemu::{Accel, Arch, QemuArch};
use crate::qmp::Qmp;
use crate::vm::{kill_and_reap, owned_command};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

/// The probe budget `choose_accel` uses.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A working KVM finishes SeaBIOS's POST in well under this (TCG: 0.09 s; the broken nested KVM: 2.7 s).
pub const KVM_POST_BUDGET: Duration = Duration::from_millis(1500);
/// SeaBIOS's last words after a complete POST with no boot device: proof the vCPU ran real code.
const SEABIOS_POST_DONE: &str = "No bootable device";

/// Whether KVM works for `arch` on this host. Bounded by `timeout`; the probe QEMU is always killed (by PID).
/// A guest arch different from the host's is never probed: KVM cannot run it.
pub async fn probe_kvm(arch: Arch, timeout: Duration) -> bool {
    if Arch::host() != Some(arch) {
        tracing::debug!(%arch, "cross-arch guest: TCG without probing");
        return false;
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        tracing::debug!(error = %e, "/dev/kvm not usable");
        return false;
    }
    match probe(arch, Accel::Kvm, timeout.min(KVM_POST_BUDGET)).await {
        Ok(took) => {
            tracing::info!(%arch, ?took, "KVM works");
            true
        }
        Err(e) => {
            tracing::info!(%arch, "KVM unusable, falling back to TCG: {e:#}");
            false
        }
    }
}

/// The accelerator for `arch`: `forced` if given, otherwise KVM when `probe_kvm` says so. The probe runs
/// at most once per arch per process.
pub async fn choose_accel(arch: Arch, forced: Option<Accel>) -> Accel {
    if let Some(a) = forced {
        return a;
    }
    // Held across the probe so concurrent callers wait for one probe instead of starting several.
    let mut cache = cache().lock().await;
    let kvm = match cache.get(&arch) {
        Some(k) => *k,
        None => {
            let k = probe_kvm(arch, PROBE_TIMEOUT).await;
            cache.insert(arch, k);
            k
        }
    };
    if kvm {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

fn cache() -> &'static tokio::sync::Mutex<HashMap<Arch, bool>> {
    static CACHE: OnceLock<tokio::sync::Mutex<HashMap<Arch, bool>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A real VM proved KVM unusable for `arch` after the probe passed: later `choose_accel` calls in this
/// process pick TCG.
pub async fn mark_kvm_broken(arch: Arch) {
    cache().lock().await.insert(arch, false);
}

fn probe_args(arch: Arch, accel: Accel) -> Vec<String> {
    let mut a: Vec<&str> = vec!["-M", arch.machine()];
    if arch == Arch::Aarch64 {
        a.extend(["-cpu", if accel == Accel::Kvm { "host" } else { "cortex-a57" }]);
    }
    a.extend([
        "-accel",
        accel.as_str(),
        "-m",
        "64",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
    ]);
    // QMP on stdin/stdout: no socket path to create or clean up.
    a.extend(["-qmp", "stdio"]);
    if arch == Arch::X86_64 {
        // SeaBIOS's debug log (port 0x402) to our stderr pipe.
        a.extend(["-debugcon", "file:/dev/stderr", "-global", "isa-debugcon.iobase=0x402"]);
    }
    a.into_iter().map(str::to_owned).collect()
}

/// Start a throwaway VM with `accel` and prove it runs; returns how long the proof took. Also used with TCG
/// in tests, as the positive control that the proof itself works.
pub async fn probe(arch: Arch, accel: Accel, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut cmd = owned_command(&arch.qemu_binary(), &probe_args(arch, accel));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", arch.qemu_binary()))?;
    let (stdin, stdout, stderr) = (
        child.stdin.take().unwrap(),
        child.stdout.take().unwrap(),
        child.stderr.take().unwrap(),
    );
    let proof = async {
        let qmp = Qmp::handshake(stdout, stdin, timeout).await?;
        let kvm = qmp.execute("query-kvm", None).await?;
        if accel == Accel::Kvm && !(kvm["enabled"] == true && kvm["present"] == true) {
            bail!("query-kvm: {kvm}");
        }
        let st = qmp.execute("query-status", None).await?;
        if st["running"] != true {
            bail!("query-status: {st}");
        }
        if arch == Arch::X86_64 {
            let mut lines = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if lines.read_until(b'\n', &mut buf).await? == 0 {
                    bail!("QEMU exited before SeaBIOS finished POST");
                }
                if String::from_utf8_lossy(&buf).contains(SEABIOS_POST_DONE) {
                    break;
                }
            }
        }
        Ok(())
    };
    let result = tokio::time::timeout(timeout, proof).await;
    // Whatever happened, this QEMU goes: SIGKILL by PID and reap (kill_on_drop backs this up).
    kill_and_reap(&mut child, Duration::from_secs(2)).await;
    match result {
        Ok(Ok(())) => Ok(start.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("{accel} probe VM did not prove progress within {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cross_arch_is_tcg_without_probing() {
        let other = if Arch::host() == Some(Arch::X86_64) {
            Arch::Aarch64
        } else {
            Arch::X86_64
        };
        // No QEMU of the other arch runs here under KVM: false without starting one.
        assert!(!probe_kvm(other, Duration::from_secs(3)).await);
        assert_eq!(choose_accel(other, None).await, Accel::Tcg);
        assert_eq!(choose_accel(other, Some(Accel::Kvm)).await, Accel::Kvm);
    }

    #[tokio::test]
    async fn marked_broken_means_tcg() {
        let host = Arch::host().unwrap_or(Arch::X86_64);
        mark_kvm_broken(host).await;
        assert_eq!(choose_accel(host, None).await, Accel::Tcg);
    }
}
