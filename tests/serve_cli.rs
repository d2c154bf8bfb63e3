//! `fedostree serve` as clients meet it, through the real binary on loopback: what a well-behaved
//! client gets (HEAD, validators, ranges, content types, paths that stay inside), and what a client
//! that misbehaves cannot do (hold the server with connections that send nothing, a header sent a byte
//! at a time, or a response it never reads; load a 1 GB object into the server's memory).

use fedostree_util::prereq::{run_tests, Test};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

fn main() {
    run_tests(vec![
        Test::new("what_a_client_gets", &[], what_a_client_gets),
        Test::new(
            "clients_that_send_nothing_or_drip_a_header_are_dropped",
            &[],
            clients_that_send_nothing_or_drip_a_header_are_dropped,
        ),
        Test::new(
            "a_client_that_stops_reading_is_dropped",
            &[],
            a_client_that_stops_reading_is_dropped,
        ),
        Test::new(
            "a_1_gb_object_is_streamed_not_loaded",
            &[],
            a_1_gb_object_is_streamed_not_loaded,
        ),
    ]);
}

/// A `fedostree serve` of `public` (a state dir's public repository), killed and reaped on drop.
struct Server {
    /// Killed and reaped however the test ends, even before it printed its address.
    child: common::Server,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    public: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Serves a fresh state dir whose `public/` `fill` writes. The state dir sits below a directory
    /// named `objects`: what the server decides by path looks only below the served directory.
    fn start(args: &[&str], fill: impl FnOnce(&Path)) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("objects");
        let public = state.join("public");
        std::fs::create_dir_all(&public).unwrap();
        fill(&public);
        let mut child = common::Server(
            std::process::Command::new(env!("CARGO_BIN_EXE_fedostree"))
                .arg("--state-dir")
                .arg(&state)
                .args(["serve", "--addr", "127.0.0.1:0"])
                .args(args)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = std::io::BufReader::new(child.0.stderr.take().unwrap()).lines();
        // The first line names the address; the server is killed if it never comes (the guard above).
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let collected = log.clone();
        std::thread::spawn(move || {
            let _ = tx.send(lines.next().and_then(Result::ok));
            for l in lines.map_while(Result::ok) {
                collected.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
        let first = first.expect("fedostree serve printed no address within 30 s");
        let url = first
            .split_once(" on http://")
            .expect(&first)
            .1
            .trim()
            .trim_end_matches('/');
        Server {
            addr: url.parse().unwrap(),
            child,
            log,
            public,
            _tmp: tmp,
        }
    }

    /// A connection that fails the test rather than hang it.
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// One request sent as written (no client normalises its path), answered on a connection closed
    /// after it.
    fn request(&self, head: &str) -> Response {
        let mut s = self.connect();
        write!(s, "{head}\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        Response::parse(&raw)
    }

    /// The access log so far, once the server has logged `want`.
    fn log_with(&self, want: &str) -> String {
        for _ in 0..100 {
            let log = self.log.lock().unwrap().clone();
            if log.contains(want) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the access log never said {want:?}:\n{}", self.log.lock().unwrap());
    }

    /// The server's peak resident memory (VmHWM), in KiB.
    fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .map(|l| l.split_once(':').unwrap())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> &str {
        let found = self.headers.iter().find(|(k, _)| k == name);
        found
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }
}

fn what_a_client_gets() {
    let server = Server::start(&[], |public| {
        std::fs::write(public.join("summary"), b"0123456789abcdef").unwrap();
        std::fs::write(public.join("config"), b"[core]\nrepo_version=1\nmode=archive-z2\n").unwrap();
        std::fs::write(public.join("fedostree.gpg"), b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n").unwrap();
        std::fs::create_dir_all(public.join("objects/ab")).unwrap();
        std::fs::write(public.join("objects/ab/cdef.filez"), b"object").unwrap();
        std::fs::write(public.join("objects/ab/cdef.commitmeta"), b"signature").unwrap();
        std::fs::create_dir_all(public.join("status")).unwrap();
        std::fs::write(public.join("status/index.html"), b"<html></html>").unwrap();
    });
    let summary = server.request("GET /summary HTTP/1.1");
    assert_eq!(
        (summary.status, summary.body.as_slice()),
        (200, &b"0123456789abcdef"[..])
    );
    assert_eq!(summary.header("content-length"), "16");
    assert_eq!(summary.header("content-type"), "application/octet-stream");
    assert_eq!(summary.header("cache-control"), "no-cache");
    // HEAD: the same head, no body.
    let head = server.request("HEAD /summary HTTP/1.1");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), "16");
    assert_eq!(head.header("etag"), summary.header("etag"));

    // Validators: the client's copy is current → 304 without a body.
    let etag = summary.header("etag");
    let r = server.request(&format!("GET /summary HTTP/1.1\r\nIf-None-Match: {etag}"));
    assert_eq!((r.status, r.body.len(), r.header("etag")), (304, 0, etag));
    let since = summary.header("last-modified");
    let r = server.request(&format!("GET /summary HTTP/1.1\r\nIf-Modified-Since: {since}"));
    assert_eq!(r.status, 304);
    // A summary rewritten at once, at the same length (publish replaces it by rename), is new.
    let public = &server.public;
    std::fs::write(public.join("summary.new"), b"fedcba9876543210").unwrap();
    std::fs::rename(public.join("summary.new"), public.join("summary")).unwrap();
    let r = server.request(&format!("GET /summary HTTP/1.1\r\nIf-None-Match: {etag}"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"fedcba9876543210"[..]));
    assert_ne!(r.header("etag"), etag);

    // Ranges: one satisfiable range is 206, a range past the end 416 with the length.
    let r = server.request("GET /summary HTTP/1.1\r\nRange: bytes=2-5");
    assert_eq!((r.status, r.body.as_slice()), (206, &b"dcba"[..]));
    assert_eq!(r.header("content-range"), "bytes 2-5/16");
    let r = server.request("GET /summary HTTP/1.1\r\nRange: bytes=-3");
    assert_eq!((r.status, r.body.as_slice()), (206, &b"210"[..]));
    let r = server.request("GET /summary HTTP/1.1\r\nRange: bytes=16-");
    assert_eq!((r.status, r.header("content-range")), (416, "bytes */16"));

    // Content types.
    for (path, want) in [
        ("/config", "text/plain; charset=utf-8"),
        ("/fedostree.gpg", "application/pgp-keys"),
        ("/objects/ab/cdef.filez", "application/octet-stream"),
        ("/status/", "text/html; charset=utf-8"),
    ] {
        let r = server.request(&format!("GET {path} HTTP/1.1"));
        assert_eq!((r.status, r.header("content-type")), (200, want), "{path}");
    }
    let object = server.request("GET /objects/ab/cdef.filez HTTP/1.1");
    assert!(object.header("cache-control").contains("immutable"));
    // A commit's detached metadata (its signature) can change: revalidated like the summary.
    let commitmeta = server.request("GET /objects/ab/cdef.commitmeta HTTP/1.1");
    assert_eq!(commitmeta.header("cache-control"), "no-cache");

    // Paths stay inside the directory, however they are spelled.
    for path in [
        "/../etc/passwd",
        "/objects/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2fetc%2fpasswd",
    ] {
        let r = server.request(&format!("GET {path} HTTP/1.1"));
        assert_eq!(r.status, 400, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("root:"), "{path}");
    }
    assert_eq!(server.request("GET /status HTTP/1.1").header("location"), "/status/");
    // Not `//status/`, which a browser reads as another host.
    assert_eq!(server.request("GET //status HTTP/1.1").header("location"), "/status/");
    assert_eq!(server.request("GET /objects/ HTTP/1.1").status, 404);
    assert_eq!(server.request("GET /nothing HTTP/1.1").status, 404);
    let post = server.request("POST /summary HTTP/1.1\r\nContent-Length: 0");
    assert_eq!((post.status, post.header("allow")), (405, "GET, HEAD"));

    // The access log: one line per request, its range and status.
    let log = server.log_with("\"POST /summary\" 405");
    assert!(log.contains("\"GET /summary\" 200 16 "), "{log}");
    assert!(log.contains("\"HEAD /summary\" 200 16 "), "{log}");
    assert!(log.contains("\"GET /summary bytes=2-5\" 206 4 "), "{log}");
    assert!(log.contains("\"GET /summary\" 304 "), "{log}");
}

/// Two slots, both taken by clients that send nothing: a third client is answered only once the server
/// has dropped them, and a client that sends its header a line at a time is dropped before it ends.
fn clients_that_send_nothing_or_drip_a_header_are_dropped() {
    let server = Server::start(&["--max-connections", "2", "--client-timeout", "2s"], |public| {
        std::fs::write(public.join("config"), b"[core]\n").unwrap();
    });
    let mut idle: Vec<TcpStream> = (0..2).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = server.connect();
    write!(third, "GET /config HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    // Not answered while both slots are held (the idle clients have most of 2 s left).
    third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0; 1];
    let early = third.read(&mut byte);
    assert!(early.is_err(), "answered beyond the connection bound: {early:?}");
    // The server ends the idle connections (EOF, no response), then answers the third.
    for s in &mut idle {
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "an idle client got {rest:?}");
    }
    third.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut raw = Vec::new();
    third.read_to_end(&mut raw).unwrap();
    assert_eq!(Response::parse(&raw).status, 200);

    // A header that never ends: a line every 300 ms, for longer than the timeout allows. Once the
    // server has closed the connection, the next write but one fails.
    let mut drip = server.connect();
    write!(drip, "GET /config HTTP/1.1\r\n").unwrap();
    let dropped = (0..40).any(|i| {
        std::thread::sleep(Duration::from_millis(300));
        write!(drip, "X-Drip-{i}: {i}\r\n").is_err()
    });
    assert!(dropped, "the server kept a header that took 12 s (its timeout is 2 s)");
    // And it still serves.
    assert_eq!(server.request("GET /config HTTP/1.1").status, 200);
}

/// A response nobody reads is abandoned after the timeout, and its slot serves the next client.
fn a_client_that_stops_reading_is_dropped() {
    let server = Server::start(&["--max-connections", "1", "--client-timeout", "1s"], |public| {
        let big = std::fs::File::create(public.join("big")).unwrap();
        big.set_len(1 << 30).unwrap();
    });
    let mut reader = server.connect();
    write!(reader, "GET /big HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    // The socket buffers fill; the server waits, then gives up on this client. Its one slot serves
    // the next request only once it has (the request waits in the backlog until then).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.request("GET /big HTTP/1.1\r\nRange: bytes=0-0").status, 206);
    let mut got = 0u64;
    let mut buf = vec![0; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    assert!(got < 1 << 30, "the stalled client got the whole object");
}

/// A 1 GiB object (sparse: no disk) is sent whole while the server stays small.
fn a_1_gb_object_is_streamed_not_loaded() {
    let server = Server::start(&[], |public| {
        let big = std::fs::File::create(public.join("big")).unwrap();
        big.set_len(1 << 30).unwrap();
    });
    let mut s = server.connect();
    write!(s, "GET /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = vec![0; 1 << 20];
    let mut got = 0u64;
    loop {
        match s.read(&mut buf).unwrap() {
            0 => break,
            n => got += n as u64,
        }
    }
    let head = 1 << 10;
    assert!(got > 1 << 30 && got < (1 << 30) + head, "got {got} bytes");
    let peak = server.peak_memory_kib();
    assert!(peak < 64 * 1024, "the server peaked at {peak} KiB for a 1 GiB object");
    let tail = server.request("GET /big HTTP/1.1\r\nRange: bytes=1073741800-");
    assert_eq!((tail.status, tail.body.len()), (206, 24));
}
