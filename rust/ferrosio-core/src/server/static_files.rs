//! Static files served from the same listener (python-socketio's `static_files`), so a page
//! and its Socket.IO endpoint share one port: which file a path names, and the answer.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::http::{status_response, HttpResponse};
use crate::config::StaticRoute;

/// The answer to a request outside the endpoints: the file a route maps it to, else 404.
pub(super) async fn respond<B>(routes: &[StaticRoute], req: &Request<B>) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return status_response(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some((path, content_type)) = resolve(routes, req.uri().path()) else {
        return status_response(StatusCode::NOT_FOUND, "Not Found");
    };
    match tokio::fs::read(&path).await {
        Ok(data) => {
            let mut res = Response::new(Full::new(Bytes::from(data)));
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                res.headers_mut().insert(CONTENT_TYPE, v);
            }
            res
        }
        Err(_) => status_response(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Whether a route covers `raw_path` (such a path is never forwarded to the host's application).
pub(super) fn covers(routes: &[StaticRoute], raw_path: &str) -> bool {
    !routes.is_empty() && resolve(routes, raw_path).is_some()
}

/// The file for a request path, and its content type, if a route covers it.
fn resolve(routes: &[StaticRoute], raw_path: &str) -> Option<(PathBuf, String)> {
    // `/a%20b.txt` names the file `a b.txt`; a decoded `..` is refused below like any other.
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .ok()?;
    let url_path: &str = &decoded;
    // Longest URL prefix first, so `/static` wins over `/`.
    let mut best: Option<(&StaticRoute, &str)> = None;
    for route in routes {
        let base = route.url.trim_end_matches('/');
        let rest = if url_path == route.url || url_path == base {
            ""
        } else if let Some(rest) = url_path.strip_prefix(base).filter(|r| r.starts_with('/')) {
            rest
        } else {
            continue;
        };
        if !rest.trim_matches('/').is_empty() && !route.path.is_dir() {
            continue; // a file route matches its URL exactly
        }
        if best.is_none_or(|(b, _)| b.url.len() < route.url.len()) {
            best = Some((route, rest));
        }
    }
    let (route, rest) = best?;
    let mut file = route.path.clone();
    let rest = rest.trim_start_matches('/');
    if !rest.is_empty() {
        let rel = Path::new(rest);
        // Refuse `..` and absolute parts: nothing outside the route's folder.
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        file.push(rel);
    }
    if file.is_dir() {
        file.push("index.html");
    }
    let content_type = route
        .content_type
        .clone()
        .unwrap_or_else(|| guess_type(&file).to_owned());
    Some((file, content_type))
}

fn guess_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(dir: &Path) -> Vec<StaticRoute> {
        vec![
            StaticRoute {
                url: "/".into(),
                path: dir.join("index.html"),
                content_type: None,
            },
            StaticRoute {
                url: "/static".into(),
                path: dir.to_path_buf(),
                content_type: None,
            },
        ]
    }

    #[test]
    fn maps_files_and_folders_and_refuses_traversal() {
        let dir = std::env::temp_dir().join(format!("ferrosio-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "x").unwrap();
        std::fs::write(dir.join("sub/app.js"), "x").unwrap();
        let r = routes(&dir);
        assert_eq!(resolve(&r, "/").unwrap().0, dir.join("index.html"));
        let (f, t) = resolve(&r, "/static/sub/app.js").unwrap();
        assert_eq!(
            (f, t.as_str()),
            (dir.join("sub/app.js"), "text/javascript; charset=utf-8")
        );
        assert!(resolve(&r, "/static/../etc/passwd").is_none());
        assert!(resolve(&r, "/staticx/app.js").is_none());
        assert!(resolve(&r, "/other").is_none());
        assert!(resolve(&r, "/static/%2e%2e/etc/passwd").is_none());
        std::fs::write(dir.join("a b.txt"), "x").unwrap();
        assert_eq!(
            resolve(&r, "/static/a%20b.txt").unwrap().0,
            dir.join("a b.txt")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
