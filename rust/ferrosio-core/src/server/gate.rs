//! The host gate: what only the host can decide about a request (a callable CORS policy, once
//! per origin; an `allow_request` hook, once per new session). A request asks through the
//! inbound queue and waits for the host's `Command::Authorize`; origin answers are cached.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::header::ORIGIN;
use hyper::{Method, Request};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::http::{handshake, EngineQuery, HttpError};
use super::FrontDoor;
use crate::bridge::{ControlInbound, Inbound, InboundQueue};
use crate::config::CorsPolicy;
use crate::engineio::session::Handshake;

/// The host's decision about one request.
#[derive(Clone, Copy, Debug)]
pub(super) struct Verdict {
    pub origin_ok: bool,
    pub request_ok: bool,
}

/// Questions to the host that a request waits on, and the host's cached CORS answers.
#[derive(Default)]
pub(super) struct HostGate {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Verdict>>>,
    origins: Mutex<HashMap<String, bool>>,
}

/// How long a request waits for the host to decide; silence is a refusal.
const HOST_DECISION_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct origins whose CORS answer is remembered.
const ORIGIN_CACHE_LIMIT: usize = 1024;

impl HostGate {
    /// The host's cached answer for `origin`; None if it was not asked yet.
    pub fn origin_allowed(&self, origin: &str) -> Option<bool> {
        self.origins.lock().get(origin).copied()
    }

    pub fn remember_origin(&self, origin: String, allowed: bool) {
        let mut origins = self.origins.lock();
        if origins.len() >= ORIGIN_CACHE_LIMIT {
            origins.clear(); // bounded memory under origin-spraying clients
        }
        origins.insert(origin, allowed);
    }

    /// Asks the host and waits (at most [`HOST_DECISION_TIMEOUT`]) for its answer.
    async fn ask(
        &self,
        inbound: &InboundQueue,
        origin: Option<String>,
        check_request: bool,
        handshake: Handshake,
    ) -> Verdict {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        inbound.push(Inbound::Control(ControlInbound::Authorize {
            id,
            origin,
            check_request,
            handshake,
        }));
        let refused = Verdict {
            origin_ok: false,
            request_ok: false,
        };
        let verdict = tokio::time::timeout(HOST_DECISION_TIMEOUT, rx)
            .await
            .ok()
            .and_then(Result::ok);
        self.pending.lock().remove(&id);
        verdict.unwrap_or(refused)
    }

    /// The host's answer to question `id`; one nobody waits for any more is dropped.
    pub fn answer(&self, id: u64, verdict: Verdict) {
        if let Some(tx) = self.pending.lock().remove(&id) {
            let _ = tx.send(verdict);
        }
    }
}

impl FrontDoor {
    /// Lets the host decide what only it can: a callable CORS policy (once per origin) and an
    /// `allow_request` hook (once per new session). None means go ahead.
    pub(super) async fn ask_host<B>(
        &self,
        req: &Request<B>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Option<HttpError> {
        let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
        let ask_origin = self.config.cors == CorsPolicy::Host
            && origin.is_some_and(|o| self.gate.origin_allowed(o).is_none());
        let query = EngineQuery::of(req);
        let opens_session =
            req.method() == Method::GET && query.sid.is_none() && query.transport.is_some();
        let ask_request = self.config.authorize_requests && opens_session;
        if !ask_origin && !ask_request {
            return None;
        }
        let asked_origin = if ask_origin {
            origin.map(str::to_owned)
        } else {
            None
        };
        let verdict = self
            .gate
            .ask(
                &self.inbound,
                asked_origin.clone(),
                ask_request,
                handshake(req, remote, local),
            )
            .await;
        if let Some(origin) = asked_origin {
            self.gate.remember_origin(origin, verdict.origin_ok);
        }
        (!verdict.request_ok || (ask_origin && !verdict.origin_ok)).then_some(HttpError::Forbidden)
    }
}
