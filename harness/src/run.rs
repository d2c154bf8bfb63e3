//! `run_vm`: boot one VM, stream guest events as they arrive, and end it on the first of: QEMU exits,
//! the end marker (then a short power-off grace), console badness or a VM that QEMU stopped (kill at once),
//! or the whole-VM timeout.

use crate::console::{tail, ConsoleScan};
use crate::protocol::{EventParser, GuestEvent};
use crate::qemu::{Accel, VmConfig};
use crate::qmp::QmpEvent;
use crate::vm::Vm;
use anyhow::{Context, Result};
use fedostree_util::cancel::Cancel;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// How often results.jsonl and console.log are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// After `run-finished`, how long the guest gets to power itself off before the stop ladder.
pub const POWEROFF_GRACE: Duration = Duration::from_secs(5);
/// How often the VM's run state is checked over QMP (a STOP event also triggers a check).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// QEMU run states that mean the guest will never continue on its own.
const DEAD_STATES: &[&str] = &["internal-error", "guest-panicked", "io-error"];
/// Lines of console kept in the outcome.
pub const CONSOLE_TAIL_LINES: usize = 40;

#[derive(Debug, Clone, Default)]
pub struct VmOutcome {
    /// Every guest event, in the order the guest wrote them.
    pub events: Vec<GuestEvent>,
    /// `run-finished` was seen.
    pub finished: bool,
    /// The first console line that shows the guest broke.
    pub badness: Option<String>,
    /// The whole-VM timeout ended the run.
    pub timed_out: bool,
    pub console_tail: String,
    /// QEMU spawn → QEMU gone.
    pub wall: Duration,
    /// QEMU spawn → `run-started` read: the boot, up to the runner starting the tests.
    pub time_to_tests: Option<Duration>,
    /// QEMU spawn → `run-finished` read.
    pub time_to_results: Option<Duration>,
    /// Every boot of this VM in order: the first at QEMU start, then one per guest-initiated reset
    /// (firmware path: a reboot continues the run).
    pub boots: Vec<BootSection>,
}

/// Where one boot starts in the run's single console log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootSection {
    /// 1-based.
    pub number: u32,
    /// Byte offset into console.log where this boot's output begins.
    pub console_offset: u64,
    /// QEMU spawn → this boot's start, in milliseconds.
    pub started_ms: u64,
    /// What QEMU said ended the previous boot (QMP `RESET` reason), empty for the first.
    pub after: String,
}

/// Reads what was appended to a file since the last call. A missing file reads as empty (QEMU creates its
/// chardev files a moment after start).
struct FileTail {
    path: PathBuf,
    pos: u64,
}

impl FileTail {
    fn new(path: PathBuf) -> Self {
        FileTail { path, pos: 0 }
    }

    /// Local, small, append-only files: a plain read is cheaper than a trip through `spawn_blocking`.
    fn read_new(&mut self) -> Result<Vec<u8>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.pos))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .with_context(|| format!("reading {}", self.path.display()))?;
        self.pos += buf.len() as u64;
        Ok(buf)
    }
}

/// What the watch loop saw and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    Finished,
    Badness,
    /// QEMU stopped the VM in this run state.
    Stopped(&'static str),
    TimedOut,
    /// The run was cancelled (SIGINT/SIGTERM): the VM is killed.
    Cancelled,
}

struct Watch<'a> {
    /// A test failed: the screen is worth keeping (once).
    screen_wanted: bool,
    screen_taken: bool,
    results: FileTail,
    console: FileTail,
    parser: EventParser,
    scan: ConsoleScan,
    outcome: VmOutcome,
    started: Instant,
    on_event: &'a mut (dyn FnMut(&GuestEvent) + Send),
}

impl Watch<'_> {
    /// A reset: the console from here on is the next boot's. Read what the last boot wrote first, so the
    /// offset falls after it.
    fn new_boot(&mut self, ev: &QmpEvent) {
        let _ = self.poll(false);
        let reason = ev.data["reason"].as_str().unwrap_or("reset").to_owned();
        let number = self.outcome.boots.len() as u32 + 1;
        tracing::info!(number, %reason, "guest reset: boot {number} begins");
        self.outcome.boots.push(BootSection {
            number,
            console_offset: self.console.pos,
            started_ms: self.started.elapsed().as_millis() as u64,
            after: reason,
        });
    }

    /// Read both files and stream new events. `last` also takes an unterminated final line.
    fn poll(&mut self, last: bool) -> Result<()> {
        let bytes = self.results.read_new()?;
        let mut events = self.parser.feed(&bytes);
        if last {
            events.extend(self.parser.finish());
        }
        for ev in events {
            if matches!(ev, GuestEvent::RunStarted { .. }) && self.outcome.time_to_tests.is_none() {
                self.outcome.time_to_tests = Some(self.started.elapsed());
            }
            if matches!(ev, GuestEvent::RunFinished { .. }) && !self.outcome.finished {
                self.outcome.finished = true;
                self.outcome.time_to_results = Some(self.started.elapsed());
            }
            if let GuestEvent::TestFinished { status, .. } = &ev {
                use crate::protocol::TestStatus;
                self.screen_wanted |= matches!(status, TestStatus::Fail | TestStatus::Timeout);
            }
            (self.on_event)(&ev);
            self.outcome.events.push(ev);
        }
        let bytes = self.console.read_new()?;
        self.scan.feed(&bytes);
        if last {
            self.scan.finish();
        }
        Ok(())
    }
}

/// Boot `cfg`, stream guest events to `on_event`, and return what happened. Whatever path ends the run —
/// including this future being dropped — QEMU is gone afterwards (`Vm` kills on drop).
///
/// A KVM VM that QEMU stops with an internal error before the guest wrote any event is rerun under TCG
/// (the probe passed but KVM cannot run this kernel; its qemu.log is kept as qemu-kvm.log).
#[tracing::instrument(skip_all, fields(arch = %cfg.arch, accel = %cfg.accel, run_dir = %cfg.run_dir.display()))]
pub async fn run_vm(
    cfg: &VmConfig,
    timeout: Duration,
    cancel: &Cancel,
    on_event: &mut (dyn FnMut(&GuestEvent) + Send),
) -> Result<VmOutcome> {
    let (outcome, stopped) = run_once(cfg, timeout, cancel, on_event).await?;
    if cfg.accel == Accel::Kvm && stopped == Some("internal-error") && outcome.events.is_empty() {
        tracing::warn!(arch = %cfg.arch, "KVM internal error before the guest said anything: rerunning under TCG");
        crate::accel::mark_kvm_broken(cfg.arch).await;
        let _ = fs_err::rename(cfg.qemu_log(), cfg.run_dir.join("qemu-kvm.log"));
        let tcg = VmConfig {
            accel: Accel::Tcg,
            ..cfg.clone()
        };
        return Ok(run_once(&tcg, timeout, cancel, on_event).await?.0);
    }
    Ok(outcome)
}

/// One boot; also returns the dead run state QEMU stopped the VM in, if that is how it ended.
async fn run_once(
    cfg: &VmConfig,
    timeout: Duration,
    cancel: &Cancel,
    on_event: &mut (dyn FnMut(&GuestEvent) + Send),
) -> Result<(VmOutcome, Option<&'static str>)> {
    // A cancelled run starts no VM (the signal's cleanup would not know it).
    cancel.check()?;
    let mut vm = Vm::spawn(cfg).await?;
    let mut qmp_events = vm.take_qmp_events();
    let started = vm.started();
    let deadline = started + timeout;
    let status = vm
        .qmp()?
        .execute("query-status", None)
        .await
        .context("QMP query-status")?;
    tracing::debug!(qmp_ready = ?vm.qmp_ready(), status = %status["status"], "VM running");

    let mut w = Watch {
        screen_wanted: false,
        screen_taken: false,
        results: FileTail::new(cfg.results_log()),
        console: FileTail::new(cfg.console_log()),
        parser: EventParser::new(),
        scan: ConsoleScan::default(),
        outcome: VmOutcome {
            boots: vec![BootSection {
                number: 1,
                ..Default::default()
            }],
            ..Default::default()
        },
        started,
        on_event,
    };
    let ending = watch_until_end(cfg, &mut vm, &mut qmp_events, &mut w, deadline, cancel).await?;
    if matches!(ending, Ending::Badness | Ending::Stopped(_) | Ending::TimedOut) {
        w.screen_wanted = true;
        screenshot(cfg, &vm, &mut w).await;
    }
    end_vm(cfg, &mut vm, &mut w, ending, timeout).await?;
    // What a stopped VM reported proves nothing: the run ends here.
    cancel.check()?;
    let done = finish_outcome(w, ending)?;
    write_boot_sections(cfg, &done.0.boots)?;
    Ok(done)
}

/// `boots.json` (every boot's start in console.log) and, when the guest rebooted, each boot's part of
/// the console as `console.boot-N.log`: one log for the run, sections to read one boot at a time.
fn write_boot_sections(cfg: &VmConfig, boots: &[BootSection]) -> Result<()> {
    fs_err::write(cfg.run_dir.join("boots.json"), serde_json::to_vec_pretty(boots)?)?;
    if boots.len() < 2 {
        return Ok(());
    }
    let console = fs_err::read(cfg.console_log()).unwrap_or_default();
    for (i, b) in boots.iter().enumerate() {
        let start = (b.console_offset as usize).min(console.len());
        let end = boots
            .get(i + 1)
            .map_or(console.len(), |n| (n.console_offset as usize).min(console.len()));
        let name = format!("console.boot-{}.log", b.number);
        fs_err::write(cfg.run_dir.join(name), &console[start..end.max(start)])?;
    }
    Ok(())
}

/// The screen as PNG, once per run, when it is wanted. Best effort: a VM that no longer answers QMP
/// (a panic with `panic=-1` ends QEMU at once) just has no screenshot.
async fn screenshot(cfg: &VmConfig, vm: &Vm, w: &mut Watch<'_>) {
    if !w.screen_wanted || w.screen_taken {
        return;
    }
    w.screen_taken = true;
    let Ok(qmp) = vm.qmp() else { return };
    let args = serde_json::json!({"filename": cfg.screenshot().display().to_string(), "format": "png"});
    let wait = tokio::time::timeout(Duration::from_secs(5), qmp.execute("screendump", Some(args))).await;
    if !matches!(wait, Ok(Ok(_))) {
        tracing::info!(?wait, "no screenshot");
    }
}

/// Owns the watch loop: polls the files, QMP events and run state until something ends the run.
async fn watch_until_end(
    cfg: &VmConfig,
    vm: &mut Vm,
    qmp_events: &mut Option<UnboundedReceiver<QmpEvent>>,
    w: &mut Watch<'_>,
    deadline: Instant,
    cancel: &Cancel,
) -> Result<Ending> {
    let mut poweroff_deadline: Option<Instant> = None;
    let mut next_status = w.started + STATUS_INTERVAL;
    let ending = loop {
        let exited = vm.try_exit().is_some();
        // Read after checking for exit, so an exited VM's last writes are read before we stop looking.
        w.poll(exited)?;
        if w.scan.badness().is_some() {
            break Ending::Badness;
        }
        if exited {
            break Ending::Exited;
        }
        if cancel.is_cancelled() {
            break Ending::Cancelled;
        }
        screenshot(cfg, vm, w).await;
        let mut stop_event = false;
        while let Some(ev) = qmp_events.as_mut().and_then(|rx| rx.try_recv().ok()) {
            stop_event |= matches!(ev.event.as_str(), "STOP" | "GUEST_PANICKED");
            if ev.event == "RESET" {
                w.new_boot(&ev);
            }
        }
        let now = Instant::now();
        if stop_event || now >= next_status {
            next_status = now + STATUS_INTERVAL;
            // A paused-forever VM (e.g. "KVM internal error") would otherwise wait for the whole timeout.
            if let Ok(st) = vm.qmp()?.execute("query-status", None).await {
                let state = st["status"].as_str().unwrap_or_default();
                if let Some(dead) = DEAD_STATES.iter().find(|s| **s == state) {
                    break Ending::Stopped(dead);
                }
            }
        }
        if w.outcome.finished {
            let pd = *poweroff_deadline.get_or_insert(now + POWEROFF_GRACE);
            if now >= pd {
                break Ending::Finished;
            }
        }
        if now >= deadline {
            break Ending::TimedOut;
        }
        let next = (now + POLL_INTERVAL)
            .min(deadline)
            .min(poweroff_deadline.unwrap_or(deadline));
        // Wake early when QEMU exits; otherwise poll again after the interval.
        vm.wait_exit(next).await;
    };
    Ok(ending)
}

/// Owns ending QEMU the way `ending` calls for: kill, stop ladder, or nothing if it already exited.
async fn end_vm(cfg: &VmConfig, vm: &mut Vm, w: &mut Watch<'_>, ending: Ending, timeout: Duration) -> Result<()> {
    match ending {
        Ending::Exited => {}
        Ending::Badness => {
            // The guest is broken: a graceful power-off would only wait for nothing.
            tracing::warn!(
                badness = w.scan.badness().unwrap_or_default(),
                "console badness: killing VM"
            );
            vm.kill().await;
        }
        Ending::Cancelled => {
            tracing::info!("cancelled: killing VM");
            vm.kill().await;
        }
        Ending::Stopped(state) => {
            let why = qemu_log_reason(cfg).unwrap_or_default();
            tracing::warn!(state, %why, "QEMU stopped the VM: killing it");
            vm.kill().await;
            w.outcome
                .badness
                .get_or_insert(format!("QEMU stopped the VM ({state}){why}"));
        }
        Ending::Finished => {
            tracing::warn!("guest reported its end marker but did not power off: stopping it");
            vm.stop_ladder().await?;
        }
        Ending::TimedOut => {
            tracing::warn!(?timeout, "whole-VM timeout: stopping it");
            w.outcome.timed_out = true;
            vm.stop_ladder().await?;
        }
    }
    Ok(())
}

/// Owns the final read after QEMU is gone and turns the watch into the outcome `run_once` returns.
fn finish_outcome(mut w: Watch<'_>, ending: Ending) -> Result<(VmOutcome, Option<&'static str>)> {
    // QEMU is gone: read what it wrote last.
    w.poll(true)?;
    let wall = w.started.elapsed();
    if w.parser.garbage() > 0 {
        tracing::warn!(
            lines = w.parser.garbage(),
            "results port carried lines that are not protocol events"
        );
    }
    let mut outcome = w.outcome;
    if let Some(b) = w.scan.badness() {
        outcome.badness = Some(b.to_owned());
    }
    outcome.console_tail = tail(w.scan.text(), CONSOLE_TAIL_LINES);
    outcome.wall = wall;
    tracing::info!(?wall, time_to_results = ?outcome.time_to_results, ?ending, "VM done");
    let stopped = match ending {
        Ending::Stopped(s) => Some(s),
        _ => None,
    };
    Ok((outcome, stopped))
}

/// QEMU's own explanation from qemu.log ("KVM internal error. Suberror: 1"), as ": <line>".
fn qemu_log_reason(cfg: &VmConfig) -> Option<String> {
    let log = fs_err::read_to_string(cfg.qemu_log()).ok()?;
    let line = log.lines().find(|l| l.contains("error") || l.contains("Error"))?;
    Some(format!(": {}", line.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{Accel, Arch};

    /// Each boot's part of the one console log, cut where QMP said the guest reset.
    #[test]
    fn boot_sections_split_the_console_where_the_guest_reset() {
        let d = tempfile::tempdir().unwrap();
        let cfg = VmConfig::new(
            Arch::X86_64,
            Accel::Tcg,
            "/k".into(),
            "/i".into(),
            "",
            "/d".into(),
            d.path().into(),
        );
        fs_err::write(cfg.console_log(), "U-Boot one\nlinux one\nU-Boot two\nlinux two\n").unwrap();
        let boot = |number, console_offset, after: &str| BootSection {
            number,
            console_offset,
            started_ms: 0,
            after: after.into(),
        };
        write_boot_sections(&cfg, &[boot(1, 0, "")]).unwrap();
        assert!(
            !d.path().join("console.boot-1.log").exists(),
            "one boot: the console log is the section"
        );
        write_boot_sections(&cfg, &[boot(1, 0, ""), boot(2, 21, "guest-reset")]).unwrap();
        let read = |n: u32| fs_err::read_to_string(d.path().join(format!("console.boot-{n}.log"))).unwrap();
        assert_eq!(read(1), "U-Boot one\nlinux one\n");
        assert_eq!(read(2), "U-Boot two\nlinux two\n");
        let json: Vec<BootSection> =
            serde_json::from_slice(&fs_err::read(d.path().join("boots.json")).unwrap()).unwrap();
        assert_eq!(json[1].after, "guest-reset");
    }
}
