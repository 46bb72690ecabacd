//! One port beside the host's own HTTP application (an ASGI app): a request outside the
//! Socket.IO/Engine.IO endpoints and the static files goes to the host as an
//! [`HttpInbound::Request`], body included (read whole, up to `max_payload`: 413 beyond), and
//! its answer comes back as [`HttpCommand`]s: the head, then body chunks streamed to the client
//! as they arrive. The body queue of a response is bounded by the host's credit
//! ([`HTTP_BODY_CREDIT`] chunks not yet written); a host that overruns it has its response
//! aborted. A client that goes away is reported as [`HttpInbound::Closed`].
//!
//! WebSocket requests for the application are refused (404): only ferrosio's own WebSocket
//! endpoints are served.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::{Body, Frame as BodyFrame, Incoming};
use hyper::header::{HeaderName, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode, Version};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::http::{
    handshake, head_too_large, head_too_large_response, status_response, HttpResponse,
};
use super::{static_files, FrontDoor};
use crate::bridge::{HttpCommand, HttpInbound, Inbound, HTTP_BODY_CREDIT};

/// A response of the front door: its own (whole) or the host application's (streamed).
pub(super) type AnyResponse = Response<Either<Full<Bytes>, ForwardedBody>>;

/// How long a forwarded request's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a forwarded response ended before its last chunk.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the application aborted the response or overran its body credit")]
    Aborted,
}

/// Forwarded requests waiting for (the rest of) their answer, by id.
#[derive(Default)]
pub(super) struct Forwarder {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
}

struct Pending {
    /// Taken by the head; a body chunk before it is a host error.
    head: Option<oneshot::Sender<Head>>,
    /// Capacity `HTTP_BODY_CREDIT + 1`: the credit plus the last chunk.
    body: mpsc::Sender<Chunk>,
}

struct Head {
    status: u16,
    headers: Vec<(Bytes, Bytes)>,
}

struct Chunk {
    data: Bytes,
    last: bool,
}

impl Forwarder {
    /// Applies one host answer. Answers for a request that is gone are dropped.
    pub(super) fn execute(&self, cmd: HttpCommand) {
        let mut pending = self.pending.lock();
        match cmd {
            HttpCommand::Start {
                id,
                status,
                headers,
            } => {
                if let Some(head) = pending.get_mut(&id).and_then(|p| p.head.take()) {
                    let _ = head.send(Head { status, headers });
                }
            }
            HttpCommand::Body { id, data, more } => {
                let Some(p) = pending.get(&id) else { return };
                let sent = p.head.is_none() && p.body.try_send(Chunk { data, last: !more }).is_ok();
                // Ended, a body before the head, or credit overrun: dropping the sender ends
                // the stream (cleanly only after a last chunk).
                if !sent || !more {
                    pending.remove(&id);
                }
            }
            HttpCommand::Abort { id } => {
                pending.remove(&id);
            }
        }
    }

    fn forget(&self, id: u64) {
        self.pending.lock().remove(&id);
    }
}

/// Reports a request the client abandoned before its response ended.
struct ClosedGuard {
    front: Arc<FrontDoor>,
    id: u64,
    armed: bool,
}

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        if self.armed {
            self.front.forwarded.forget(self.id);
            self.front
                .inbound
                .push(Inbound::Http(HttpInbound::Closed { id: self.id }));
        }
    }
}

/// The body of a forwarded response, fed by the host's chunks.
pub(super) struct ForwardedBody {
    chunks: mpsc::Receiver<Chunk>,
    guard: ClosedGuard,
}

impl Body for ForwardedBody {
    type Data = Bytes;
    type Error = ForwardError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, ForwardError>>> {
        loop {
            if !self.guard.armed {
                return Poll::Ready(None);
            }
            return match self.chunks.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(Some(Err(ForwardError::Aborted))),
                Poll::Ready(Some(chunk)) => {
                    if chunk.last {
                        self.guard.armed = false;
                    } else {
                        let id = self.guard.id;
                        self.guard
                            .front
                            .inbound
                            .push(Inbound::Http(HttpInbound::Written { id }));
                    }
                    if chunk.data.is_empty() {
                        continue;
                    }
                    Poll::Ready(Some(Ok(BodyFrame::data(chunk.data))))
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.guard.armed
    }
}

impl FrontDoor {
    /// hyper's service: the host application's requests go to the host, the rest to `handle`.
    pub(super) async fn serve_request(
        self: Arc<Self>,
        req: Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Result<AnyResponse, Infallible> {
        if head_too_large(&req) {
            return Ok(head_too_large_response().map(Either::Left));
        }
        if self.config.forward_http {
            let path = req.uri().path();
            if self.endpoint(path).is_none()
                && !static_files::covers(&self.config.static_files, path)
            {
                return Ok(self.forward(req, remote, local).await);
            }
        }
        let res = self.handle(req, remote, local).await?;
        Ok(res.map(Either::Left))
    }

    async fn forward(
        self: Arc<Self>,
        req: Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> AnyResponse {
        let whole = |res: HttpResponse| res.map(Either::Left);
        if req.headers().contains_key(UPGRADE) {
            return whole(status_response(
                StatusCode::NOT_FOUND,
                "Not Found: WebSocket routes of the ASGI application are not served by ferrosio",
            ));
        }
        let head = handshake(&req, remote, local);
        let http_version = if req.version() == Version::HTTP_10 {
            "1.0"
        } else {
            "1.1"
        };
        let body = Limited::new(req.into_body(), self.config.max_payload);
        let body = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return whole(status_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Payload Too Large",
                ))
            }
            _ => return whole(status_response(StatusCode::BAD_REQUEST, "Bad Request")),
        };
        let id = self.forwarded.next_id.fetch_add(1, Ordering::Relaxed);
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(HTTP_BODY_CREDIT + 1);
        self.forwarded.pending.lock().insert(
            id,
            Pending {
                head: Some(head_tx),
                body: body_tx,
            },
        );
        // From here on, a client that goes away (this future dropped) is reported.
        let guard = ClosedGuard {
            front: self.clone(),
            id,
            armed: true,
        };
        self.inbound.push(Inbound::Http(HttpInbound::Request {
            id,
            head,
            http_version,
            body,
        }));
        let Ok(head) = head_rx.await else {
            return whole(status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ));
        };
        let mut res = Response::new(Either::Right(ForwardedBody {
            chunks: body_rx,
            guard,
        }));
        *res.status_mut() =
            StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = res.headers_mut();
        for (name, value) in head.headers {
            // A header hyper cannot send is dropped rather than failing the response.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&name),
                HeaderValue::from_bytes(&value),
            ) {
                headers.append(name, value);
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(fwd: &Forwarder, id: u64) -> (oneshot::Receiver<Head>, mpsc::Receiver<Chunk>) {
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(HTTP_BODY_CREDIT + 1);
        fwd.pending.lock().insert(
            id,
            Pending {
                head: Some(head_tx),
                body: body_tx,
            },
        );
        (head_rx, body_rx)
    }

    fn body(id: u64, more: bool) -> HttpCommand {
        HttpCommand::Body {
            id,
            data: Bytes::from_static(b"x"),
            more,
        }
    }

    #[test]
    fn a_host_within_its_credit_streams_to_the_end() {
        let fwd = Forwarder::default();
        let (mut head, mut chunks) = pending(&fwd, 1);
        fwd.execute(HttpCommand::Start {
            id: 1,
            status: 200,
            headers: vec![],
        });
        assert_eq!(head.try_recv().unwrap().status, 200);
        for _ in 0..HTTP_BODY_CREDIT {
            fwd.execute(body(1, true));
        }
        fwd.execute(body(1, false));
        assert!(fwd.pending.lock().is_empty(), "ended by the last chunk");
        let mut got = 0;
        while let Ok(chunk) = chunks.try_recv() {
            got += 1;
            assert_eq!(chunk.last, got == HTTP_BODY_CREDIT + 1);
        }
        assert_eq!(got, HTTP_BODY_CREDIT + 1);
    }

    #[test]
    fn overrunning_the_credit_aborts_the_response() {
        let fwd = Forwarder::default();
        let (_head, mut chunks) = pending(&fwd, 7);
        fwd.execute(HttpCommand::Start {
            id: 7,
            status: 200,
            headers: vec![],
        });
        // The queue holds the credit plus a last chunk; one more unwritten chunk is an overrun.
        for _ in 0..=HTTP_BODY_CREDIT {
            fwd.execute(body(7, true));
        }
        assert!(fwd.pending.lock().contains_key(&7));
        fwd.execute(body(7, true));
        assert!(!fwd.pending.lock().contains_key(&7), "aborted");
        let mut got = 0;
        while chunks.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, HTTP_BODY_CREDIT + 1, "the queue never held more");
        assert!(
            chunks.try_recv().is_err(),
            "closed without a last chunk: an error"
        );
    }

    #[test]
    fn a_body_before_the_head_or_an_abort_drops_the_request() {
        let fwd = Forwarder::default();
        let (mut head, _chunks) = pending(&fwd, 2);
        fwd.execute(body(2, true));
        assert!(fwd.pending.lock().is_empty());
        assert!(
            head.try_recv().is_err(),
            "no head: the front door answers 500"
        );
        let (_head, _chunks) = pending(&fwd, 3);
        fwd.execute(HttpCommand::Abort { id: 3 });
        assert!(fwd.pending.lock().is_empty());
        // Answers for a request that is gone are ignored.
        fwd.execute(body(3, false));
    }
}
