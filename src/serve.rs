//! `fedostree serve`: the public repository over plain HTTP, as clients pull it (ostree's fetcher asks
//! for byte ranges of large objects and deltas when a transfer resumes). Any static web server serving
//! `$STATE/public` works as well; this one needs no setup. One access-log line per request on stderr.

use anyhow::{Context, Result};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// Serve `dir` on `addr` until the process is stopped. The bound address (useful with port 0) is
/// printed on stderr first.
pub async fn serve(dir: PathBuf, addr: SocketAddr) -> Result<()> {
    if !dir.is_dir() {
        fedostree_util::bail_input!(
            "{}: no public repository yet (`fedostree test` publishes into it)",
            dir.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!(
        "fedostree: serving {} on http://{}/",
        dir.display(),
        listener.local_addr()?
    );
    let app = axum::Router::new()
        .fallback_service(tower_http::services::ServeDir::new(dir))
        .layer(axum::middleware::from_fn(access_log));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("serving HTTP")
}

/// `PEER "METHOD PATH" STATUS BYTES MS`, as common log formats put it.
async fn access_log(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let range = req
        .headers()
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let started = Instant::now();
    let response = next.run(req).await;
    let bytes = response
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    eprintln!(
        "{peer} \"{method} {uri}{range}\" {} {bytes} {:.1}ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    response
}
