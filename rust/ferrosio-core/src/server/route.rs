//! One HTTP request through the front door: its path picks an endpoint (else static files);
//! the host gate and CORS may refuse it; its method and query pick what answers it (preflight,
//! a new polling session, polling on a session, or a WebSocket).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::{Method, Request};

use super::cors::{cors_headers, preflight};
use super::http::{EngineQuery, HttpError, HttpResponse};
use super::sessions::Endpoint;
use super::static_files;
use super::{FrontDoor, RequestBody};
use crate::engineio::v3::Protocol;

impl FrontDoor {
    /// hyper's service: every request of every connection comes here.
    pub(super) async fn handle<B: RequestBody>(
        self: Arc<Self>,
        req: Request<B>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Result<HttpResponse, Infallible> {
        let Some(endpoint) = self.endpoint(req.uri().path()) else {
            return Ok(static_files::respond(&self.config.static_files, &req).await);
        };
        if let Some(refusal) = self.ask_host(&req, remote, local).await {
            return Ok(refusal.response());
        }
        let cors = match cors_headers(&self.config, &self.gate, req.headers()) {
            Ok(h) => h,
            Err(e) => return Ok(e.response()),
        };
        let mut res = self.route(req, remote, local, endpoint).await;
        // A compressed polling response varies on Accept-Encoding; CORS may add `Vary: Origin`,
        // which `extend` would put in its place: keep both.
        let vary = res.headers_mut().remove(hyper::header::VARY);
        res.headers_mut().extend(cors);
        if let Some(vary) = vary {
            res.headers_mut().append(hyper::header::VARY, vary);
        }
        Ok(res)
    }

    /// An endpoint request the host and CORS let through.
    async fn route<B: RequestBody>(
        self: &Arc<Self>,
        req: Request<B>,
        remote: SocketAddr,
        local: SocketAddr,
        endpoint: Endpoint,
    ) -> HttpResponse {
        if req.method() == Method::OPTIONS {
            return preflight(req.headers());
        }
        let query = EngineQuery::of(&req);
        let protocol = match query.eio {
            Some("4") => Protocol::V4,
            // Engine.IO v3 clients (socket.io-client 2.x), when the host allows them.
            Some("3") if self.config.allow_eio3 => Protocol::V3 { base64: query.b64 },
            _ => return HttpError::UnsupportedProtocolVersion.response(),
        };
        let sid = query.sid.map(str::to_owned);
        match query.transport {
            Some("websocket") if self.config.allow_websocket => {
                self.websocket(req, sid, remote, local, endpoint, protocol)
            }
            Some("polling") if self.config.allow_polling => match sid {
                None if req.method() == Method::GET => {
                    self.open_polling(&req, remote, local, endpoint, protocol)
                }
                None => HttpError::BadHandshakeMethod.response(),
                Some(sid) => self.poll(req, &sid, endpoint, protocol).await,
            },
            _ => HttpError::UnknownTransport.response(),
        }
    }
}
