//! The HTTP front door and the engine thread it runs on: [`ServerHandle`] is what the host holds
//! (start, command intake, shutdown); `FrontDoor` is the state every request and command
//! works on. One file per concern:
//!
//! - `route`: one request, from its path to the transport that answers it;
//! - `http`: Engine.IO's HTTP error codes, the query, small response builders;
//! - `cors`: the CORS decision and the preflight answer;
//! - `gate`: the questions only the host can answer (a callable CORS policy, `allow_request`);
//! - `sessions`: the session table, which endpoint a session belongs to, open and end;
//! - `polling`: polling GET/POST on a session;
//! - `upgrade`: WebSocket requests, new sessions and upgrades alike;
//! - `static_files`: files served from the same port;
//! - `forward`: other requests handed to the host's own HTTP application (one port beside it);
//! - `listener`: bind, the accept and command loop, graceful shutdown;
//! - `handoff`: one of several worker processes on one port: a connection for another
//!   worker's session is handed to it;
//! - `in_process`: connections of in-process clients (no socket), on the `external` seam;
//! - `tls`: the listener's TLS (certificate, key, client CAs), set up at start.

mod cors;
mod encoding;
mod external;
mod forward;
mod gate;
mod handoff;
mod http;
mod in_process;
mod listener;
mod polling;
mod route;
mod sessions;
mod static_files;
pub(crate) mod tls;
mod upgrade;

pub use external::ExternalRequest;
pub use handoff::WorkerStats;
pub use in_process::InProcessServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::bridge::{Command, ControlCommand, EngineThread, Inbound, InboundQueue};
use crate::cluster::{
    spawn_link, ClusterChannel, ClusterError, ClusterLink, ClusterStatsSnapshot, RedisAdapter,
};
use crate::config::ServerConfig;
use crate::engineio::endpoint::EngineIoEndpoint;
use crate::engineio::inbound::InboundBudget;
use crate::error::ServerError;
use crate::socketio::layer::SocketIoLayer;

use gate::{HostGate, Verdict};
use sessions::SessionTable;

/// The body of a request the front door answers: hyper's own, or one an embedding host
/// (an ASGI server, see `external`) hands over whole.
pub(crate) trait RequestBody:
    hyper::body::Body<Data = bytes::Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}

impl<T> RequestBody for T where
    T: hyper::body::Body<
            Data = bytes::Bytes,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        > + Send
        + Unpin
        + 'static
{
}

/// What the front door works with: the settings, the layers above the sessions, the sessions,
/// and the host's pending decisions. Shared by every connection task of the engine thread.
struct FrontDoor {
    config: ServerConfig,
    gate: HostGate,
    inbound: Arc<InboundQueue>,
    layer: Arc<SocketIoLayer>,
    engineio: Option<Arc<EngineIoEndpoint>>,
    sessions: Mutex<SessionTable>,
    /// The heartbeats of all sessions, and their task: started with the first session.
    heartbeats: std::sync::OnceLock<Arc<crate::engineio::heartbeat::Heartbeats>>,
    /// Requests forwarded to the host's HTTP application, awaiting their answer.
    forwarded: forward::Forwarder,
}

impl FrontDoor {
    /// Applies one host command (shutdown is the serve loop's, see `listener`).
    fn execute(&self, cmd: Command) {
        match cmd {
            Command::SocketIo(cmd) => self.layer.execute(cmd),
            Command::EngineIo(cmd) => {
                if let Some(engineio) = &self.engineio {
                    engineio.execute(cmd);
                }
            }
            Command::Control(ControlCommand::Authorize {
                id,
                origin_ok,
                request_ok,
            }) => {
                self.gate.answer(
                    id,
                    Verdict {
                        origin_ok,
                        request_ok,
                    },
                );
            }
            // Only meaningful on its own: the serve loop takes it before it gets here.
            Command::Control(ControlCommand::Shutdown { .. }) => {}
            Command::Http(cmd) => self.forwarded.execute(cmd),
            Command::Batch(cmds) => {
                for cmd in cmds {
                    self.execute(cmd);
                }
            }
        }
    }
}

/// A running server, as the host sees it.
pub struct ServerHandle {
    commands: mpsc::UnboundedSender<Command>,
    inbound: Arc<InboundQueue>,
    thread: EngineThread,
    local_addr: SocketAddr,
    cluster: Option<Arc<ClusterLink>>,
    /// For requests the host hands over (`external`): the front door and its runtime.
    front: Arc<FrontDoor>,
    runtime: tokio::runtime::Handle,
    /// The host's WebSocket connections, by its ids.
    external: Mutex<foldhash::HashMap<u64, Arc<crate::transport::external::ExternalWs>>>,
    /// This worker's handoff, when it is one of several on the port.
    handoff: Option<Arc<handoff::Handoff>>,
}

impl ServerHandle {
    /// Binds `addr` (errors come back here, synchronously) and starts the engine thread.
    pub fn start(config: ServerConfig, addr: &str) -> Result<ServerHandle, ServerError> {
        let listener =
            listener::bind(addr, config.worker.is_some()).map_err(|source| ServerError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        ServerHandle::launch(config, Some(listener))
    }

    /// Starts the engine thread, serving `listener` if given.
    fn launch(
        config: ServerConfig,
        listener: Option<std::net::TcpListener>,
    ) -> Result<ServerHandle, ServerError> {
        let tls = match &listener {
            Some(_) => config.tls.as_ref().map(tls::acceptor).transpose()?,
            None => None,
        };
        let workers = match (&config.worker, &listener) {
            (Some(_), Some(_)) if config.tls.is_some() => return Err(ServerError::TlsWithWorkers),
            (Some(worker), Some(_)) => Some(handoff::bind(worker)?),
            _ => None,
        };
        let local_addr = match &listener {
            Some(l) => l.local_addr()?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let inbound = InboundQueue::with_budget(InboundBudget::new(
            config.max_inbound_buffer,
            config.max_inbound_total,
        ))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (layer, cluster) = match &config.cluster {
            None => (SocketIoLayer::new(inbound.clone(), &config), None),
            Some(cluster_config) => {
                // The link holds a weak sender: the host dropping its handle still ends the server.
                let link = spawn_link(cluster_config, &runtime, tx.downgrade(), inbound.clone())?;
                let for_adapters = link.clone();
                let layer = SocketIoLayer::with_cluster_adapter(
                    inbound.clone(),
                    &config,
                    Box::new(move |nsp| Box::new(RedisAdapter::new(nsp, for_adapters.clone()))),
                );
                (layer, Some(link))
            }
        };
        let front = Arc::new(FrontDoor {
            layer,
            engineio: config
                .engineio_path
                .as_ref()
                .map(|_| EngineIoEndpoint::new(inbound.clone())),
            inbound: inbound.clone(),
            gate: HostGate::default(),
            sessions: Mutex::default(),
            heartbeats: std::sync::OnceLock::new(),
            forwarded: forward::Forwarder::default(),
            config,
        });
        let handoff = workers.as_ref().map(|(h, _)| h.clone());
        let handle = runtime.handle().clone();
        let served = front.clone();
        let thread = std::thread::Builder::new()
            .name("ferrosio-io".into())
            .spawn(move || {
                runtime.block_on(listener::serve(listener, tls, served, rx, workers));
            })?;
        Ok(ServerHandle {
            commands: tx,
            inbound,
            thread: EngineThread::new(thread),
            local_addr,
            cluster,
            front,
            runtime: handle,
            external: Mutex::default(),
            handoff,
        })
    }

    /// This worker's number and handoff counters, if it is one of several on the port.
    pub fn worker_stats(&self) -> Option<WorkerStats> {
        self.handoff.as_ref().map(|h| h.stats())
    }

    /// This server's id among the nodes of its cluster (the `uid` of its requests).
    pub fn cluster_uid(&self) -> Option<&str> {
        self.cluster.as_ref().map(|link| link.uid())
    }

    /// Publishes a request to the nodes of `nsp` (the adapter's message as JSON with
    /// placeholders for `attachments`) after counting them; reported with `token` as
    /// `ControlInbound::ClusterSent`. `Ok(false)`: the link's queue is full, nothing sent.
    pub fn cluster_request(
        &self,
        nsp: &str,
        json: &[u8],
        attachments: &[bytes::Bytes],
        token: u64,
    ) -> Result<bool, ServerError> {
        let link = self.cluster.as_ref().ok_or(ClusterError::NotInCluster)?;
        Ok(link
            .send_request(nsp, json, attachments, token)
            .map_err(ClusterError::from)?)
    }

    /// Publishes a message (an answer, or a request without answers) on `channel` of `nsp`.
    /// `Ok(false)`: the link's queue is full, nothing sent.
    pub fn cluster_message(
        &self,
        nsp: &str,
        channel: &ClusterChannel,
        json: &[u8],
        attachments: &[bytes::Bytes],
    ) -> Result<bool, ServerError> {
        let link = self.cluster.as_ref().ok_or(ClusterError::NotInCluster)?;
        Ok(link
            .send_message(nsp, channel, json, attachments)
            .map_err(ClusterError::from)?)
    }

    /// The counters of the cluster link, if this server is in a cluster.
    pub fn cluster_stats(&self) -> Option<ClusterStatsSnapshot> {
        self.cluster.as_ref().map(|link| link.stats.snapshot())
    }

    /// Connection state recovery: sessions kept, and packets and bytes in the namespaces' logs.
    pub fn recovery_stats(&self) -> (usize, usize, usize) {
        self.front.layer.recovery_stats()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.inbound.wake_fd()
    }

    pub fn drain(&self) -> Vec<Inbound> {
        self.inbound.drain()
    }

    /// Returns drained events once converted, to be freed on the engine thread.
    pub fn recycle(&self, items: Vec<Inbound>) {
        self.inbound.recycle(items);
    }

    /// Queues a command; never blocks.
    pub fn command(&self, cmd: Command) -> Result<(), ServerError> {
        self.commands.send(cmd).map_err(|_| ServerError::NotRunning)
    }

    pub fn is_running(&self) -> bool {
        self.thread.is_running()
    }

    /// Starts a graceful shutdown and waits for the engine thread to finish.
    pub fn shutdown(&self, timeout: Duration) {
        let _ = self
            .commands
            .send(Command::Control(ControlCommand::Shutdown {
                timeout_ms: timeout.as_millis() as u64,
            }));
        self.thread.join();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(0));
    }
}

/// The HTTP fuzz target's way in (see `crate::fuzzing`): a fresh front door with one polling
/// session already open, serving one connection over any byte stream as the listener serves
/// each of its connections. Returns that session's sid (so fuzz input can name it) and the
/// connection to run. A WebSocket upgrade cannot complete over such a stream (it takes the TCP
/// socket back from hyper); the frame parser has a target of its own.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_connection<IO>(
    config: ServerConfig,
    inbound: Arc<InboundQueue>,
    io: IO,
) -> (Arc<str>, impl std::future::Future<Output = ()>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let front = Arc::new(FrontDoor {
        layer: SocketIoLayer::new(inbound.clone(), &config),
        engineio: None,
        inbound,
        gate: HostGate::default(),
        sessions: Mutex::default(),
        heartbeats: std::sync::OnceLock::new(),
        forwarded: forward::Forwarder::default(),
        config,
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], 1));
    let handshake = crate::engineio::session::Handshake::new(
        "GET",
        "/socket.io/",
        "EIO=4&transport=polling",
        [],
        addr,
        addr,
    );
    let session = front.open_session(
        handshake,
        crate::engineio::session::TransportKind::Polling,
        sessions::Endpoint::SocketIo,
        crate::engineio::v3::Protocol::V4,
    );
    (
        session.sid.clone(),
        listener::serve_connection(front, io, addr, addr),
    )
}
