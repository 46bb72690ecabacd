//! `ferrosio._ferrosio`: the thin PyO3 face of ferrosio-core.
//!
//! Every call here runs on the host (asyncio) thread with the GIL held and returns at once:
//! commands go on the engine's FIFO queue; `drain` hands over a whole batch of inbound events.
//! No Python object ever crosses to the engine thread.

mod client;
mod records;

use std::time::Duration;

use bytes::Bytes;
use std::sync::Mutex;

use ferrosio_core::codec::{encode_message, PacketType, Parser, SocketPacket};
use ferrosio_core::RecoveryConfig;
use ferrosio_core::WorkerConfig;
use ferrosio_core::{
    normalize_path, BroadcastFlags, BroadcastOptions, ClusterChannel, Command, ControlCommand,
    ControlInbound, CorsPolicy, EngineIoCommand, EngineIoInbound, ExternalMessage, ExternalRequest,
    Frame, Handshake, HttpCommand, HttpInbound, Inbound, Publisher, RedisClusterConfig, Reply,
    ServerConfig, ServerError, ServerHandle, ServerTls, SocketIoCommand, SocketIoInbound,
    StaticRoute, Target,
};
use records::{attachment_list, message_record, packet_frames, parser_named};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

create_exception!(
    _ferrosio,
    FerrosioError,
    PyException,
    "Base class of every ferrosio error."
);
create_exception!(
    _ferrosio,
    EngineNotRunningError,
    FerrosioError,
    "The engine is not running."
);

fn to_pyerr(err: ServerError) -> PyErr {
    match err {
        ServerError::NotRunning => EngineNotRunningError::new_err(err.to_string()),
        ServerError::Bind { source, addr } => pyo3::exceptions::PyOSError::new_err((
            source.raw_os_error().unwrap_or(0),
            format!("could not bind {addr}: {source}"),
        )),
        other => FerrosioError::new_err(other.to_string()),
    }
}

// The kind tags of drained records (first item of each tuple; see `_ferrosio.pyi`).
const SOCKETIO_CONNECT: u8 = 0;
const SOCKETIO_EVENT: u8 = 1;
const SOCKETIO_ACK: u8 = 2;
const SOCKETIO_DISCONNECT: u8 = 3;
const ENGINEIO_OPEN: u8 = 4;
const ENGINEIO_MESSAGE: u8 = 5;
const ENGINEIO_CLOSE: u8 = 6;
const CONTROL_AUTHORIZE: u8 = 7;
const SOCKETIO_BROADCAST_REACH: u8 = 8;
const CONTROL_CLUSTER: u8 = 9;
const CONTROL_RESPONSE: u8 = 10;
const CONTROL_READY: u8 = 11;
// Forwarded HTTP (one port beside an ASGI app).
const HTTP_REQUEST: u8 = 12;
const HTTP_WRITTEN: u8 = 13;
const HTTP_CLOSED: u8 = 14;
// Requests between the nodes of a cluster (fetch sockets, server-side emit...).
const CONTROL_CLUSTER_MESSAGE: u8 = 30;
const CONTROL_CLUSTER_SENT: u8 = 31;
const SOCKETIO_KEPT: u8 = 20;
const SOCKETIO_ROOM_REFUSED: u8 = 21;

/// The HTTP request that opened a session, as Python reads it (to build its environ dict).
#[pyclass(frozen, name = "Handshake", module = "ferrosio._ferrosio")]
struct PyHandshake {
    inner: Handshake,
}

#[pymethods]
impl PyHandshake {
    #[getter]
    fn method(&self) -> &str {
        self.inner.method()
    }

    #[getter]
    fn path(&self) -> &str {
        self.inner.path()
    }

    #[getter]
    fn query(&self) -> &str {
        self.inner.query()
    }

    /// `(name, value)` pairs in request order; names are lowercase.
    #[getter]
    fn headers(&self) -> Vec<(&str, &str)> {
        self.inner.headers().collect()
    }

    /// The client's `(ip, port)`.
    #[getter]
    fn remote_addr(&self) -> (String, u16) {
        let a = self.inner.remote_addr();
        (a.ip().to_string(), a.port())
    }

    /// The server's `(ip, port)` the request came in on.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        let a = self.inner.local_addr();
        (a.ip().to_string(), a.port())
    }
}

fn handshake<'py>(py: Python<'py>, hs: &Handshake) -> PyResult<Bound<'py, PyHandshake>> {
    Bound::new(py, PyHandshake { inner: hs.clone() })
}

/// Publishes broadcasts to a Redis cluster without running a server (the emitter's
/// transport). Blocking: the GIL is released while it talks to Redis.
#[pyclass(frozen, name = "RedisPublisher", module = "ferrosio._ferrosio")]
struct PyRedisPublisher {
    inner: Mutex<Publisher>,
}

#[pymethods]
impl PyRedisPublisher {
    #[new]
    #[pyo3(signature = (url, key = "socket.io"))]
    fn new(url: &str, key: &str) -> PyResult<Self> {
        let inner = Publisher::new(url, key).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyRedisPublisher {
            inner: Mutex::new(inner),
        })
    }

    /// Publishes an EVENT packet (`data` is the JSON array) for the sockets of `nsp` in any
    /// of `rooms` (all when empty) minus `skip`; returns how many subscribers got it.
    #[pyo3(signature = (nsp, data, *, rooms = None, skip = None, attachments = None))]
    fn broadcast(
        &self,
        py: Python<'_>,
        nsp: &str,
        data: &[u8],
        rooms: Option<Vec<String>>,
        skip: Option<Vec<String>>,
        attachments: Option<Vec<Vec<u8>>>,
    ) -> PyResult<u64> {
        // The cluster's messages are built from JSON frames, whatever the nodes' parsers.
        let frames = packet_frames(
            Parser::Json,
            PacketType::Event,
            nsp,
            None,
            data,
            attachments,
        )?;
        let opts = BroadcastOptions {
            rooms: rooms.unwrap_or_default(),
            except: skip.unwrap_or_default(),
            ..BroadcastOptions::default()
        };
        py.detach(|| {
            let mut publisher = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            publisher.broadcast(nsp, &frames, &opts)
        })
        .map_err(|e| FerrosioError::new_err(e.to_string()))
    }
}

fn to_bytes(items: Option<Vec<Vec<u8>>>) -> Vec<Bytes> {
    items
        .unwrap_or_default()
        .into_iter()
        .map(Bytes::from)
        .collect()
}

/// The sockets in any of `rooms` (all when empty) minus `skip`.
fn selection(
    rooms: Option<Vec<String>>,
    skip: Option<Vec<String>>,
    local: bool,
) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.unwrap_or_default(),
        except: skip.unwrap_or_default(),
        flags: BroadcastFlags {
            local,
            ..BroadcastFlags::default()
        },
    }
}

/// A running server: an HTTP listener and its engine thread.
#[pyclass(frozen, name = "ServerHandle", module = "ferrosio._ferrosio")]
struct PyServerHandle {
    handle: ServerHandle,
    /// Commands held back while a batch is open (see `begin_batch`).
    batch: Mutex<Option<Vec<Command>>>,
    /// How the packets built here are written (the engine's own use `ServerConfig::parser`).
    parser: Parser,
}

#[pymethods]
impl PyServerHandle {
    #[new]
    #[pyo3(signature = (host, port = 0, *, path = "/socket.io/", ping_interval_ms = 25_000, ping_timeout_ms = 20_000, max_payload = 1_000_000, connect_timeout_ms = 45_000, websocket = true, polling = true, upgrades = true, engineio_path = None, cors = "same-origin", cors_origins = None, cors_credentials = true, static_files = None, authorize_requests = false, max_attachments = 10, max_attachment_bytes = None, attachment_timeout_ms = 30_000, max_send_buffer = 16_000_000, max_poll_response = 1_000_000, max_inbound_buffer = 64_000, max_inbound_total = 16_000_000, max_rooms_per_socket = 10_000, cluster_url = None, cluster_key = "socket.io", forward_http = false, tls_cert_file = None, tls_key_file = None, tls_client_ca_file = None, worker = None, allow_eio3 = false, recovery = None, serializer = "default", websocket_compression = None, http_compression = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: Option<&str>,
        port: u16,
        path: &str,
        ping_interval_ms: u64,
        ping_timeout_ms: u64,
        max_payload: usize,
        connect_timeout_ms: u64,
        websocket: bool,
        polling: bool,
        upgrades: bool,
        engineio_path: Option<&str>,
        cors: &str,
        cors_origins: Option<Vec<String>>,
        cors_credentials: bool,
        static_files: Option<Vec<(String, String, Option<String>)>>,
        authorize_requests: bool,
        max_attachments: usize,
        max_attachment_bytes: Option<usize>,
        attachment_timeout_ms: u64,
        max_send_buffer: usize,
        max_poll_response: usize,
        max_inbound_buffer: usize,
        max_inbound_total: usize,
        max_rooms_per_socket: usize,
        cluster_url: Option<String>,
        cluster_key: &str,
        forward_http: bool,
        tls_cert_file: Option<std::path::PathBuf>,
        tls_key_file: Option<std::path::PathBuf>,
        tls_client_ca_file: Option<std::path::PathBuf>,
        worker: Option<(u8, u8, std::path::PathBuf)>,
        allow_eio3: bool,
        recovery: Option<(u64, usize, usize, usize, usize)>,
        serializer: &str,
        websocket_compression: Option<usize>,
        http_compression: Option<usize>,
    ) -> PyResult<Self> {
        let parser = parser_named(serializer)?;
        let tls = match (tls_cert_file, tls_key_file) {
            (Some(cert_file), Some(key_file)) => Some(ServerTls {
                cert_file,
                key_file,
                client_ca_file: tls_client_ca_file,
            }),
            (None, None) if tls_client_ca_file.is_none() => None,
            _ => {
                return Err(PyValueError::new_err(
                    "TLS needs both a certificate file and a key file",
                ))
            }
        };
        let cors = match cors {
            "same-origin" => CorsPolicy::SameOrigin,
            "any" => CorsPolicy::Any,
            "disabled" => CorsPolicy::Disabled,
            "host" => CorsPolicy::Host,
            "list" => CorsPolicy::List(cors_origins.unwrap_or_default()),
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown cors policy {other:?}"
                )))
            }
        };
        let static_files = static_files
            .unwrap_or_default()
            .into_iter()
            .map(|(url, path, content_type)| StaticRoute {
                url,
                path: path.into(),
                content_type,
            })
            .collect();
        let config = ServerConfig {
            path: normalize_path(path),
            ping_interval: Duration::from_millis(ping_interval_ms),
            ping_timeout: Duration::from_millis(ping_timeout_ms),
            max_payload,
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            allow_websocket: websocket,
            allow_polling: polling,
            allow_upgrades: upgrades,
            engineio_path: engineio_path.map(normalize_path),
            cors,
            cors_credentials,
            static_files,
            authorize_requests,
            max_attachments,
            max_attachment_bytes,
            attachment_timeout: Duration::from_millis(attachment_timeout_ms),
            max_send_buffer,
            max_poll_response,
            max_inbound_buffer,
            max_inbound_total,
            max_rooms_per_socket,
            cluster: cluster_url.map(|url| RedisClusterConfig {
                key: cluster_key.to_owned(),
                ..RedisClusterConfig::new(url)
            }),
            forward_http,
            tls,
            worker: worker.map(|(index, count, dir)| WorkerConfig { index, count, dir }),
            allow_eio3,
            recovery: recovery.map(
                |(
                    max_disconnection_ms,
                    max_sessions,
                    max_log_bytes,
                    max_missed_packets,
                    max_missed_bytes,
                )| {
                    RecoveryConfig {
                        max_disconnection: Duration::from_millis(max_disconnection_ms),
                        max_sessions,
                        max_log_bytes,
                        max_missed_packets,
                        max_missed_bytes,
                    }
                },
            ),
            parser,
            websocket_compression,
            http_compression,
            ..ServerConfig::default()
        };
        let handle = match host {
            // No listener: the host's web server hands requests over (`external_*`).
            None => py.detach(|| ServerHandle::start_unbound(config)),
            Some(host) => {
                let addr = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                py.detach(|| ServerHandle::start(config, &addr))
            }
        }
        .map_err(to_pyerr)?;
        Ok(PyServerHandle {
            handle,
            batch: Mutex::new(None),
            parser,
        })
    }

    /// This worker's place and handoff counters as a dict (`worker`, `workers`, `handed_out`,
    /// `taken_in`), or None when the server is not one of several workers on its port.
    fn worker_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(s) = self.handle.worker_stats() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("worker", s.index)?;
        d.set_item("workers", s.count)?;
        d.set_item("handed_out", s.handed_out)?;
        d.set_item("taken_in", s.taken_in)?;
        Ok(Some(d))
    }

    /// Connection state recovery: `(sessions kept, packets logged, bytes logged)`.
    fn recovery_stats(&self) -> (usize, usize, usize) {
        self.handle.recovery_stats()
    }

    /// The cluster link's counters as a dict (`connected`, `published`, `received`, `dropped`,
    /// `malformed`, `outages`), or None when the server is not in a cluster.
    fn cluster_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(s) = self.handle.cluster_stats() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("connected", s.connected)?;
        d.set_item("published", s.published)?;
        d.set_item("received", s.received)?;
        d.set_item("dropped", s.dropped)?;
        d.set_item("malformed", s.malformed)?;
        d.set_item("outages", s.outages)?;
        Ok(Some(d))
    }

    /// The bound port (useful with port 0).
    #[getter]
    fn port(&self) -> u16 {
        self.handle.local_addr().port()
    }

    /// The fd that becomes readable when records are waiting.
    fn wake_fd(&self) -> i32 {
        self.handle.wake_fd()
    }

    fn is_running(&self) -> bool {
        self.handle.is_running()
    }

    /// Every waiting record, in arrival order, as tuples tagged by kind (see `_ferrosio.pyi`).
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self.handle.drain();
        let out = PyList::empty(py);
        for item in &items {
            let t = match item {
                Inbound::SocketIo(item) => socketio_record(py, item)?,
                Inbound::EngineIo(item) => engineio_record(py, item)?,
                Inbound::Control(ControlInbound::Authorize {
                    id,
                    origin,
                    check_request,
                    handshake: hs,
                }) => (
                    CONTROL_AUTHORIZE,
                    *id,
                    origin.as_deref(),
                    *check_request,
                    handshake(py, hs)?,
                )
                    .into_pyobject(py)?,
                Inbound::Control(ControlInbound::Cluster { connected, detail }) => {
                    (CONTROL_CLUSTER, *connected, detail.as_str()).into_pyobject(py)?
                }
                Inbound::Control(ControlInbound::Response {
                    id,
                    status,
                    headers,
                    body,
                }) => {
                    let pairs = PyList::empty(py);
                    for (name, value) in headers {
                        pairs
                            .append((PyBytes::new(py, name.as_bytes()), PyBytes::new(py, value)))?;
                    }
                    (
                        CONTROL_RESPONSE,
                        *id,
                        *status,
                        pairs,
                        PyBytes::new(py, body),
                    )
                        .into_pyobject(py)?
                }
                Inbound::Control(ControlInbound::Ready { id }) => {
                    (CONTROL_READY, *id).into_pyobject(py)?
                }
                Inbound::Control(ControlInbound::ClusterMessage {
                    nsp,
                    response,
                    json,
                    attachments,
                }) => (
                    CONTROL_CLUSTER_MESSAGE,
                    nsp.as_str(),
                    *response,
                    PyBytes::new(py, json),
                    attachment_list(py, attachments)?,
                )
                    .into_pyobject(py)?,
                Inbound::Control(ControlInbound::ClusterSent { token, servers }) => {
                    (CONTROL_CLUSTER_SENT, *token, *servers).into_pyobject(py)?
                }
                Inbound::Http(item) => http_record(py, item)?,
            };
            out.append(t)?;
        }
        self.handle.recycle(items);
        Ok(out)
    }

    /// Emits an EVENT packet (`data` is the JSON array) to one socket (`to`) or to rooms.
    /// `volatile`: dropped for a client that cannot take it now; `local`: this server's
    /// sockets only (a cluster does not forward it); `compress=false`: never compressed.
    #[pyo3(signature = (nsp, data, *, to = None, rooms = None, skip = None, attachments = None, ack_id = None, volatile = false, local = false, compress = true))]
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        nsp: &str,
        data: &[u8],
        to: Option<String>,
        rooms: Option<Vec<String>>,
        skip: Option<Vec<String>>,
        attachments: Option<Vec<Vec<u8>>>,
        ack_id: Option<u64>,
        volatile: bool,
        local: bool,
        compress: bool,
    ) -> PyResult<()> {
        let mut frames = packet_frames(
            self.parser,
            PacketType::Event,
            nsp,
            ack_id,
            data,
            attachments,
        )?;
        if !compress {
            frames = frames.into_iter().map(Frame::plain).collect();
        }
        let flags = BroadcastFlags { volatile, local };
        let target = match to {
            Some(sid) if !volatile && !local => Target::Socket(sid),
            // A flagged emit to one socket goes to its own room, where the flags travel.
            to => Target::Broadcast(BroadcastOptions {
                rooms: to.map_or_else(|| rooms.unwrap_or_default(), |sid| vec![sid]),
                except: skip.unwrap_or_default(),
                flags,
            }),
        };
        self.send(SocketIoCommand::Emit {
            nsp: nsp.to_owned(),
            target,
            frames,
        })
    }

    /// Broadcasts an EVENT asking each recipient for an ack, all under `ack_id`; the engine
    /// answers with a `SOCKETIO_BROADCAST_REACH` record telling how many clients it reached.
    #[pyo3(signature = (nsp, data, ack_id, *, rooms = None, skip = None, attachments = None, compress = true))]
    #[allow(clippy::too_many_arguments)]
    fn emit_with_ack(
        &self,
        nsp: &str,
        data: &[u8],
        ack_id: u64,
        rooms: Option<Vec<String>>,
        skip: Option<Vec<String>>,
        attachments: Option<Vec<Vec<u8>>>,
        compress: bool,
    ) -> PyResult<()> {
        let mut frames = packet_frames(
            self.parser,
            PacketType::Event,
            nsp,
            Some(ack_id),
            data,
            attachments,
        )?;
        if !compress {
            frames = frames.into_iter().map(Frame::plain).collect();
        }
        self.send(SocketIoCommand::EmitWithAck {
            nsp: nsp.to_owned(),
            opts: BroadcastOptions {
                rooms: rooms.unwrap_or_default(),
                except: skip.unwrap_or_default(),
                ..BroadcastOptions::default()
            },
            frames,
            ack_id,
        })
    }

    /// Sends an ACK packet (`data` is the JSON array of arguments).
    #[pyo3(signature = (nsp, sid, ack_id, data, attachments = None))]
    fn ack(
        &self,
        nsp: &str,
        sid: String,
        ack_id: u64,
        data: &[u8],
        attachments: Option<Vec<Vec<u8>>>,
    ) -> PyResult<()> {
        let frames = packet_frames(
            self.parser,
            PacketType::Ack,
            nsp,
            Some(ack_id),
            data,
            attachments,
        )?;
        self.send(SocketIoCommand::Emit {
            nsp: nsp.to_owned(),
            target: Target::Socket(sid),
            frames,
        })
    }

    fn accept(&self, nsp: String, sid: String) -> PyResult<()> {
        self.send(SocketIoCommand::Accept { nsp, sid })
    }

    /// Refuses a CONNECT; `data` is the CONNECT_ERROR JSON object.
    fn reject(&self, nsp: String, sid: String, data: &[u8]) -> PyResult<()> {
        if std::str::from_utf8(data).is_err() {
            return Err(PyValueError::new_err("reject data must be UTF-8 JSON"));
        }
        self.send(SocketIoCommand::Reject {
            nsp,
            sid,
            data: Bytes::copy_from_slice(data),
        })
    }

    fn join(&self, nsp: String, sid: String, room: String) -> PyResult<()> {
        self.send(SocketIoCommand::Join { nsp, sid, room })
    }

    fn leave(&self, nsp: String, sid: String, room: String) -> PyResult<()> {
        self.send(SocketIoCommand::Leave { nsp, sid, room })
    }

    fn close_room(&self, nsp: String, room: String) -> PyResult<()> {
        self.send(SocketIoCommand::CloseRoom { nsp, room })
    }

    fn disconnect(&self, nsp: String, sid: String) -> PyResult<()> {
        self.send(SocketIoCommand::Disconnect { nsp, sid })
    }

    /// Closes the whole connection of a socket as a protocol error (its client sent an
    /// event the host cannot decode).
    fn abort(&self, nsp: String, sid: String) -> PyResult<()> {
        self.send(SocketIoCommand::Abort { nsp, sid })
    }

    /// Makes the sockets in any of `rooms` (all when empty) minus `skip` join `join`; in a
    /// cluster on every server unless `local` (Node's `socketsJoin`).
    #[pyo3(signature = (nsp, join, *, rooms = None, skip = None, local = false))]
    fn sockets_join(
        &self,
        nsp: String,
        join: Vec<String>,
        rooms: Option<Vec<String>>,
        skip: Option<Vec<String>>,
        local: bool,
    ) -> PyResult<()> {
        let opts = selection(rooms, skip, local);
        self.send(SocketIoCommand::SocketsJoin {
            nsp,
            opts,
            rooms: join,
        })
    }

    /// As `sockets_join`, leaving `leave` (Node's `socketsLeave`).
    #[pyo3(signature = (nsp, leave, *, rooms = None, skip = None, local = false))]
    fn sockets_leave(
        &self,
        nsp: String,
        leave: Vec<String>,
        rooms: Option<Vec<String>>,
        skip: Option<Vec<String>>,
        local: bool,
    ) -> PyResult<()> {
        let opts = selection(rooms, skip, local);
        self.send(SocketIoCommand::SocketsLeave {
            nsp,
            opts,
            rooms: leave,
        })
    }

    /// Disconnects the selected sockets from `nsp` (Node's `disconnectSockets`).
    #[pyo3(signature = (nsp, *, rooms = None, skip = None, local = false))]
    fn disconnect_sockets(
        &self,
        nsp: String,
        rooms: Option<Vec<String>>,
        skip: Option<Vec<String>>,
        local: bool,
    ) -> PyResult<()> {
        let opts = selection(rooms, skip, local);
        self.send(SocketIoCommand::DisconnectSockets {
            nsp,
            opts,
            close: false,
        })
    }

    /// The sockets in any of `rooms` (all when empty) minus `skip`, each as `(sid, rooms)`
    /// (its own sid first), on this server only; waits for the engine without the GIL.
    #[pyo3(signature = (nsp, *, rooms = None, skip = None))]
    fn fetch_sockets(
        &self,
        py: Python<'_>,
        nsp: String,
        rooms: Option<Vec<String>>,
        skip: Option<Vec<String>>,
    ) -> PyResult<Vec<(String, Vec<String>)>> {
        self.flush_batch()?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let opts = selection(rooms, skip, true);
        let asked = self
            .handle
            .command(SocketIoCommand::FetchSockets { nsp, opts, reply }.into());
        if asked.is_err() {
            return Ok(Vec::new());
        }
        Ok(py.detach(move || answer.recv().unwrap_or_default()))
    }

    /// Every room of `nsp` on this server, sid rooms included; waits without the GIL.
    fn all_rooms(&self, py: Python<'_>, nsp: String) -> PyResult<Vec<String>> {
        self.flush_batch()?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let asked = self
            .handle
            .command(SocketIoCommand::AllRooms { nsp, reply }.into());
        if asked.is_err() {
            return Ok(Vec::new());
        }
        Ok(py.detach(move || answer.recv().unwrap_or_default()))
    }

    /// This server's id among the nodes of its cluster; None when not in one.
    fn cluster_uid(&self) -> Option<String> {
        self.handle.cluster_uid().map(str::to_owned)
    }

    /// Publishes a request (JSON with placeholders for `attachments`) to the nodes of `nsp`,
    /// counting them first; a `CONTROL_CLUSTER_SENT` record with `token` follows. False: the
    /// link's queue is full (nothing sent).
    #[pyo3(signature = (nsp, data, token, *, attachments = None))]
    fn cluster_request(
        &self,
        nsp: &str,
        data: &[u8],
        token: u64,
        attachments: Option<Vec<Vec<u8>>>,
    ) -> PyResult<bool> {
        let attachments = to_bytes(attachments);
        self.handle
            .cluster_request(nsp, data, &attachments, token)
            .map_err(to_pyerr)
    }

    /// Publishes a message on the request channel of `nsp` (`to=None, response=False`), its
    /// response channel (`response=True`), or the response channel of node `to`. False: the
    /// link's queue is full (nothing sent).
    #[pyo3(signature = (nsp, data, *, response = false, to = None, attachments = None))]
    fn cluster_message(
        &self,
        nsp: &str,
        data: &[u8],
        response: bool,
        to: Option<String>,
        attachments: Option<Vec<Vec<u8>>>,
    ) -> PyResult<bool> {
        let channel = match (to, response) {
            (Some(uid), _) => ClusterChannel::ResponseTo(uid),
            (None, true) => ClusterChannel::Response,
            (None, false) => ClusterChannel::Request,
        };
        let attachments = to_bytes(attachments);
        self.handle
            .cluster_message(nsp, &channel, data, &attachments)
            .map_err(to_pyerr)
    }

    /// The rooms of a socket, its own sid first; `[]` for an unknown socket or a stopped
    /// server. Exact: the commands sent before (held batch included) are applied first, as
    /// the engine thread applies commands in order; waits for its answer without the GIL.
    fn rooms(&self, py: Python<'_>, nsp: String, sid: String) -> PyResult<Vec<String>> {
        self.flush_batch()?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let asked = self
            .handle
            .command(SocketIoCommand::Rooms { nsp, sid, reply }.into());
        if asked.is_err() {
            return Ok(Vec::new());
        }
        // A stopping engine drops the question unanswered: the channel closes, no hang.
        Ok(py.detach(move || answer.recv().unwrap_or_default()))
    }

    /// Sends a message on the bare Engine.IO endpoint: `str` as text, `bytes` as binary.
    fn engineio_send(&self, sid: String, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let frame = if let Ok(text) = data.cast::<pyo3::types::PyString>() {
            let text = text.to_str()?;
            let mut buf = Vec::with_capacity(text.len() + 1);
            buf.push(b'4');
            buf.extend_from_slice(text.as_bytes());
            Frame::Text(Bytes::from(buf))
        } else if let Ok(bytes) = data.cast::<PyBytes>() {
            Frame::Binary(Bytes::copy_from_slice(bytes.as_bytes()))
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "data must be str or bytes",
            ));
        };
        self.send(EngineIoCommand::Send {
            sid,
            frames: vec![frame],
        })
    }

    /// Closes a session of the bare Engine.IO endpoint.
    fn engineio_close(&self, sid: String) -> PyResult<()> {
        self.send(EngineIoCommand::Close { sid })
    }

    /// Answers an authorization question (`CONTROL_AUTHORIZE`); the request waits for this.
    fn authorize(&self, id: u64, origin_ok: bool, request_ok: bool) -> PyResult<()> {
        self.send(ControlCommand::Authorize {
            id,
            origin_ok,
            request_ok,
        })
    }

    /// Hands over one HTTP request of the host's web server (no listener: `host=None`); the
    /// answer comes as a `CONTROL_RESPONSE` record with `id`. `path` excludes any mount
    /// prefix; `remote`/`local` are `(ip, port)` when known.
    #[pyo3(signature = (id, method, path, query, headers, body, remote = None, local = None))]
    #[allow(clippy::too_many_arguments)]
    fn external_http(
        &self,
        id: u64,
        method: String,
        path: String,
        query: String,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: &[u8],
        remote: Option<(String, u16)>,
        local: Option<(String, u16)>,
    ) -> PyResult<()> {
        let req = external_request(method, path, query, headers, body, remote, local);
        self.handle.external_http(id, req).map_err(to_pyerr)
    }

    /// Hands over a WebSocket request; answered by a `CONTROL_RESPONSE` record with `id`
    /// (status 101: accept the WebSocket; anything else: refuse it with that answer).
    #[pyo3(signature = (id, path, query, headers, remote = None, local = None))]
    fn external_ws_open(
        &self,
        id: u64,
        path: String,
        query: String,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        remote: Option<(String, u16)>,
        local: Option<(String, u16)>,
    ) -> PyResult<()> {
        let req = external_request("GET".into(), path, query, headers, b"", remote, local);
        self.handle.external_ws_open(id, req).map_err(to_pyerr)
    }

    /// One message of WebSocket `id` (`str`: text, `bytes`: binary). Returns what to do now:
    /// None (nothing), a `str` to send at once, or an `int`: close with that code.
    fn external_ws_receive<'py>(
        &self,
        py: Python<'py>,
        id: u64,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let msg = if let Ok(text) = data.cast::<pyo3::types::PyString>() {
            ExternalMessage::Text(Bytes::copy_from_slice(text.to_str()?.as_bytes()))
        } else if let Ok(bytes) = data.cast::<PyBytes>() {
            ExternalMessage::Binary(Bytes::copy_from_slice(bytes.as_bytes()))
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "data must be str or bytes",
            ));
        };
        Ok(match self.handle.external_ws_receive(id, msg) {
            Reply::Nothing => None,
            Reply::Send(text) => Some(pyo3::types::PyString::new(py, text).into_any()),
            Reply::Close(code) => Some(code.into_pyobject(py)?.into_any()),
        })
    }

    /// What WebSocket `id` has to send (`str` text frames, `bytes` binary ones) and whether
    /// to close it after them. Answers its `CONTROL_READY` record.
    fn external_ws_take<'py>(
        &self,
        py: Python<'py>,
        id: u64,
    ) -> PyResult<(Bound<'py, PyList>, bool)> {
        let (frames, close) = self.handle.external_ws_take(id);
        let out = PyList::empty(py);
        for frame in &frames {
            match frame {
                Frame::Text(b) | Frame::PlainText(b) => match std::str::from_utf8(b) {
                    Ok(text) => out.append(pyo3::types::PyString::new(py, text))?,
                    Err(_) => out.append(PyBytes::new(py, b))?,
                },
                Frame::Binary(b) | Frame::PlainBinary(b) => out.append(PyBytes::new(py, b))?,
            }
        }
        Ok((out, close))
    }

    /// The host's side of WebSocket `id` ended (client gone, or the host is done with it).
    fn external_ws_close(&self, id: u64) {
        self.handle.external_ws_close(id);
    }

    // ---- forwarded HTTP (one port beside an ASGI app; see `HTTP_REQUEST`) ----

    /// The head of the answer to forwarded request `id`: status and `(name, value)` headers.
    fn http_start(&self, id: u64, status: u16, headers: Vec<(Vec<u8>, Vec<u8>)>) -> PyResult<()> {
        let headers = headers
            .into_iter()
            .map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
            .collect();
        self.send(HttpCommand::Start {
            id,
            status,
            headers,
        })
    }

    /// A body chunk of the answer to `id`; `more=False` ends it. At most `HTTP_BODY_CREDIT`
    /// chunks with `more=True` may be unwritten (see `HTTP_WRITTEN`), else the answer is aborted.
    fn http_body(&self, id: u64, data: &[u8], more: bool) -> PyResult<()> {
        self.send(HttpCommand::Body {
            id,
            data: Bytes::copy_from_slice(data),
            more,
        })
    }

    /// The application failed on `id`: 500 before the head, else the connection is cut.
    fn http_abort(&self, id: u64) -> PyResult<()> {
        self.send(HttpCommand::Abort { id })
    }

    /// Holds commands back until `end_batch`, which sends them as one message: a drain that
    /// answers fifty events wakes the engine thread once, not fifty times. Order is kept.
    fn begin_batch(&self) -> PyResult<()> {
        let mut batch = self
            .batch
            .lock()
            .map_err(|_| FerrosioError::new_err("batch lock poisoned"))?;
        if batch.is_none() {
            *batch = Some(Vec::new());
        }
        Ok(())
    }

    /// Sends the commands held since `begin_batch`.
    fn end_batch(&self) -> PyResult<()> {
        let held = self
            .batch
            .lock()
            .map_err(|_| FerrosioError::new_err("batch lock poisoned"))?
            .take();
        match held {
            Some(cmds) if !cmds.is_empty() => {
                self.handle.command(Command::Batch(cmds)).map_err(to_pyerr)
            }
            _ => Ok(()),
        }
    }

    /// Graceful shutdown: flushes queued packets, closes every session, joins the thread.
    #[pyo3(signature = (timeout_ms = 5_000))]
    fn shutdown(&self, py: Python<'_>, timeout_ms: u64) {
        py.detach(|| self.handle.shutdown(Duration::from_millis(timeout_ms)));
    }
}

impl PyServerHandle {
    /// For the client binding: in-process connections to this server.
    fn in_process(&self) -> ferrosio_core::InProcessServer {
        self.handle.in_process()
    }

    fn send(&self, cmd: impl Into<Command>) -> PyResult<()> {
        let cmd = cmd.into();
        if let Some(batch) = self
            .batch
            .lock()
            .map_err(|_| FerrosioError::new_err("batch lock poisoned"))?
            .as_mut()
        {
            batch.push(cmd);
            return Ok(());
        }
        self.handle.command(cmd).map_err(to_pyerr)
    }

    /// Sends what an open batch holds so far; the batch stays open.
    fn flush_batch(&self) -> PyResult<()> {
        let held = match self
            .batch
            .lock()
            .map_err(|_| FerrosioError::new_err("batch lock poisoned"))?
            .as_mut()
        {
            Some(batch) if !batch.is_empty() => std::mem::take(batch),
            _ => return Ok(()),
        };
        // A stopped engine: nothing is listening, and the caller's answer is `[]` anyway.
        let _ = self.handle.command(Command::Batch(held));
        Ok(())
    }
}

/// An `(ip, port)` pair as a socket address; unknown or unparsable: `0.0.0.0:0`.
fn socket_addr(addr: Option<(String, u16)>) -> std::net::SocketAddr {
    addr.and_then(|(ip, port)| {
        ip.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, port))
    })
    .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn external_request(
    method: String,
    path: String,
    query: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: &[u8],
    remote: Option<(String, u16)>,
    local: Option<(String, u16)>,
) -> ExternalRequest {
    ExternalRequest {
        method,
        path,
        query,
        headers: headers
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(&n).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect(),
        body: Bytes::copy_from_slice(body),
        remote: socket_addr(remote),
        local: socket_addr(local),
    }
}

fn socketio_record<'py>(py: Python<'py>, item: &SocketIoInbound) -> PyResult<Bound<'py, PyTuple>> {
    match item {
        SocketIoInbound::Event {
            sid,
            nsp,
            ack_id,
            data,
            attachments,
        } => message_record(py, SOCKETIO_EVENT, &**sid, nsp, *ack_id, data, attachments),
        SocketIoInbound::Ack {
            sid,
            nsp,
            ack_id,
            data,
            attachments,
        } => message_record(
            py,
            SOCKETIO_ACK,
            &**sid,
            nsp,
            Some(*ack_id),
            data,
            attachments,
        ),
        SocketIoInbound::Connect {
            sid,
            nsp,
            eio_sid,
            auth,
            handshake: hs,
            recovered,
        } => {
            let auth = if auth.is_empty() {
                None
            } else {
                Some(PyBytes::new(py, auth))
            };
            (
                SOCKETIO_CONNECT,
                &**sid,
                &**nsp,
                &**eio_sid,
                auth,
                handshake(py, hs)?,
                *recovered,
            )
                .into_pyobject(py)
        }
        SocketIoInbound::Kept { sid, nsp } => (SOCKETIO_KEPT, &**sid, &**nsp).into_pyobject(py),
        SocketIoInbound::RoomRefused {
            sid,
            nsp,
            room,
            total,
        } => (SOCKETIO_ROOM_REFUSED, &**sid, &**nsp, &**room, *total).into_pyobject(py),
        SocketIoInbound::Disconnect { sid, nsp, reason } => {
            (SOCKETIO_DISCONNECT, &**sid, &**nsp, reason.as_str()).into_pyobject(py)
        }
        SocketIoInbound::BroadcastReach {
            nsp,
            ack_id,
            clients,
        } => (SOCKETIO_BROADCAST_REACH, &**nsp, *ack_id, *clients).into_pyobject(py),
    }
}

fn engineio_record<'py>(py: Python<'py>, item: &EngineIoInbound) -> PyResult<Bound<'py, PyTuple>> {
    match item {
        EngineIoInbound::Open { sid, handshake: hs } => {
            (ENGINEIO_OPEN, &**sid, handshake(py, hs)?).into_pyobject(py)
        }
        EngineIoInbound::Message { sid, data, binary } => {
            let data = if *binary {
                PyBytes::new(py, data).into_any()
            } else {
                pyo3::types::PyString::new(py, &String::from_utf8_lossy(data)).into_any()
            };
            (ENGINEIO_MESSAGE, &**sid, data).into_pyobject(py)
        }
        EngineIoInbound::Close { sid, reason } => {
            (ENGINEIO_CLOSE, &**sid, reason.as_str()).into_pyobject(py)
        }
    }
}

/// `(HTTP_REQUEST, id, handshake, http_version, body)`, `(HTTP_WRITTEN, id)`, `(HTTP_CLOSED, id)`.
fn http_record<'py>(py: Python<'py>, item: &HttpInbound) -> PyResult<Bound<'py, PyTuple>> {
    match item {
        HttpInbound::Request {
            id,
            head,
            http_version,
            body,
        } => (
            HTTP_REQUEST,
            *id,
            handshake(py, head)?,
            *http_version,
            PyBytes::new(py, body),
        )
            .into_pyobject(py),
        HttpInbound::Written { id } => (HTTP_WRITTEN, *id).into_pyobject(py),
        HttpInbound::Closed { id } => (HTTP_CLOSED, *id).into_pyobject(py),
    }
}

/// Encodes a Socket.IO packet as Engine.IO message text (codec entry point for benchmarks).
#[pyfunction]
#[pyo3(signature = (kind, nsp, data, ack_id = None, attachments = 0))]
fn encode_packet<'py>(
    py: Python<'py>,
    kind: u8,
    nsp: &str,
    data: &[u8],
    ack_id: Option<u64>,
    attachments: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = match kind {
        0 => PacketType::Connect,
        1 => PacketType::Disconnect,
        2 => PacketType::Event,
        3 => PacketType::Ack,
        4 => PacketType::ConnectError,
        5 => PacketType::BinaryEvent,
        6 => PacketType::BinaryAck,
        _ => return Err(PyValueError::new_err(format!("unknown packet type {kind}"))),
    };
    // Attachments only travel with the binary types: upgrade EVENT/ACK, refuse the rest.
    let kind = match (kind, attachments) {
        (k, 0) => k,
        (PacketType::Event | PacketType::BinaryEvent, _) => PacketType::BinaryEvent,
        (PacketType::Ack | PacketType::BinaryAck, _) => PacketType::BinaryAck,
        (k, _) => {
            return Err(PyValueError::new_err(format!(
                "packet type {} cannot carry attachments",
                k as u8
            )))
        }
    };
    Ok(PyBytes::new(
        py,
        &encode_message(kind, nsp, ack_id, attachments, data),
    ))
}

/// Joins Engine.IO packets into one polling payload (codec entry point for benchmarks):
/// `str` items are packet text (`4hello`), `bytes` items binary messages (`b<base64>`).
#[pyfunction]
fn encode_payload<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut frames = Vec::with_capacity(items.len());
    for item in items.iter() {
        if let Ok(text) = item.cast::<pyo3::types::PyString>() {
            frames.push(Frame::Text(Bytes::copy_from_slice(
                text.to_str()?.as_bytes(),
            )));
        } else if let Ok(data) = item.cast::<PyBytes>() {
            frames.push(Frame::Binary(Bytes::copy_from_slice(data.as_bytes())));
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "items must be str or bytes",
            ));
        }
    }
    Ok(PyBytes::new(
        py,
        &ferrosio_core::codec::encode_payload(&frames),
    ))
}

/// Splits a polling payload into packets: `str` packet text, `bytes` for binary messages.
/// Raises ValueError on malformed input.
#[pyfunction]
fn decode_payload<'py>(py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyList>> {
    use ferrosio_core::codec::{EnginePacket, RECORD_SEPARATOR};
    let body = Bytes::copy_from_slice(body);
    // Validate the whole payload first, exactly as the server does.
    let packets =
        EnginePacket::decode_payload(&body).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let out = PyList::empty(py);
    for (packet, record) in packets
        .into_iter()
        .zip(body.split(|b| *b == RECORD_SEPARATOR))
    {
        match packet {
            EnginePacket::Binary(data) => out.append(PyBytes::new(py, &data))?,
            _ => out.append(
                std::str::from_utf8(record).map_err(|e| PyValueError::new_err(e.to_string()))?,
            )?,
        }
    }
    Ok(out)
}

/// Decodes Socket.IO packet text (without the Engine.IO `4`) into
/// `(type, nsp, ack_id, attachments, data)`; raises ValueError on malformed input.
#[pyfunction]
fn decode_packet<'py>(py: Python<'py>, text: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let p = SocketPacket::decode(Bytes::copy_from_slice(text))
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let nsp = std::str::from_utf8(&p.nsp).map_err(|e| PyValueError::new_err(e.to_string()))?;
    (
        p.kind as u8,
        nsp,
        p.ack_id,
        p.attachments,
        PyBytes::new(py, &p.data),
    )
        .into_pyobject(py)
}

#[pymodule(gil_used = false)]
mod _ferrosio {
    #[pymodule_export]
    use super::client::PyClientHandle;
    #[pymodule_export]
    use super::{PyHandshake, PyRedisPublisher, PyServerHandle};

    use super::*;

    /// The codec on its own, for benchmarks: not part of the server or client API.
    #[pymodule]
    mod codec {
        #[pymodule_export]
        use super::super::{decode_packet, decode_payload, encode_packet, encode_payload};
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("FerrosioError", m.py().get_type::<FerrosioError>())?;
        m.add(
            "EngineNotRunningError",
            m.py().get_type::<EngineNotRunningError>(),
        )?;
        m.add("SOCKETIO_CONNECT", SOCKETIO_CONNECT)?;
        m.add("SOCKETIO_EVENT", SOCKETIO_EVENT)?;
        m.add("SOCKETIO_ACK", SOCKETIO_ACK)?;
        m.add("SOCKETIO_DISCONNECT", SOCKETIO_DISCONNECT)?;
        m.add("ENGINEIO_OPEN", ENGINEIO_OPEN)?;
        m.add("ENGINEIO_MESSAGE", ENGINEIO_MESSAGE)?;
        m.add("ENGINEIO_CLOSE", ENGINEIO_CLOSE)?;
        m.add("CONTROL_AUTHORIZE", CONTROL_AUTHORIZE)?;
        m.add("SOCKETIO_BROADCAST_REACH", SOCKETIO_BROADCAST_REACH)?;
        m.add("CONTROL_CLUSTER", CONTROL_CLUSTER)?;
        m.add("CONTROL_RESPONSE", CONTROL_RESPONSE)?;
        m.add("CONTROL_READY", CONTROL_READY)?;
        m.add("HTTP_REQUEST", HTTP_REQUEST)?;
        m.add("SOCKETIO_KEPT", SOCKETIO_KEPT)?;
        m.add("SOCKETIO_ROOM_REFUSED", SOCKETIO_ROOM_REFUSED)?;
        m.add("HTTP_WRITTEN", HTTP_WRITTEN)?;
        m.add("HTTP_CLOSED", HTTP_CLOSED)?;
        m.add("HTTP_BODY_CREDIT", ferrosio_core::HTTP_BODY_CREDIT)?;
        m.add("CONTROL_CLUSTER_MESSAGE", CONTROL_CLUSTER_MESSAGE)?;
        m.add("CONTROL_CLUSTER_SENT", CONTROL_CLUSTER_SENT)?;
        Ok(())
    }
}
