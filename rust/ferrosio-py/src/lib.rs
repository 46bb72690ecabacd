//! `ferrosio._ferrosio`: the thin PyO3 face of ferrosio-core.
//!
//! Every call here runs on the host (asyncio) thread with the GIL held and returns at once:
//! commands go on the engine's FIFO queue; `drain` hands over a whole batch of inbound events.
//! No Python object ever crosses to the engine thread.

mod client;
mod records;

use std::time::Duration;

use bytes::Bytes;
use std::sync::{Arc, Mutex};

use ferrosio_core::codec::{encode_message, PacketType, SocketPacket};
use ferrosio_core::{
    normalize_path, BroadcastOptions, Command, ControlCommand, ControlInbound, CorsPolicy,
    EngineIoCommand, EngineIoInbound, Frame, Handshake, Inbound, ServerConfig, ServerError,
    ServerHandle, ServerTls, SocketIoCommand, SocketIoInbound, StaticRoute, Target,
};
use records::{message_record, packet_frames};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

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

/// The HTTP request that opened a session, as Python reads it (to build its environ dict).
#[pyclass(frozen, name = "Handshake", module = "ferrosio._ferrosio")]
struct PyHandshake {
    inner: Arc<Handshake>,
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
        let a = self.inner.remote_addr;
        (a.ip().to_string(), a.port())
    }

    /// The server's `(ip, port)` the request came in on.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        let a = self.inner.local_addr;
        (a.ip().to_string(), a.port())
    }
}

fn handshake<'py>(py: Python<'py>, hs: &Arc<Handshake>) -> PyResult<Bound<'py, PyHandshake>> {
    Bound::new(py, PyHandshake { inner: hs.clone() })
}

/// A running server: an HTTP listener and its engine thread.
#[pyclass(frozen, name = "ServerHandle", module = "ferrosio._ferrosio")]
struct PyServerHandle {
    handle: ServerHandle,
    /// Commands held back while a batch is open (see `begin_batch`).
    batch: Mutex<Option<Vec<Command>>>,
}

#[pymethods]
impl PyServerHandle {
    #[new]
    #[pyo3(signature = (host, port, *, path = "/socket.io/", ping_interval_ms = 25_000, ping_timeout_ms = 20_000, max_payload = 1_000_000, connect_timeout_ms = 45_000, websocket = true, polling = true, upgrades = true, engineio_path = None, cors = "same-origin", cors_origins = None, cors_credentials = true, static_files = None, authorize_requests = false, max_attachments = 10, max_attachment_bytes = None, attachment_timeout_ms = 30_000, tls_cert_file = None, tls_key_file = None, tls_client_ca_file = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: &str,
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
        tls_cert_file: Option<std::path::PathBuf>,
        tls_key_file: Option<std::path::PathBuf>,
        tls_client_ca_file: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
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
            tls,
            ..ServerConfig::default()
        };
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let handle = py
            .detach(|| ServerHandle::start(config, &addr))
            .map_err(to_pyerr)?;
        Ok(PyServerHandle {
            handle,
            batch: Mutex::new(None),
        })
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
            };
            out.append(t)?;
        }
        self.handle.recycle(items);
        Ok(out)
    }

    /// Emits an EVENT packet (`data` is the JSON array) to one socket (`to`) or to rooms.
    #[pyo3(signature = (nsp, data, *, to = None, rooms = None, skip = None, attachments = None, ack_id = None))]
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
    ) -> PyResult<()> {
        let frames = packet_frames(PacketType::Event, nsp, ack_id, data, attachments)?;
        let target = match to {
            Some(sid) => Target::Socket(sid),
            None => Target::Broadcast(BroadcastOptions {
                rooms: rooms.unwrap_or_default(),
                except: skip.unwrap_or_default(),
                ..BroadcastOptions::default()
            }),
        };
        self.send(SocketIoCommand::Emit {
            nsp: nsp.to_owned(),
            target,
            frames,
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
        let frames = packet_frames(PacketType::Ack, nsp, Some(ack_id), data, attachments)?;
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
            )
                .into_pyobject(py)
        }
        SocketIoInbound::Disconnect { sid, nsp, reason } => {
            (SOCKETIO_DISCONNECT, &**sid, &**nsp, reason.as_str()).into_pyobject(py)
        }
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
    use super::{PyHandshake, PyServerHandle};

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
        Ok(())
    }
}
