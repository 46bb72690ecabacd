//! The server's side of an in-process client: a WebSocket connection with no socket, carried
//! by the same externally-fed transport as an ASGI host's WebSocket (`transport::external`),
//! but driven from Rust by the client engine (`client::in_process`) rather than through the
//! host's inbound queue. The front door decides on it exactly as on any WebSocket request
//! (endpoint, `allow_request`, CORS, protocol version, the handshake); then the client hands
//! each message to [`ExternalWs::receive`] on its own thread, and the server wakes the
//! client's reader when the session has frames for it ([`ExternalWs::wake_local`]).

use std::sync::Arc;

use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot};

use super::{ExternalRequest, FrontDoor, ServerHandle};
use crate::bridge::Command;
use crate::transport::external::ExternalWs;

/// What an in-process client holds of a server: enough to open connections to it. Cloned
/// freely; a server that has stopped refuses new connections.
#[derive(Clone)]
pub struct InProcessServer {
    front: Arc<FrontDoor>,
    runtime: tokio::runtime::Handle,
    /// Closed once the server's engine thread has stopped.
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for InProcessServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessServer")
            .field("path", &self.front.config.path)
            .finish_non_exhaustive()
    }
}

impl InProcessServer {
    /// A new connection, not yet opened: the caller keeps it (and closes it when done, or
    /// when it gives up before [`InProcessServer::open`] answers).
    pub(crate) fn connection(&self) -> Arc<ExternalWs> {
        ExternalWs::new_local(self.front.config.max_payload)
    }

    /// Opens `conn` with the WebSocket request `req`: Ok once the server accepted it (its
    /// session's open packet is then waiting in `conn`), or why it did not, in the words a
    /// WebSocket handshake failure over TCP would use.
    pub(crate) async fn open(
        &self,
        conn: Arc<ExternalWs>,
        req: ExternalRequest,
    ) -> Result<(), String> {
        if self.commands.is_closed() {
            return Err("the server is not running".into());
        }
        let (remote, local) = (req.remote, req.local);
        let req = req
            .into_request()
            .map_err(|e| format!("bad in-process request: {e}"))?;
        let (tx, rx) = oneshot::channel();
        let front = self.front.clone();
        self.runtime.spawn(async move {
            let res = front.open_external_ws(req, remote, local, conn).await;
            let status = res.status().as_u16();
            let body = res
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let _ = tx.send((status, body));
        });
        match rx.await {
            Ok((101, _)) => Ok(()),
            Ok((status, body)) => Err(format!(
                "websocket handshake failed: HTTP error: {status} {}",
                String::from_utf8_lossy(&body)
            )),
            // The engine thread stopped before it answered.
            Err(_) => Err("the server is not running".into()),
        }
    }
}

impl ServerHandle {
    /// A handle for in-process clients of this server (with or without a listener).
    pub fn in_process(&self) -> InProcessServer {
        InProcessServer {
            front: self.front.clone(),
            runtime: self.runtime.clone(),
            commands: self.commands.clone(),
        }
    }
}
