//! [`ScenarioServer`]: `fedostree serve` for a test scenario. It keeps its access log for the test to
//! read, and can die in the middle of a response (the lifecycle's "server dies mid-pull").

use super::files::Body;
use super::{accept_loop, AccessLog, Limits, Site};
use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Dies once, at the first request below `prefix` that is not a static delta's superblock (libostree
/// fetches that whole first; a delta part is what a client resumes): that response stops halfway and the
/// listener closes, for `down` (connections are not kept alive, so nothing else gets through).
pub(super) struct Trap {
    prefix: String,
    sprung: AtomicBool,
    kill: Arc<tokio::sync::Notify>,
}

impl Trap {
    /// Whether the request for `path` is the one to die in; true once at most, and then the listener
    /// is told to close.
    pub(super) fn springs_at(&self, path: &str) -> bool {
        let armed =
            path.starts_with(&self.prefix) && !path.ends_with("/superblock") && !path.split('/').any(|c| c == "..");
        if !armed || self.sprung.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.kill.notify_one();
        true
    }

    /// The file's length announced, half of it sent, then an error: hyper drops the connection.
    pub(super) fn dying_response(&self, dir: &Path, path: &str) -> Response<Body> {
        let bytes = std::fs::read(dir.join(path.trim_start_matches('/'))).unwrap_or_default();
        let len = bytes.len();
        let half = Bytes::from(bytes).slice(..len / 2);
        // A pause after the first half, so the headers and that half reach the client before the end.
        let body = futures_util::stream::unfold(Some(half), |half| async move {
            match half {
                Some(h) => Some((Ok(hyper::body::Frame::data(h)), None)),
                None => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let e = std::io::Error::other("the scenario's server dies mid-response");
                    Some((Err(e), None))
                }
            }
        });
        let mut r = Response::new(StreamBody::new(body).boxed());
        r.headers_mut().insert(
            hyper::header::CONTENT_LENGTH,
            hyper::header::HeaderValue::from(len.max(1)),
        );
        r
    }
}

/// A server for one scenario run: `dir` on 127.0.0.1 (QEMU's user network shows it to the guest as
/// 10.0.2.2), its access log kept, optionally dying once as [`ScenarioServer::start`] says.
pub struct ScenarioServer {
    pub addr: SocketAddr,
    pub log: AccessLog,
    task: tokio::task::JoinHandle<()>,
}

impl ScenarioServer {
    /// With `die_at = Some((prefix, down))`: at the first request below `prefix` the server dies
    /// halfway through the response and comes back on the same port after `down`.
    pub async fn start(dir: PathBuf, die_at: Option<(String, Duration)>) -> Result<ScenarioServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = AccessLog::default();
        let kill = Arc::new(tokio::sync::Notify::new());
        let trap = die_at.as_ref().map(|(prefix, _)| Trap {
            prefix: prefix.clone(),
            sprung: AtomicBool::new(false),
            kill: kill.clone(),
        });
        let down = die_at.map(|(_, d)| d).unwrap_or_default();
        let site = Arc::new(Site {
            dir,
            log: log.clone(),
            trap,
            keep_alive: false,
        });
        let task = tokio::spawn(serve_and_die(listener, site, kill, down));
        Ok(ScenarioServer { addr, log, task })
    }
}

/// Serve until the trap springs, stay down for `down`, listen again on the same address. The dying
/// response's connection outlives its listener: the connections live here, ended when the server is
/// dropped.
async fn serve_and_die(
    listener: tokio::net::TcpListener,
    site: Arc<Site>,
    kill: Arc<tokio::sync::Notify>,
    down: Duration,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut connections = tokio::task::JoinSet::new();
    let mut listener = Some(listener);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    site.log
                        .push(format!("scenario server: cannot listen on {addr} again: {e}"));
                    return;
                }
            },
        };
        tokio::select! {
            _ = accept_loop(l, site.clone(), Limits::default(), &mut connections) => return,
            _ = kill.notified() => {
                site.log.push(format!("scenario server: died; back in {down:?}"));
                tokio::time::sleep(down).await;
                site.log.push("scenario server: back".to_owned());
            }
        }
    }
}

impl Drop for ScenarioServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
