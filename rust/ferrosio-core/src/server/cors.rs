//! CORS: whether a request's origin may use the endpoint, the `Access-Control-*` headers that
//! say so, and the answer to a preflight `OPTIONS`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_REQUEST_HEADERS, HOST, ORIGIN, VARY,
};
use hyper::{Response, StatusCode};

use super::gate::HostGate;
use super::http::{HttpError, HttpResponse};
use crate::config::{CorsPolicy, ServerConfig};

/// The `Access-Control-*` headers for a request with these headers, or Err if its origin is
/// refused. No `Origin` (not a browser's cross-origin request): nothing to add or check. Under
/// [`CorsPolicy::Host`], the origin's answer is already in `gate` (see `FrontDoor::ask_host`).
pub(super) fn cors_headers(
    config: &ServerConfig,
    gate: &HostGate,
    headers: &HeaderMap,
) -> Result<Vec<(HeaderName, HeaderValue)>, HttpError> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(Vec::new());
    };
    let origin_str = origin.to_str().unwrap_or("");
    let allowed = match &config.cors {
        CorsPolicy::Disabled => return Ok(Vec::new()),
        CorsPolicy::Any => true,
        CorsPolicy::List(list) => list.iter().any(|o| o == origin_str),
        CorsPolicy::Host => gate.origin_allowed(origin_str) == Some(true),
        CorsPolicy::SameOrigin => {
            let header = |name| {
                headers
                    .get(name)
                    .and_then(|h: &HeaderValue| h.to_str().ok())
            };
            let host = header(HOST).unwrap_or("");
            // Behind a TLS-terminating proxy the page's scheme is the forwarded one.
            let own_scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let scheme = header(HeaderName::from_static("x-forwarded-proto")).unwrap_or(own_scheme);
            origin_str
                .split_once("://")
                .is_some_and(|(s, rest)| s.eq_ignore_ascii_case(scheme) && rest == host)
        }
    };
    if !allowed {
        return Err(HttpError::Forbidden);
    }
    // The answer depends on Origin: caches must not reuse it for another origin.
    let mut cors = vec![
        (ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
        (VARY, HeaderValue::from_static("Origin")),
    ];
    if config.cors_credentials {
        cors.push((
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        ));
    }
    Ok(cors)
}

/// The answer to a preflight `OPTIONS` (its origin already checked, its CORS headers added by
/// the caller).
pub(super) fn preflight(headers: &HeaderMap) -> HttpResponse {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(requested) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    h.insert(
        VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Headers"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cors: CorsPolicy, credentials: bool) -> ServerConfig {
        ServerConfig {
            cors,
            cors_credentials: credentials,
            ..ServerConfig::default()
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    /// The decision alone: Some(allow-origin value) if allowed, None if there is nothing to
    /// add, Err if refused.
    fn decide(
        cfg: &ServerConfig,
        gate: &HostGate,
        pairs: &[(&'static str, &'static str)],
    ) -> Result<Option<HeaderValue>, HttpError> {
        let cors = cors_headers(cfg, gate, &headers(pairs))?;
        Ok(cors
            .into_iter()
            .find(|(k, _)| *k == ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|(_, v)| v))
    }

    #[test]
    fn same_origin_compares_scheme_and_host() {
        let (cfg, gate) = (config(CorsPolicy::SameOrigin, true), HostGate::default());
        let page = |origin| [("origin", origin), ("host", "example.com:8080")];
        assert_eq!(
            decide(&cfg, &gate, &page("http://example.com:8080")),
            Ok(Some(HeaderValue::from_static("http://example.com:8080")))
        );
        assert_eq!(
            decide(&cfg, &gate, &page("HTTP://example.com:8080")),
            Ok(Some(HeaderValue::from_static("HTTP://example.com:8080"))),
            "the scheme is case-insensitive"
        );
        for other in [
            "https://example.com:8080",
            "http://example.com",
            "http://evil.com:8080",
            "example.com:8080",
            "null",
        ] {
            assert_eq!(
                decide(&cfg, &gate, &page(other)),
                Err(HttpError::Forbidden),
                "{other}"
            );
        }
    }

    #[test]
    fn same_origin_on_a_tls_listener_is_https() {
        let mut cfg = config(CorsPolicy::SameOrigin, true);
        cfg.tls = Some(crate::config::ServerTls {
            cert_file: "cert.pem".into(),
            key_file: "key.pem".into(),
            client_ca_file: None,
        });
        let gate = HostGate::default();
        let page = |origin| [("origin", origin), ("host", "example.com")];
        assert!(decide(&cfg, &gate, &page("https://example.com")).is_ok());
        assert_eq!(
            decide(&cfg, &gate, &page("http://example.com")),
            Err(HttpError::Forbidden)
        );
    }

    #[test]
    fn same_origin_behind_a_tls_proxy_uses_the_forwarded_scheme() {
        let (cfg, gate) = (config(CorsPolicy::SameOrigin, true), HostGate::default());
        let proxied = |origin| {
            [
                ("origin", origin),
                ("host", "example.com"),
                ("x-forwarded-proto", "https"),
            ]
        };
        assert!(decide(&cfg, &gate, &proxied("https://example.com")).is_ok());
        assert_eq!(
            decide(&cfg, &gate, &proxied("http://example.com")),
            Err(HttpError::Forbidden)
        );
    }

    #[test]
    fn no_origin_header_means_nothing_to_check() {
        let gate = HostGate::default();
        for policy in [
            CorsPolicy::SameOrigin,
            CorsPolicy::List(vec![]),
            CorsPolicy::Host,
        ] {
            let cfg = config(policy, true);
            assert_eq!(
                cors_headers(&cfg, &gate, &headers(&[("host", "a")])),
                Ok(vec![])
            );
        }
    }

    #[test]
    fn a_list_allows_exactly_its_origins() {
        let list = CorsPolicy::List(vec![
            "https://a.example".into(),
            "http://b.example:3000".into(),
        ]);
        let (cfg, gate) = (config(list, true), HostGate::default());
        assert!(decide(&cfg, &gate, &[("origin", "https://a.example")]).is_ok());
        assert!(decide(&cfg, &gate, &[("origin", "http://b.example:3000")]).is_ok());
        assert_eq!(
            decide(&cfg, &gate, &[("origin", "https://a.example:443")]),
            Err(HttpError::Forbidden)
        );
        assert_eq!(
            decide(&cfg, &gate, &[("origin", "http://b.example")]),
            Err(HttpError::Forbidden)
        );
    }

    #[test]
    fn any_reflects_the_origin_with_vary_and_credentials() {
        let gate = HostGate::default();
        let h = headers(&[("origin", "https://x.example")]);
        assert_eq!(
            cors_headers(&config(CorsPolicy::Any, true), &gate, &h),
            Ok(vec![
                (
                    ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("https://x.example")
                ),
                (VARY, HeaderValue::from_static("Origin")),
                (
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true")
                ),
            ])
        );
        let without = cors_headers(&config(CorsPolicy::Any, false), &gate, &h).unwrap();
        assert!(without
            .iter()
            .all(|(k, _)| *k != ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn disabled_adds_nothing_and_refuses_nothing() {
        let cfg = config(CorsPolicy::Disabled, true);
        let h = headers(&[("origin", "https://evil.example"), ("host", "a")]);
        assert_eq!(cors_headers(&cfg, &HostGate::default(), &h), Ok(vec![]));
    }

    #[test]
    fn host_policy_follows_the_cached_answer() {
        let (cfg, gate) = (config(CorsPolicy::Host, true), HostGate::default());
        let origin = [("origin", "https://h.example")];
        assert_eq!(
            decide(&cfg, &gate, &origin),
            Err(HttpError::Forbidden),
            "not asked yet: refused"
        );
        gate.remember_origin("https://h.example".into(), true);
        assert!(decide(&cfg, &gate, &origin).is_ok());
        gate.remember_origin("https://h.example".into(), false);
        assert_eq!(decide(&cfg, &gate, &origin), Err(HttpError::Forbidden));
    }

    #[test]
    fn preflight_allows_the_methods_and_the_requested_headers() {
        let res = preflight(&headers(&[("access-control-request-headers", "x-token")]));
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let h = res.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST, OPTIONS");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "x-token");
        assert_eq!(h[VARY], "Origin, Access-Control-Request-Headers");
        let bare = preflight(&HeaderMap::new());
        assert!(!bare.headers().contains_key(ACCESS_CONTROL_ALLOW_HEADERS));
    }
}
