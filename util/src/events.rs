//! One event type for every stage of a run ([`Event`]): compose steps, the dev repository, the image
//! update, boots, publish and its static deltas, the up-to-date check. Library crates emit them and
//! print nothing themselves; the binary installs the [`Sink`] that renders them (plain lines on
//! stderr, or JSON lines beside the guest's test events with `--json`). With no sink installed (a
//! library user, a test binary) they are plain lines on stderr.
//!
//! A stage that takes a while says so when it starts ([`stage`]), so a long step (xz-compressing a
//! static delta from scratch takes minutes) is never silent.

use crate::Arch;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Where an event comes from in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The dev or Debian rpm-md repository a tree composes from.
    Devrepo,
    Compose,
    /// A compose server's candidate fetched over HTTP (`--from URL`).
    Pull,
    /// The offline update of the cached image.
    Image,
    Boot,
    /// The upgrade gate: the published commit booted and upgraded to the candidate.
    Upgrade,
    /// Signing, static deltas, summary and pruning of a passing commit.
    Publish,
    /// A tree/arch whose compose came out at the commit it was last tested at.
    UpToDate,
    Bisect,
    /// The CI service's own steps: history, reruns, the status page.
    Ci,
    Serve,
    /// The process itself: locks it waits for, signals it caught.
    Run,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Devrepo => "devrepo",
            Stage::Compose => "compose",
            Stage::Pull => "pull",
            Stage::Image => "image",
            Stage::Boot => "boot",
            Stage::Upgrade => "upgrade",
            Stage::Publish => "publish",
            Stage::UpToDate => "up-to-date",
            Stage::Bisect => "bisect",
            Stage::Ci => "ci",
            Stage::Serve => "serve",
            Stage::Run => "fedostree",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// A stage began; `what` says what it is doing (shown while it runs).
    StageStarted { what: String },
    /// A step inside a stage finished (`fetch: 12 packages, 3.1 MB`).
    StageStep { what: String, secs: Option<f64> },
    /// The stage ended well; `summary` says how.
    StageFinished { summary: String, secs: f64 },
    /// Something the user should know that is not a step: a retry, a warning, an interrupted run.
    Notice { message: String },
}

/// One event: a stage's kind of news about a tree on an arch (either may be absent for the run's own
/// events).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub stage: Stage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event as one line for people: `compose dev/minimal x86_64: fetch: 12 packages (3.1s)`.
    pub fn plain(&self) -> String {
        let mut who = self.stage.as_str().to_string();
        if let Some(t) = &self.tree {
            who.push(' ');
            who.push_str(t);
        }
        if let Some(a) = self.arch {
            who.push(' ');
            who.push_str(a.as_str());
        }
        match &self.kind {
            EventKind::StageStarted { what } => format!("{who}: {what} …"),
            EventKind::StageStep { what, secs: Some(s) } => format!("{who}: {what} ({s:.2}s)"),
            EventKind::StageStep { what, secs: None } => format!("{who}: {what}"),
            EventKind::StageFinished { summary, secs } => format!("{who}: {summary} ({secs:.1}s)"),
            EventKind::Notice { message } => format!("{who}: {message}"),
        }
    }
}

/// Renders events: installed once by the binary.
pub trait Sink: Send + Sync {
    fn emit(&self, e: &Event);
}

/// The default: one plain line per event on stderr.
pub struct PlainLines;

impl Sink for PlainLines {
    fn emit(&self, e: &Event) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{}", e.plain());
    }
}

static SINK: RwLock<Option<Arc<dyn Sink>>> = RwLock::new(None);

/// Recordings under way (see [`record`]): every event is also kept in each.
static RECORDINGS: RwLock<Vec<Arc<std::sync::Mutex<Vec<Event>>>>> = RwLock::new(Vec::new());

/// Keep every event emitted from now on (besides rendering it) until [`Recording::take`]: a run's
/// JUnit carries its stages' events.
pub fn record() -> Recording {
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    RECORDINGS.write().unwrap_or_else(|e| e.into_inner()).push(kept.clone());
    Recording { kept }
}

/// What [`record`] kept; recording stops when this is taken or dropped.
pub struct Recording {
    kept: Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Recording {
    pub fn take(self) -> Vec<Event> {
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDINGS
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k| !Arc::ptr_eq(k, &self.kept));
    }
}

/// Send every later event to `sink` (the binary calls this once, before the command runs).
pub fn set_sink(sink: Arc<dyn Sink>) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(sink);
}

pub fn emit(e: Event) {
    for kept in RECORDINGS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        kept.lock().unwrap_or_else(|e| e.into_inner()).push(e.clone());
    }
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner()).clone();
    match sink {
        Some(s) => s.emit(&e),
        None => PlainLines.emit(&e),
    }
}

/// Which tree and arch the events of a piece of work are about.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub tree: Option<String>,
    pub arch: Option<Arch>,
}

impl Scope {
    pub fn new(tree: &str, arch: Arch) -> Scope {
        Scope {
            tree: Some(tree.to_string()),
            arch: Some(arch),
        }
    }

    /// Events about the run itself, not one tree.
    pub fn run() -> Scope {
        Scope::default()
    }

    fn event(&self, stage: Stage, kind: EventKind) -> Event {
        Event {
            stage,
            tree: self.tree.clone(),
            arch: self.arch,
            kind,
        }
    }

    /// Announce `stage` doing `what`; [`Running::finish`] reports how it ended and how long it took.
    pub fn stage(&self, stage: Stage, what: impl Into<String>) -> Running {
        emit(self.event(stage, EventKind::StageStarted { what: what.into() }));
        Running {
            scope: self.clone(),
            stage,
            start: Instant::now(),
        }
    }

    /// A step inside `stage` is done.
    pub fn step(&self, stage: Stage, what: impl Into<String>, secs: Option<f64>) {
        emit(self.event(
            stage,
            EventKind::StageStep {
                what: what.into(),
                secs,
            },
        ));
    }

    pub fn notice(&self, stage: Stage, message: impl Into<String>) {
        emit(self.event(
            stage,
            EventKind::Notice {
                message: message.into(),
            },
        ));
    }
}

thread_local! {
    /// The scope of the work this thread is doing (see [`enter`]).
    static CURRENT: std::cell::RefCell<Scope> = std::cell::RefCell::new(Scope::default());
}

/// Make `scope` the current one on this thread until the guard drops: steps deep inside a stage
/// ([`step`], [`notice`]) then name the tree and arch without being handed them.
pub fn enter(scope: Scope) -> Entered {
    let previous = CURRENT.with(|c| c.replace(scope));
    Entered { previous }
}

/// Restores the scope [`enter`] replaced.
pub struct Entered {
    previous: Scope,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = std::mem::take(&mut self.previous);
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// This thread's current scope.
pub fn current() -> Scope {
    CURRENT.with(|c| c.borrow().clone())
}

/// A step of `stage` in the current scope.
pub fn step(stage: Stage, what: impl Into<String>, secs: Option<f64>) {
    current().step(stage, what, secs)
}

/// A notice of `stage` in the current scope.
pub fn notice(stage: Stage, message: impl Into<String>) {
    current().notice(stage, message)
}

/// A stage under way (see [`Scope::stage`]).
#[must_use = "finish the stage to report how it ended"]
pub struct Running {
    scope: Scope,
    stage: Stage,
    start: Instant,
}

impl Running {
    pub fn finish(self, summary: impl Into<String>) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        let kind = EventKind::StageFinished {
            summary: summary.into(),
            secs,
        };
        emit(self.scope.event(self.stage, kind));
        secs
    }
}

/// Run `f` as a step of `stage` in the current scope and report it once it succeeded, with the time
/// it took.
pub fn timed<T>(stage: Stage, what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    let out = f()?;
    step(stage, what, Some(start.elapsed().as_secs_f64()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn events_serialize_flat_beside_guest_events_and_render_plainly() {
        let e = Event {
            stage: Stage::Publish,
            tree: Some("server/docker-io".into()),
            arch: Some(Arch::X86_64),
            kind: EventKind::StageStarted {
                what: "static delta from scratch".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "stage-started");
        assert_eq!(v["stage"], "publish");
        assert_eq!(v["arch"], "x86_64");
        assert_eq!(
            e.plain(),
            "publish server/docker-io x86_64: static delta from scratch …"
        );
        let run = Scope::run().event(Stage::Ci, EventKind::Notice { message: "m".into() });
        assert!(serde_json::to_value(&run).unwrap().get("tree").is_none());
    }

    struct Collect(Mutex<Vec<Event>>);
    impl Sink for Collect {
        fn emit(&self, e: &Event) {
            self.0.lock().unwrap().push(e.clone());
        }
    }

    #[test]
    fn an_installed_sink_gets_every_event_of_a_stage() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        set_sink(sink.clone());
        let recording = record();
        let s = Scope::new("dev/minimal", Arch::Aarch64);
        let running = s.stage(Stage::Image, "deploying");
        {
            let _in = enter(s.clone());
            step(Stage::Image, "pull-local", Some(0.5));
        }
        assert!(current().tree.is_none(), "the scope ends with its guard");
        running.finish("updated");
        let got = sink.0.lock().unwrap().clone();
        let mine: Vec<_> = got.iter().filter(|e| e.stage == Stage::Image).collect();
        assert_eq!(mine.len(), 3, "{got:?}");
        assert_eq!(
            mine[1].tree.as_deref(),
            Some("dev/minimal"),
            "a deep step names its tree"
        );
        assert!(matches!(mine[2].kind, EventKind::StageFinished { .. }));
        let kept: Vec<Event> = recording
            .take()
            .into_iter()
            .filter(|e| e.stage == Stage::Image)
            .collect();
        assert_eq!(kept.len(), 3, "the recording keeps what the sink got: {kept:?}");
    }
}
