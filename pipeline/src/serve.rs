//! `fedostree serve`: the public repository over plain HTTP, as clients pull it (ostree's fetcher asks
//! for byte ranges of large objects and deltas when a transfer resumes). Any static web server serving
//! `$STATE/public` works as well; this one needs no setup. One access-log line per request on stderr.
//!
//! [`ScenarioServer`] is the same server for a test scenario: it keeps its access log for the test to
//! read, and can die in the middle of a response (the lifecycle's "server dies mid-pull").

use anyhow::{Context, Result};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serve `dir` on `addr` until the process is stopped. The bound address (useful with port 0) is
/// printed on stderr first.
pub async fn serve(dir: PathBuf, addr: SocketAddr) -> Result<()> {
    if !dir.is_dir() {
        fedostree_util::bail_input!(
            "{}: no repository there yet (`fedostree test` publishes into the public one, `fedostree compose` commits candidates)",
            dir.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let what = format!("serving {} on http://{}/", dir.display(), listener.local_addr()?);
    fedostree_util::events::Scope::run().notice(fedostree_util::events::Stage::Serve, what);
    let log = AccessLog(Arc::default(), true);
    let app = router(dir, log, None, false);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("serving HTTP")
}

/// Access-log lines kept in memory with when they were logged, as well as printed (a scenario checks
/// what a client fetched, and when).
/// `echo`: on stderr only (`fedostree serve` runs for long); else kept (a scenario writes it into its run dir).
#[derive(Clone, Default)]
pub struct AccessLog(Arc<Mutex<Vec<(Instant, String)>>>, bool);

impl AccessLog {
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
    fn push(&self, line: String) {
        if self.1 {
            fedostree_util::events::Scope::run().notice(fedostree_util::events::Stage::Serve, line);
        } else if let Ok(mut l) = self.0.lock() {
            l.push((Instant::now(), line));
        }
    }
}

/// Dies once, at the first request below `prefix` that is not a static delta's superblock (libostree
/// fetches that whole first; a delta part is what a client resumes): that response stops halfway and the
/// listener closes, for `down` (connections are not kept alive, so nothing else gets through).
#[derive(Clone)]
struct Trap {
    prefix: String,
    sprung: Arc<std::sync::atomic::AtomicBool>,
    kill: Arc<tokio::sync::Notify>,
}

/// `close`: no keep-alive, so a server that died refuses every request until it is back.
fn router(dir: PathBuf, log: AccessLog, trap: Option<Trap>, close: bool) -> axum::Router {
    let files = tower_http::services::ServeDir::new(&dir);
    axum::Router::new()
        .fallback_service(files)
        .layer(axum::middleware::from_fn(move |ci, req, next| {
            access_log(log.clone(), trap.clone(), dir.clone(), close, ci, req, next)
        }))
}

/// `PEER "METHOD PATH" STATUS BYTES MS`, as common log formats put it.
async fn access_log(
    log: AccessLog,
    trap: Option<Trap>,
    dir: PathBuf,
    close: bool,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let range = req
        .headers()
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let started = Instant::now();
    let path = uri.path();
    let trapped =
        |t: &Trap| path.starts_with(&t.prefix) && !path.ends_with("/superblock") && !path.split('/').any(|c| c == "..");
    if let Some(t) = trap.filter(trapped) {
        if !t.sprung.swap(true, std::sync::atomic::Ordering::SeqCst) {
            log.push(format!(
                "{peer} \"{method} {uri}{range}\" DIES halfway through the response"
            ));
            t.kill.notify_one();
            return dying_response(&dir, uri.path()).await;
        }
    }
    let mut response = next.run(req).await;
    if close {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    let bytes = response
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    log.push(format!(
        "{peer} \"{method} {uri}{range}\" {} {bytes} {:.1}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    ));
    response
}

/// The file's length announced, half of it sent, then an error: hyper drops the connection.
async fn dying_response(dir: &std::path::Path, path: &str) -> Response {
    let file = dir.join(path.trim_start_matches('/'));
    let bytes = tokio::fs::read(&file).await.unwrap_or_default();
    let len = bytes.len();
    let half = bytes[..len / 2].to_vec();
    // A pause after the first half, so the headers and that half reach the client before the end.
    let body = futures_util::stream::unfold(Some(half), |half| async move {
        match half {
            Some(h) => Some((Ok(h), None)),
            None => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let e = std::io::Error::other("the scenario's server dies mid-response");
                Some((Err::<Vec<u8>, _>(e), None))
            }
        }
    });
    Response::builder()
        .header(axum::http::header::CONTENT_LENGTH, len.max(1))
        .body(axum::body::Body::from_stream(body))
        .expect("a response with a length and a body")
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
            sprung: Arc::default(),
            kill: kill.clone(),
        });
        let down = die_at.map(|(_, d)| d).unwrap_or_default();
        let app = router(dir, log.clone(), trap, true);
        let log2 = log.clone();
        let task = tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let l = match listener.take() {
                    Some(l) => l,
                    None => match tokio::net::TcpListener::bind(addr).await {
                        Ok(l) => l,
                        Err(e) => {
                            log2.push(format!("scenario server: cannot listen on {addr} again: {e}"));
                            return;
                        }
                    },
                };
                let service = app.clone().into_make_service_with_connect_info::<SocketAddr>();
                let serving = async {
                    let _ = axum::serve(l, service).await;
                };
                tokio::select! {
                    _ = serving => return,
                    _ = kill.notified() => {
                        log2.push(format!("scenario server: died; back in {down:?}"));
                        tokio::time::sleep(down).await;
                        log2.push("scenario server: back".to_owned());
                    }
                }
            }
        });
        Ok(ScenarioServer { addr, log, task })
    }
}

impl Drop for ScenarioServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
