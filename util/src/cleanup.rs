//! Process-wide cleanup registry: every OS resource owner registers an idempotent teardown closure while it
//! holds the resource. It is the backstop behind cancellation: on SIGINT/SIGTERM the signal thread trips
//! the command's [`Cancel`] token, if it registered one, and the command unwinds on its own (its owners
//! drop what they hold). A second signal, an unwind that takes longer than [`UNWIND_GRACE`], or a process
//! with no token takes the hard path: kill our child processes, run the registered teardowns newest first
//! (umount before loop detach before qemu-storage-daemon), and exit 130/143.
//!
//! Owners call [`deregister`] only after their own teardown finished, so a signal arriving mid-teardown
//! still finds the entry (teardowns are idempotent: killing or unmounting twice is safe). Other crates
//! (the harness's QEMU, for one) may register here too.

use crate::cancel::Cancel;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

type Teardown = Box<dyn FnOnce() + Send + 'static>;

struct Registry {
    next: u64,
    entries: BTreeMap<u64, (String, Teardown)>,
}

/// How long a cancelled command may take to unwind before the hard path runs.
pub const UNWIND_GRACE: Duration = Duration::from_secs(30);

/// The command's token, if it registered one ([`cancel_on_signal`]).
static TOKEN: Mutex<Option<Cancel>> = Mutex::new(None);

/// Let SIGINT/SIGTERM trip `cancel` (and install the signal thread): the command unwinds itself.
pub fn cancel_on_signal(cancel: &Cancel) {
    *TOKEN.lock().unwrap_or_else(|e| e.into_inner()) = Some(cancel.clone());
    install_signal_handler();
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    entries: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Token for a registered teardown; pass it back to [`deregister`].
#[derive(Debug)]
pub struct CleanupHandle(u64);

/// Register an idempotent teardown to run if the process is interrupted by SIGINT/SIGTERM.
pub fn register(what: impl Into<String>, teardown: impl FnOnce() + Send + 'static) -> CleanupHandle {
    install_signal_handler();
    let mut r = registry();
    let id = r.next;
    r.next += 1;
    r.entries.insert(id, (what.into(), Box::new(teardown)));
    CleanupHandle(id)
}

/// Forget a teardown (the owner ran it itself). Blocks while a signal-time cleanup runs.
pub fn deregister(h: CleanupHandle) {
    registry().entries.remove(&h.0);
}

/// How many teardowns are registered (tests).
pub fn pending() -> usize {
    registry().entries.len()
}

/// Run every registered teardown, newest first. Holds the registry lock throughout, so owners on other
/// threads block in [`deregister`] until it is done.
pub fn run_all() {
    let mut r = registry();
    let entries = std::mem::take(&mut r.entries);
    for (_, (what, f)) in entries.into_iter().rev() {
        crate::events::notice(crate::events::Stage::Run, format!("cleaning up {what}"));
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            crate::events::notice(crate::events::Stage::Run, format!("cleanup of {what} panicked"));
        }
    }
}

/// Install the SIGINT/SIGTERM thread once per process. Called by [`register`]; the CLI may call it early.
pub fn install_signal_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot install signal handler: {e}");
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("fedostree-signals".into())
            .spawn(move || {
                let Some(sig) = signals.forever().next() else { return };
                let name = crate::cancel::signal_name(sig);
                let token = TOKEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(token) = token {
                    token.cancel(sig);
                    let msg = format!("caught {name}, stopping (again to force)");
                    crate::events::notice(crate::events::Stage::Run, msg);
                    // The command unwinds and exits by itself; a second signal or a stuck unwind
                    // takes the hard path.
                    let (tx, rx) = std::sync::mpsc::channel();
                    std::thread::spawn(move || {
                        let again = signals.forever().next();
                        let _ = tx.send(again);
                    });
                    let _ = rx.recv_timeout(UNWIND_GRACE);
                }
                crate::events::notice(crate::events::Stage::Run, format!("caught {name}, cleaning up"));
                if pending() > 0 {
                    stop_children(Duration::from_secs(5));
                }
                run_all();
                std::process::exit(128 + sig);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot spawn signal thread: {e}");
        }
    });
}

/// Direct children of this process (e.g. an `ostree admin deploy` in flight holding the mount busy).
fn children() -> Vec<i32> {
    crate::sys::children_of(std::process::id() as i32)
}

/// SIGTERM our children, wait up to `grace`, then SIGKILL the rest.
fn stop_children(grace: Duration) {
    let kids = children();
    for &pid in &kids {
        let _ = crate::sys::kill(pid, crate::sys::Sig::TERM);
    }
    // Whoever is still there after the grace period gets SIGKILL below.
    let _ = crate::poll::until(grace, crate::poll::Every::fixed(Duration::from_millis(20)), || {
        for &pid in &kids {
            crate::sys::try_reap(pid);
        }
        Ok(kids.iter().all(|&p| !crate::sys::pid_alive(p)).then_some(()))
    });
    for &pid in &kids {
        if crate::sys::pid_alive(pid) {
            let _ = crate::sys::kill(pid, crate::sys::Sig::KILL);
            crate::sys::try_reap(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The path a signal takes (`run_all`): registered teardowns run newest first, exactly once, a
    /// panicking one does not stop the others, and a deregistered one never runs. One test, because
    /// the registry is process-wide and tests run in parallel.
    #[test]
    fn run_all_tears_down_newest_first_once() {
        let gone = Arc::new(AtomicUsize::new(0));
        let g = gone.clone();
        let h = register("deregistered", move || {
            g.fetch_add(1, Ordering::SeqCst);
        });
        deregister(h);

        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for name in ["qsd", "loop", "mount"] {
            let o = order.clone();
            handles.push(register(name, move || o.lock().unwrap().push(name)));
        }
        register("panicking", || panic!("teardown bug"));
        run_all();
        assert_eq!(*order.lock().unwrap(), ["mount", "loop", "qsd"]);
        assert_eq!(gone.load(Ordering::SeqCst), 0, "a deregistered teardown ran");
        assert_eq!(pending(), 0);
        run_all();
        assert_eq!(order.lock().unwrap().len(), 3, "a teardown ran twice");
        // Owners deregistering after a signal-time cleanup is harmless.
        for h in handles {
            deregister(h);
        }
    }
}
