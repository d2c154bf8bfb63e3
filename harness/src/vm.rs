//! `Vm`: the one owner of a QEMU process — spawn, QMP, wait, the stop ladder, and a kill on drop.
//!
//! No path leaves QEMU behind: the child gets PR_SET_PDEATHSIG=SIGKILL (the harness dying kills it),
//! `kill_on_drop`, and `Drop` SIGKILLs and reaps it. Signals go to the child's PID, never to a name.

use crate::qemu::{qemu_command, shell_line, VmConfig};
use crate::qmp::{Qmp, QmpError};
use anyhow::{bail, Context, Result};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long QEMU gets to create its QMP socket and answer the greeting.
pub const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on every QMP command.
pub const QMP_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace after `system_powerdown` and again after `quit` in the stop ladder.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// sun_path is 108 bytes including the NUL: QEMU fails obscurely on longer socket paths.
const MAX_UNIX_PATH: usize = 107;

/// A `Command` for a QEMU process the harness owns: killed when the handle drops and when the harness dies.
///
/// PDEATHSIG is tied to the *thread* that forks: spawn from a runtime thread that lives as long as the VM
/// (a tokio worker or the caller's thread under a current-thread runtime), not from `spawn_blocking`.
pub(crate) fn owned_command(binary: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let parent = std::process::id() as i32;
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe calls
    // (prctl, getppid, kill); it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || fedostree_util::sys::die_with_parent(parent));
    }
    cmd
}

/// Send SIGKILL to the child (by PID, through tokio) and reap it, waiting at most `within`.
/// Safe to call on a child that has already exited or been reaped.
pub(crate) async fn kill_and_reap(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    let _ = child.start_kill();
    tokio::time::timeout(within, child.wait())
        .await
        .ok()
        .and_then(Result::ok)
}

pub struct Vm {
    child: Child,
    pid: u32,
    qmp: Option<Qmp>,
    exit: Option<ExitStatus>,
    cfg: VmConfig,
    started: Instant,
    qmp_ready: Duration,
}

impl Vm {
    /// Start QEMU for `cfg` and connect QMP. Fails (with the tail of qemu.log) if QEMU exits or QMP does
    /// not answer within `QMP_CONNECT_TIMEOUT`.
    #[tracing::instrument(skip_all, fields(arch = %cfg.arch, run_dir = %cfg.run_dir.display()))]
    pub async fn spawn(cfg: &VmConfig) -> Result<Vm> {
        let sock = cfg.qmp_socket();
        if sock.as_os_str().len() > MAX_UNIX_PATH {
            bail!(
                "QMP socket path {} is longer than {MAX_UNIX_PATH} bytes: use a shorter run dir",
                sock.display()
            );
        }
        fs_err::create_dir_all(&cfg.run_dir).with_context(|| format!("creating {}", cfg.run_dir.display()))?;
        // Stale files from an earlier run would be read as this run's console and results.
        for f in [cfg.console_log(), cfg.results_log(), sock.clone()] {
            match fs_err::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing stale {}", f.display()))
                }
                _ => {}
            }
        }
        if cfg.boot == crate::qemu::BootPath::Firmware {
            let fw = crate::qemu::firmware_file(cfg.arch);
            if !fw.is_file() {
                bail!(
                    "{} is missing: booting through firmware needs Debian's u-boot-qemu (ci/setup installs it)",
                    fw.display()
                );
            }
        }
        let (binary, args) = qemu_command(cfg);
        let line = shell_line(&binary, &args);
        tracing::debug!(command = %line, "starting QEMU");
        fs_err::write(cfg.cmdline_file(), format!("{line}\n"))
            .with_context(|| format!("writing {}", cfg.cmdline_file().display()))?;
        let log =
            std::fs::File::create(cfg.qemu_log()).with_context(|| format!("creating {}", cfg.qemu_log().display()))?;
        let mut cmd = owned_command(&binary, &args);
        cmd.stdout(log.try_clone()?).stderr(log);
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawning {binary}"))?;
        let pid = child.id().context("QEMU exited before its PID was read")?;
        let mut vm = Vm {
            child,
            pid,
            qmp: None,
            exit: None,
            cfg: cfg.clone(),
            started,
            qmp_ready: Duration::ZERO,
        };
        let deadline = started + QMP_CONNECT_TIMEOUT;
        let connected = tokio::select! {
            q = Qmp::connect(&sock, deadline, QMP_COMMAND_TIMEOUT) => Some(q),
            st = vm.child.wait() => { vm.exit = st.ok(); None }
        };
        match connected {
            Some(Ok(q)) => {
                vm.qmp = Some(q);
                vm.qmp_ready = started.elapsed();
                tracing::debug!(pid, qmp_ready = ?vm.qmp_ready, "QEMU up");
                Ok(vm)
            }
            Some(Err(e)) => {
                let log = vm.log_tail();
                vm.kill().await;
                Err(anyhow::Error::new(e).context(format!("QEMU did not bring up QMP; qemu.log:\n{log}")))
            }
            None => bail!(
                "QEMU exited at start ({}); qemu.log:\n{}",
                describe(vm.exit),
                vm.log_tail()
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }
    /// When QEMU was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }
    /// Spawn → QMP negotiated.
    pub fn qmp_ready(&self) -> Duration {
        self.qmp_ready
    }

    /// The QMP connection (present from `spawn` until the VM is stopped).
    pub fn qmp(&self) -> Result<&Qmp, QmpError> {
        self.qmp.as_ref().ok_or(QmpError::Closed)
    }

    /// Take QMP's event channel (once): `STOP`, `SHUTDOWN`, `GUEST_PANICKED`, ...
    pub fn take_qmp_events(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::qmp::QmpEvent>> {
        self.qmp.as_mut().and_then(Qmp::take_events)
    }

    /// The exit status if QEMU has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Wait for QEMU to exit by itself until `deadline`; `None` if it is still running then.
    pub async fn wait_exit(&mut self, deadline: Instant) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Ok(st)) = tokio::time::timeout_at(deadline, self.child.wait()).await {
                self.exit = Some(st);
            }
        }
        self.exit
    }

    /// The stop ladder: `system_powerdown` → grace → `quit` → grace → SIGKILL. Returns how QEMU ended.
    pub async fn stop(mut self) -> Result<ExitStatus> {
        self.stop_ladder().await
    }

    /// The ladder on a borrowed VM (used by `run_vm`, which still wants to read the logs afterwards).
    /// Idempotent: on an exited VM it just returns the status.
    pub async fn stop_ladder(&mut self) -> Result<ExitStatus> {
        for (cmd, grace) in [("system_powerdown", STOP_GRACE), ("quit", STOP_GRACE)] {
            if let Some(st) = self.try_exit() {
                return Ok(st);
            }
            if let Some(q) = &self.qmp {
                match q.execute(cmd, None).await {
                    Ok(_) => tracing::debug!(pid = self.pid, cmd, "stop ladder"),
                    Err(e) => {
                        tracing::debug!(pid = self.pid, cmd, error = %e, "stop ladder step failed")
                    }
                }
            }
            if let Some(st) = self.wait_exit(Instant::now() + grace).await {
                return Ok(st);
            }
        }
        tracing::warn!(pid = self.pid, "QEMU ignored powerdown and quit: SIGKILL");
        self.kill().await.context("QEMU did not exit after SIGKILL")
    }

    /// SIGKILL now and reap. Safe to call any number of times.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = kill_and_reap(&mut self.child, Duration::from_secs(5)).await;
            // QEMU removes its socket only on a clean exit.
            let _ = fs_err::remove_file(self.cfg.qmp_socket());
        }
        self.qmp = None;
        self.exit
    }

    fn log_tail(&self) -> String {
        let text = fs_err::read_to_string(self.cfg.qemu_log()).unwrap_or_default();
        crate::console::tail(&text, 20)
    }
}

fn describe(st: Option<ExitStatus>) -> String {
    match st {
        Some(st) => match (st.code(), st.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => st.to_string(),
        },
        None => "status unknown".into(),
    }
}

impl Drop for Vm {
    /// Best effort: SIGKILL and reap synchronously so the PID is gone when `Vm` is gone (tokio's orphan
    /// reaper would otherwise leave a zombie until the next SIGCHLD). A SIGKILLed QEMU exits in
    /// milliseconds; the wait is bounded at 1 s.
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = self.child.start_kill();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = fs_err::remove_file(self.cfg.qmp_socket());
    }
}
