//! The Socket.IO client engine: Engine.IO v4 over WebSocket, long-polling, or polling upgraded
//! to WebSocket (or an in-process WebSocket to a server of the same process), on a tokio current-thread runtime of its own thread.
//!
//! The engine owns one connection at a time (an *attempt*, numbered by the host with a
//! generation `gen`): the handshake, the transport, the heartbeat (pongs, and a dead-server
//! deadline of `pingInterval + pingTimeout` after the last ping), the upgrade, and Socket.IO
//! decoding with binary reassembly. Policy (namespaces, reconnection, buffering, acks) belongs
//! to the host: the engine reports [`ClientInbound`] records in arrival order through a
//! [`WakeQueue`] and applies [`ClientCommand`]s from one FIFO channel. Commands for an older
//! generation are dropped, so a late emit can never leak into a newer connection.

mod conn;
pub mod decoder;
mod http;
mod in_process;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::bridge::EngineThread;
pub use crate::bridge::WakeQueue;
use crate::engineio::packet::Frame;
use crate::socketio::assembler::AttachmentLimits;
use tls::{TlsConnector, TlsOptions};

pub use crate::engineio::DisconnectReason;

/// The transport a connection is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportName {
    Polling,
    WebSocket,
}

impl TransportName {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportName::Polling => "polling",
            TransportName::WebSocket => "websocket",
        }
    }
}

/// An event for the host, in arrival order. `gen` is the connection attempt it belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientInbound {
    /// The Engine.IO handshake completed; `handshake` is the open packet's JSON.
    Open {
        gen: u64,
        sid: String,
        transport: TransportName,
        handshake: Bytes,
    },
    /// The connection moved from polling to WebSocket.
    Upgraded { gen: u64 },
    /// The server accepted a namespace; `data` is the CONNECT payload (`{"sid": ...}`).
    Connect { gen: u64, nsp: String, data: Bytes },
    /// The server refused a namespace; `data` is the CONNECT_ERROR object.
    ConnectError { gen: u64, nsp: String, data: Bytes },
    Event {
        gen: u64,
        nsp: String,
        ack_id: Option<u64>,
        data: Bytes,
        attachments: Vec<Bytes>,
    },
    Ack {
        gen: u64,
        nsp: String,
        ack_id: u64,
        data: Bytes,
        attachments: Vec<Bytes>,
    },
    /// The server disconnected the client from a namespace (`41`).
    Disconnect { gen: u64, nsp: String },
    /// The connection is over (or never opened); always the last record of a generation.
    Closed {
        gen: u64,
        reason: DisconnectReason,
        detail: String,
    },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectTarget {
    pub host: String,
    pub port: u16,
    /// The endpoint path with slashes at both ends (`/socket.io/`).
    pub path: String,
    /// Extra query parameters, already encoded (`a=1&b=2`), possibly empty.
    pub query: String,
    /// Extra request headers, on every HTTP request and the WebSocket handshake.
    pub headers: Vec<(String, String)>,
    pub websocket: bool,
    pub polling: bool,
    /// Try to upgrade a polling connection to WebSocket.
    pub upgrade: bool,
    /// Bound on the handshake, each POST, the upgrade probe, and the closing flush.
    pub request_timeout: Duration,
    /// TLS (`https`/`wss`) on every connection, verified as these options say; `None`: plain.
    pub tls: Option<TlsOptions>,
    /// Bounds on binary packets from the server in reassembly (the timeout is checked at each
    /// ping from the server).
    pub attachment_limits: AttachmentLimits,
    /// Connect to this server of the same process instead of `host:port`: a WebSocket with
    /// no socket (`in_process`); `polling`, `upgrade` and `tls` do not apply.
    pub in_process: Option<crate::server::InProcessServer>,
    /// The Socket.IO parser the server uses (JSON, or msgpack).
    pub parser: crate::socketio::parser::Parser,
}

/// A request from the host, applied in order on the engine thread.
#[derive(Debug)]
pub enum ClientCommand {
    /// Starts connection attempt `gen` (closing the current one, if any).
    Connect {
        gen: u64,
        target: Box<ConnectTarget>,
    },
    /// Sends frames (one packet and its attachments) on connection `gen`.
    Send { gen: u64, frames: Vec<Frame> },
    /// Closes connection `gen` cleanly: queued frames are flushed, then Engine.IO close.
    Close { gen: u64 },
    /// Stops the engine thread.
    Shutdown,
}

/// Errors of the client engine as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client engine is not running")]
    NotRunning,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A running client engine, as the host sees it.
pub struct ClientHandle {
    commands: mpsc::UnboundedSender<ClientCommand>,
    inbound: Arc<WakeQueue<ClientInbound>>,
    thread: EngineThread,
}

impl ClientHandle {
    /// Starts the engine thread (idle until the first `Connect`).
    pub fn start() -> Result<ClientHandle, ClientError> {
        let inbound = WakeQueue::new()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let out = inbound.clone();
        let thread = std::thread::Builder::new()
            .name("ferrosio-client".into())
            .spawn(move || runtime.block_on(engine_main(rx, out)))?;
        Ok(ClientHandle {
            commands: tx,
            inbound,
            thread: EngineThread::new(thread),
        })
    }

    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.inbound.wake_fd()
    }

    pub fn drain(&self) -> Vec<ClientInbound> {
        self.inbound.drain()
    }

    /// Queues a command; never blocks.
    pub fn command(&self, cmd: ClientCommand) -> Result<(), ClientError> {
        self.commands.send(cmd).map_err(|_| ClientError::NotRunning)
    }

    pub fn is_running(&self) -> bool {
        self.thread.is_running()
    }

    /// Stops the engine thread (the connection is dropped without a close packet) and joins it.
    pub fn shutdown(&self) {
        let _ = self.commands.send(ClientCommand::Shutdown);
        self.thread.join();
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The engine thread: one connection at a time; a `Connect` or `Shutdown` that arrives during a
/// connection ends it and is handled next.
async fn engine_main(
    mut commands: mpsc::UnboundedReceiver<ClientCommand>,
    out: Arc<WakeQueue<ClientInbound>>,
) {
    let mut next: Option<ClientCommand> = None;
    // The TLS configuration of the last attempt: reconnections reuse it rather than reload
    // the trusted CAs each time.
    let mut tls_cache: Option<(TlsOptions, TlsConnector)> = None;
    loop {
        let cmd = match next.take() {
            Some(cmd) => cmd,
            None => match commands.recv().await {
                Some(cmd) => cmd,
                None => return,
            },
        };
        match cmd {
            ClientCommand::Connect { gen, target } => {
                let tls = match &target.tls {
                    None => None,
                    Some(options) => match tls_connector(&mut tls_cache, options) {
                        Ok(connector) => Some(connector),
                        Err(e) => {
                            out.push(ClientInbound::Closed {
                                gen,
                                reason: DisconnectReason::ConnectError,
                                detail: e.to_string(),
                            });
                            continue;
                        }
                    },
                };
                next = conn::run(gen, Arc::new(*target), tls, &mut commands, &out).await;
            }
            ClientCommand::Shutdown => return,
            // For a connection that is already gone: nothing to do.
            ClientCommand::Send { .. } | ClientCommand::Close { .. } => {}
        }
    }
}

fn tls_connector(
    cache: &mut Option<(TlsOptions, TlsConnector)>,
    options: &TlsOptions,
) -> Result<TlsConnector, tls::TlsError> {
    if let Some((cached, connector)) = cache.as_ref() {
        if cached == options {
            return Ok(connector.clone());
        }
    }
    let connector = TlsConnector::new(options)?;
    *cache = Some((options.clone(), connector.clone()));
    Ok(connector)
}

#[cfg(test)]
mod tests;
