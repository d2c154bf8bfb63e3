//! One GET or HEAD answered from a directory, as nginx's static module answers it: a path that would
//! leave the directory refused, `index.html` for a directory, one byte range (206, or 416 with the
//! length), `ETag`/`Last-Modified` validators (304), and content types for what a repository and the
//! status page hold.
//!
//! A small file is read whole and sent with its head in one write; a larger one is streamed a chunk at
//! a time, so a 1 GB object costs a chunk of memory, not a gigabyte.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(super) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// What a file is read in. A file up to this size (most of a repository's objects) is read whole and
/// answered in one write; a larger one is sent a chunk at a time. Below glibc's mmap threshold, so a
/// chunk reuses freed heap memory instead of faulting in fresh zeroed pages (1 MiB chunks spent 15% of
/// the server's time there).
const CHUNK: usize = 64 * 1024;

pub(super) fn respond<B>(dir: &Path, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(relative) = local_path(req.uri().path()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    // Opened first, then described by the handle: publish replaces `summary` by rename, and a stat
    // before the open could describe the old file while the new one is sent.
    let (file, meta) = match open(&dir.join(&relative)) {
        Ok(opened) => opened,
        Err(code) => return status(code),
    };
    if meta.is_dir() {
        if !req.uri().path().ends_with('/') {
            let mut r = status(StatusCode::MOVED_PERMANENTLY);
            // Built from the checked path: a raw `//host` would redirect to another host.
            let to = format!("/{}/", relative.display());
            let to = percent_encoding::utf8_percent_encode(&to, URL_PATH).to_string();
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_str(&to).expect("percent-encoded"));
            return r;
        }
        return match open(&dir.join(&relative).join("index.html")) {
            Ok((file, meta)) if meta.is_file() => file_response(req, &relative.join("index.html"), file, &meta),
            _ => status(StatusCode::NOT_FOUND),
        };
    }
    if !meta.is_file() {
        return status(StatusCode::NOT_FOUND);
    }
    file_response(req, &relative, file, &meta)
}

/// What a redirect's path keeps as it is: everything but controls, space and what HTTP gives meaning.
const URL_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// A file or directory and what its handle says of it. Non-blocking, so a FIFO someone left in the
/// directory cannot hang the server (it has no effect on regular files).
fn open(path: &Path) -> Result<(File, std::fs::Metadata), StatusCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = opened.map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::NOT_FOUND,
    })?;
    let meta = file.metadata().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok((file, meta))
}

/// The request's path below the served directory, percent-decoded; `None` for one that would leave it
/// (a `..` component) or that no file can have (a NUL byte).
fn local_path(uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(uri_path).collect::<Vec<u8>>();
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let mut path = PathBuf::new();
    for component in decoded.split('/') {
        match component {
            "" | "." => {}
            ".." => return None,
            c if c.contains('\0') || c.contains('\\') => return None,
            c => path.push(c),
        }
    }
    Some(path)
}

fn file_response<B>(req: &Request<B>, relative: &Path, file: File, meta: &std::fs::Metadata) -> Response<Body> {
    let len = meta.len();
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let etag = entity_tag(meta);
    let mut head = HeaderMap::new();
    head.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(relative)));
    head.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex digits and quotes"),
    );
    let last_modified = httpdate::fmt_http_date(modified);
    head.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&last_modified).expect("an HTTP date"),
    );
    head.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    head.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control(relative)));
    if not_modified(req.headers(), &etag, modified) {
        let mut r = status(StatusCode::NOT_MODIFIED);
        r.headers_mut().extend(head);
        r.headers_mut().remove(header::CONTENT_LENGTH);
        return r;
    }
    let (code, start, count) = match requested_range(req.headers(), &etag, &last_modified, len) {
        Range::Whole => (StatusCode::OK, 0, len),
        Range::Part { start, end } => {
            let v = format!("bytes {start}-{end}/{len}");
            head.insert(header::CONTENT_RANGE, HeaderValue::from_str(&v).expect("digits"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Range::Unsatisfiable => {
            let mut r = status(StatusCode::RANGE_NOT_SATISFIABLE);
            let v = format!("bytes */{len}");
            r.headers_mut()
                .insert(header::CONTENT_RANGE, HeaderValue::from_str(&v).expect("digits"));
            return r;
        }
    };
    head.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    let body = if req.method() == Method::HEAD {
        empty()
    } else {
        let read = (&file)
            .seek(std::io::SeekFrom::Start(start))
            .and_then(|_| match count <= CHUNK as u64 {
                true => read_next(&file, count as usize)
                    .map(|bytes| Full::new(bytes).map_err(|never| match never {}).boxed()),
                false => Ok(streamed(file, count)),
            });
        match read {
            Ok(body) => body,
            Err(_) => return status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = code;
    *r.headers_mut() = head;
    r
}

/// nginx's form (`"mtime-length"`), with the modification time's nanoseconds and the inode: a summary
/// rewritten within the same second, at the same length, still gets a new tag.
fn entity_tag(meta: &std::fs::Metadata) -> String {
    format!(
        "\"{:x}.{:x}-{:x}-{:x}\"",
        meta.mtime(),
        meta.mtime_nsec(),
        meta.len(),
        meta.ino()
    )
}

/// RFC 9110 §13.2.2: `If-None-Match` decides when present (weak comparison); else `If-Modified-Since`,
/// at the one-second precision of HTTP dates.
fn not_modified(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(tags) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return tags.split(',').any(|t| t.trim() == "*" || bare(t) == bare(etag));
    }
    let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    seconds(modified) <= seconds(since)
}

#[derive(Debug, PartialEq)]
enum Range {
    Whole,
    /// Inclusive, as `Content-Range` says it.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// One `bytes=` range of `len` bytes. A header we do not parse, several ranges, or an `If-Range` that
/// no longer matches: the whole file, which RFC 9110 §14.2 allows a server to send instead.
fn requested_range(headers: &HeaderMap, etag: &str, last_modified: &str, len: u64) -> Range {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Range::Whole;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if if_range != etag && if_range != last_modified {
            return Range::Whole;
        }
    }
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Range::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let (start, end) = match (first.is_empty(), last.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => return Range::Unsatisfiable,
            // RFC 9110 §14.1.1: a suffix of an empty file is satisfiable by the whole (empty) file.
            Some(_) if len == 0 => return Range::Whole,
            Some(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            None => return Range::Whole,
        },
        (false, true) => match parse(first) {
            Some(s) => (s, len.saturating_sub(1)),
            None => return Range::Whole,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(s), Some(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
            _ => return Range::Whole,
        },
        (true, true) => return Range::Whole,
    };
    if len == 0 || start >= len {
        return Range::Unsatisfiable;
    }
    Range::Part { start, end }
}

/// The next `count` bytes of `file`, into a buffer that is not zeroed first (`read_to_end` fills
/// spare capacity): zeroing and faulting in fresh 1 MiB chunks took a fifth of the server's time (perf).
fn read_next(file: &File, count: usize) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(count);
    file.take(count as u64).read_to_end(&mut buf)?;
    if buf.len() < count {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file shrank while it was sent",
        ));
    }
    Ok(Bytes::from(buf))
}

/// `count` bytes of `file` from where it is, a chunk at a time: the next chunk is read only when hyper
/// has written the previous one. Reads run on the runtime's threads, as nginx's run in its event loop:
/// a served repository is in the page cache in practice, and a hop to the blocking pool per chunk
/// halved the throughput (ci/bench serve).
fn streamed(file: File, count: u64) -> Body {
    let mut left = count;
    let chunks = std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
        match read_next(&file, n) {
            Ok(bytes) => {
                left -= n as u64;
                Some(Ok(hyper::body::Frame::data(bytes)))
            }
            // After an error the stream ends: hyper drops the connection mid-body, as it must.
            Err(e) => {
                left = 0;
                Some(Err(e))
            }
        }
    });
    StreamBody::new(futures_util::stream::iter(chunks)).boxed()
}

pub(super) fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    r
}

/// By name, for what `public/` and the status page hold; everything else (objects, deltas, summary)
/// is bytes.
fn content_type(path: &Path) -> &'static str {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name == "config" {
        return "text/plain; charset=utf-8";
    }
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "txt" | "log" | "jsonl" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "gpg" | "asc" => "application/pgp-keys",
        _ => "application/octet-stream",
    }
}

/// Objects and static deltas are named by what they hold and never change: caches may keep them.
/// The rest changes in place and is revalidated with its ETag: summary, refs, config, pages, delta
/// indexes (rewritten as deltas come and go) and detached commit metadata (a commit signed again).
/// `relative` is the path below the served directory.
fn cache_control(relative: &Path) -> &'static str {
    let top = relative.components().next().map(|c| c.as_os_str());
    let commitmeta = relative.extension().is_some_and(|e| e == "commitmeta");
    match top {
        Some(t) if (t == "objects" && !commitmeta) || t == "deltas" => "public, max-age=31536000, immutable",
        _ => "no-cache",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        let r = |spec: &str, len| requested_range(&headers(&[("range", spec)]), "\"t\"", "d", len);
        assert_eq!(r("bytes=0-9", 100), Range::Part { start: 0, end: 9 });
        assert_eq!(r("bytes=90-", 100), Range::Part { start: 90, end: 99 });
        assert_eq!(r("bytes=-10", 100), Range::Part { start: 90, end: 99 });
        assert_eq!(r("bytes=-1000", 100), Range::Part { start: 0, end: 99 });
        assert_eq!(r("bytes=50-1000", 100), Range::Part { start: 50, end: 99 });
        assert_eq!(r("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(r("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Range::Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Range::Whole);
        assert_eq!(r("bytes=0-1,5-6", 100), Range::Whole);
        assert_eq!(r("bytes=9-0", 100), Range::Whole);
        assert_eq!(r("lines=0-9", 100), Range::Whole);
        let stale = headers(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]);
        assert_eq!(requested_range(&stale, "\"t\"", "d", 100), Range::Whole);
        let fresh = headers(&[("range", "bytes=0-9"), ("if-range", "\"t\"")]);
        assert_eq!(
            requested_range(&fresh, "\"t\"", "d", 100),
            Range::Part { start: 0, end: 9 }
        );
    }

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        assert_eq!(
            local_path("/objects/ab/cd.filez"),
            Some(PathBuf::from("objects/ab/cd.filez"))
        );
        assert_eq!(local_path("/a%20b/./c"), Some(PathBuf::from("a b/c")));
        assert_eq!(local_path("/"), Some(PathBuf::new()));
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/etc",
            "/a%00b",
            "/a%5c..%5cb",
            "/%ff",
        ] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn validators_decide_as_rfc_9110_orders_them() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let date = httpdate::fmt_http_date(t);
        assert!(not_modified(&headers(&[("if-none-match", "\"a\", \"t\"")]), "\"t\"", t));
        assert!(not_modified(&headers(&[("if-none-match", "W/\"t\"")]), "\"t\"", t));
        assert!(!not_modified(&headers(&[("if-none-match", "\"a\"")]), "\"t\"", t));
        // If-None-Match decides even when If-Modified-Since alone would say 304.
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"a\""), ("if-modified-since", &date)]),
            "\"t\"",
            t
        ));
        assert!(not_modified(&headers(&[("if-modified-since", &date)]), "\"t\"", t));
        let earlier = httpdate::fmt_http_date(t - Duration::from_secs(1));
        assert!(!not_modified(&headers(&[("if-modified-since", &earlier)]), "\"t\"", t));
        assert!(!not_modified(
            &headers(&[("if-modified-since", "yesterday")]),
            "\"t\"",
            t
        ));
    }
}
