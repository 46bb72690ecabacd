//! `ClientHandle`: the PyO3 face of ferrosio-core's client engine.
//!
//! As with the `ServerHandle`, every method runs on the asyncio thread and returns at once:
//! commands go on the engine's FIFO queue, `drain` hands over a batch of inbound records.

use std::path::PathBuf;
use std::time::Duration;

use ferrosio_core::codec::{PacketType, Parser};
use ferrosio_core::{
    AttachmentLimits, ClientCommand, ClientError, ClientHandle, ClientInbound, ConnectTarget,
    TlsOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::records::{message_record, packet_frames, parser_named};
use super::{EngineNotRunningError, FerrosioError, PyServerHandle};

const C_OPEN: u8 = 0;
const C_UPGRADED: u8 = 1;
const C_CONNECT: u8 = 2;
const C_CONNECT_ERROR: u8 = 3;
const C_EVENT: u8 = 4;
const C_ACK: u8 = 5;
const C_DISCONNECT: u8 = 6;
const C_CLOSED: u8 = 7;

fn to_pyerr(err: ClientError) -> PyErr {
    match err {
        ClientError::NotRunning => EngineNotRunningError::new_err(err.to_string()),
        other => FerrosioError::new_err(other.to_string()),
    }
}

/// A Socket.IO client connection engine on its own thread (one connection attempt at a time,
/// numbered by the caller with a generation).
#[pyclass(frozen, name = "ClientHandle", module = "ferrosio._ferrosio")]
pub struct PyClientHandle {
    handle: ClientHandle,
    /// The Socket.IO parser of every connection (python-socketio's `serializer`).
    parser: Parser,
}

#[pymethods]
impl PyClientHandle {
    #[classattr]
    const OPEN: u8 = C_OPEN;
    #[classattr]
    const UPGRADED: u8 = C_UPGRADED;
    #[classattr]
    const CONNECT: u8 = C_CONNECT;
    #[classattr]
    const CONNECT_ERROR: u8 = C_CONNECT_ERROR;
    #[classattr]
    const EVENT: u8 = C_EVENT;
    #[classattr]
    const ACK: u8 = C_ACK;
    #[classattr]
    const DISCONNECT: u8 = C_DISCONNECT;
    #[classattr]
    const CLOSED: u8 = C_CLOSED;

    #[new]
    #[pyo3(signature = (serializer = "default"))]
    fn new(serializer: &str) -> PyResult<Self> {
        let parser = parser_named(serializer)?;
        let handle = ClientHandle::start().map_err(to_pyerr)?;
        Ok(PyClientHandle { handle, parser })
    }

    /// The fd that becomes readable when records are waiting.
    fn wake_fd(&self) -> i32 {
        self.handle.wake_fd()
    }

    /// Every waiting record, oldest first, as 6-tuples (see `_ferrosio.pyi`).
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self.handle.drain();
        let out = PyList::empty(py);
        for item in items {
            let t = match item {
                ClientInbound::Event {
                    gen,
                    nsp,
                    ack_id,
                    data,
                    attachments,
                } => message_record(py, C_EVENT, gen, &nsp, ack_id, &data, &attachments)?,
                ClientInbound::Ack {
                    gen,
                    nsp,
                    ack_id,
                    data,
                    attachments,
                } => message_record(py, C_ACK, gen, &nsp, Some(ack_id), &data, &attachments)?,
                ClientInbound::Open {
                    gen,
                    sid,
                    transport,
                    handshake,
                } => (
                    C_OPEN,
                    gen,
                    sid,
                    transport.as_str(),
                    PyBytes::new(py, &handshake),
                    py.None(),
                )
                    .into_pyobject(py)?,
                ClientInbound::Upgraded { gen } => {
                    (C_UPGRADED, gen, "", "websocket", py.None(), py.None()).into_pyobject(py)?
                }
                ClientInbound::Connect { gen, nsp, data } => (
                    C_CONNECT,
                    gen,
                    nsp,
                    py.None(),
                    PyBytes::new(py, &data),
                    py.None(),
                )
                    .into_pyobject(py)?,
                ClientInbound::ConnectError { gen, nsp, data } => (
                    C_CONNECT_ERROR,
                    gen,
                    nsp,
                    py.None(),
                    PyBytes::new(py, &data),
                    py.None(),
                )
                    .into_pyobject(py)?,
                ClientInbound::Disconnect { gen, nsp } => {
                    (C_DISCONNECT, gen, nsp, py.None(), py.None(), py.None()).into_pyobject(py)?
                }
                ClientInbound::Closed {
                    gen,
                    reason,
                    detail,
                } => (C_CLOSED, gen, "", reason.as_str(), detail, py.None()).into_pyobject(py)?,
            };
            out.append(t)?;
        }
        Ok(out)
    }

    /// Starts connection attempt `gen` (closing the current one). With `tls`, every connection
    /// is TLS, the certificate verified (`tls_verify`) against the system's CAs or those of
    /// `tls_ca_file`; a setup or handshake failure ends the attempt with its `CLOSED` record.
    /// Binary packets from the server are bounded by `max_attachments`, `max_attachment_bytes`
    /// and `attachment_timeout_ms`. With `in_process` (a running `ServerHandle` of this
    /// process), the connection is an in-process WebSocket to that server, no socket
    /// (`host`, `port`, `polling`, `upgrade` and the TLS options do not apply).
    #[pyo3(signature = (gen, host, port, path, query = String::new(), headers = None, *, websocket = true, polling = true, upgrade = true, request_timeout_ms = 5_000, tls = false, tls_verify = true, tls_ca_file = None, max_attachments = 10, max_attachment_bytes = 1_000_000, attachment_timeout_ms = 30_000, in_process = None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &self,
        gen: u64,
        host: String,
        port: u16,
        path: String,
        query: String,
        headers: Option<Vec<(String, String)>>,
        websocket: bool,
        polling: bool,
        upgrade: bool,
        request_timeout_ms: u64,
        tls: bool,
        tls_verify: bool,
        tls_ca_file: Option<PathBuf>,
        max_attachments: usize,
        max_attachment_bytes: usize,
        attachment_timeout_ms: u64,
        in_process: Option<Bound<'_, PyServerHandle>>,
    ) -> PyResult<()> {
        if !websocket && !polling {
            return Err(PyValueError::new_err("no transport enabled"));
        }
        let target = ConnectTarget {
            host,
            port,
            path,
            query,
            headers: headers.unwrap_or_default(),
            websocket,
            polling,
            upgrade,
            request_timeout: Duration::from_millis(request_timeout_ms.max(1)),
            tls: tls.then_some(TlsOptions {
                verify: tls_verify,
                ca_file: tls_ca_file,
            }),
            attachment_limits: AttachmentLimits {
                max_attachments,
                max_bytes: max_attachment_bytes,
                timeout: Duration::from_millis(attachment_timeout_ms),
            },
            in_process: in_process.map(|server| server.get().in_process()),
            parser: self.parser,
        };
        self.send(ClientCommand::Connect {
            gen,
            target: Box::new(target),
        })
    }

    /// Sends an EVENT packet (`data` is the JSON array) on connection `gen`.
    #[pyo3(signature = (gen, nsp, data, ack_id = None, attachments = None))]
    fn emit(
        &self,
        gen: u64,
        nsp: &str,
        data: &[u8],
        ack_id: Option<u64>,
        attachments: Option<Vec<Vec<u8>>>,
    ) -> PyResult<()> {
        let frames = packet_frames(
            self.parser,
            PacketType::Event,
            nsp,
            ack_id,
            data,
            attachments,
        )?;
        self.send(ClientCommand::Send { gen, frames })
    }

    /// Sends an ACK packet (`data` is the JSON array of arguments) on connection `gen`.
    #[pyo3(signature = (gen, nsp, ack_id, data, attachments = None))]
    fn ack(
        &self,
        gen: u64,
        nsp: &str,
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
        self.send(ClientCommand::Send { gen, frames })
    }

    /// Sends CONNECT for a namespace, with the auth object's JSON (or none).
    #[pyo3(signature = (gen, nsp, auth = None))]
    fn connect_namespace(&self, gen: u64, nsp: &str, auth: Option<&[u8]>) -> PyResult<()> {
        let auth = auth.unwrap_or_default();
        if std::str::from_utf8(auth).is_err() {
            return Err(PyValueError::new_err("auth must be UTF-8 JSON"));
        }
        let frame = self
            .parser
            .connect(nsp, auth)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.send(ClientCommand::Send {
            gen,
            frames: vec![frame],
        })
    }

    /// Sends DISCONNECT for a namespace.
    fn disconnect_namespace(&self, gen: u64, nsp: &str) -> PyResult<()> {
        let frame = self.parser.disconnect(nsp);
        self.send(ClientCommand::Send {
            gen,
            frames: vec![frame],
        })
    }

    /// Closes connection `gen` after flushing what is queued; a `CLOSED` record follows.
    fn close(&self, gen: u64) -> PyResult<()> {
        self.send(ClientCommand::Close { gen })
    }

    /// Stops the engine thread and joins it.
    fn shutdown(&self, py: Python<'_>) {
        py.detach(|| self.handle.shutdown());
    }
}

impl PyClientHandle {
    fn send(&self, cmd: ClientCommand) -> PyResult<()> {
        self.handle.command(cmd).map_err(to_pyerr)
    }
}
