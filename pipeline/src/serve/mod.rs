//! `fedostree serve`: the public repository over plain HTTP/1.1, as ostree clients pull it (many small
//! objects over a few keep-alive connections, byte ranges when a transfer resumes, `summary` revalidated
//! with its ETag). Any static web server serving `$STATE/public` works as well; this one needs no setup.
//! One access-log line per request on stderr.
//!
//! - [`files`] answers one request from the directory (ranges, validators, content types);
//! - [`stall`] ends a connection whose client stopped reading;
//! - [`scenario`] is the same server for a test scenario, which can die in the middle of a response.
//!
//! Every accepted socket gets `TCP_NODELAY`: hyper writes a small response's head and body in separate
//! `writev`s when the body is not ready with the head, and without it Nagle's algorithm held the second
//! segment until the client's delayed ACK, about 40 ms per request (issue 31, measured with strace).

mod files;
mod scenario;
mod stall;

pub use scenario::ScenarioServer;

use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one client may hold: nginx's `worker_connections` and its header, keep-alive and send
/// timeouts, folded into one.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; beyond it the listener waits (the kernel's backlog holds the rest).
    pub max_connections: usize,
    /// How long a client may take to send a request's head, stay idle between two requests on a
    /// kept-alive connection, or leave a response unread.
    pub client_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Under the usual soft limit of 1,024 open files, with room for the files being sent.
        Limits {
            max_connections: 512,
            client_timeout: Duration::from_secs(30),
        }
    }
}

/// Serve `dir` on `addr` until the process is stopped. The bound address (useful with port 0) is
/// printed on stderr first.
pub async fn serve(dir: PathBuf, addr: SocketAddr, limits: Limits) -> Result<()> {
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
    let site = Arc::new(Site {
        dir,
        log: AccessLog(Arc::default(), true),
        trap: None,
        keep_alive: true,
    });
    accept_loop(listener, site, limits, &mut tokio::task::JoinSet::new()).await
}

/// What every connection of one server shares.
struct Site {
    dir: PathBuf,
    log: AccessLog,
    trap: Option<scenario::Trap>,
    /// Off for a scenario: a server that died must refuse every request until it is back.
    keep_alive: bool,
}

/// Accept until the future is dropped, each connection a task of `connections` (dropping the set ends
/// them).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    site: Arc<Site>,
    limits: Limits,
    connections: &mut tokio::task::JoinSet<()>,
) -> Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let slot = slots.clone().acquire_owned().await.context("connection slots closed")?;
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted: neither ends
                // the server. The pause lets open connections finish and free descriptors.
                site.log.push(format!("accepting a connection: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Not fatal: the connection is only slower without it.
        let _ = stream.set_nodelay(true);
        let site = site.clone();
        connections.spawn(async move {
            serve_connection(stream, peer, site, limits).await;
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, site: Arc<Site>, limits: Limits) {
    let io = hyper_util::rt::TokioIo::new(stall::StallTimeout::new(stream, limits.client_timeout));
    let service = hyper::service::service_fn(move |req| {
        let site = site.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(&site, peer, req).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header timeout also runs while a kept-alive connection waits for its next request.
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.client_timeout)
        .keep_alive(true);
    // Errors (a client gone, a timeout) end this connection only; the access log has its requests.
    let _ = http.serve_connection(io, service).await;
}

/// Answer one request and log it: `PEER "METHOD PATH[ RANGE]" STATUS BYTES MS`, as common log formats
/// put it.
async fn respond(site: &Site, peer: SocketAddr, req: Request<Incoming>) -> Response<files::Body> {
    let started = Instant::now();
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let request = format!("{peer} \"{} {}{range}\"", req.method(), req.uri());
    if let Some(trap) = site.trap.as_ref().filter(|t| t.springs_at(req.uri().path())) {
        site.log.push(format!("{request} DIES halfway through the response"));
        return trap.dying_response(&site.dir, req.uri().path());
    }
    let mut response = files::respond(&site.dir, &req);
    if !site.keep_alive {
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    let bytes = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    site.log.push(format!(
        "{request} {} {bytes} {:.1}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    ));
    response
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
