//! What the server and client bindings share: packets built from Python's JSON and attachments,
//! and the message records (events, acks) handed to Python.

use bytes::Bytes;
use ferrosio_core::codec::{PacketType, Parser};
use ferrosio_core::Frame;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

/// Builds the frames of one packet as `parser` writes it (JSON: the text packet, then its
/// binary attachments; msgpack: one binary message).
pub(crate) fn packet_frames(
    parser: Parser,
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    data: &[u8],
    attachments: Option<Vec<Vec<u8>>>,
) -> PyResult<Vec<Frame>> {
    if std::str::from_utf8(data).is_err() {
        return Err(PyValueError::new_err("packet data must be UTF-8 JSON"));
    }
    let attachments: Vec<Bytes> = attachments
        .unwrap_or_default()
        .into_iter()
        .map(Bytes::from)
        .collect();
    parser
        .packet_frames(kind, nsp, ack_id, data, attachments)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// `"default"` (or `"json"`) or `"msgpack"`: python-socketio's `serializer` names.
pub(crate) fn parser_named(name: &str) -> PyResult<Parser> {
    match name {
        "default" | "json" => Ok(Parser::Json),
        "msgpack" => Ok(Parser::MsgPack),
        other => Err(PyValueError::new_err(format!(
            "unknown serializer {other:?} (\"default\" or \"msgpack\")"
        ))),
    }
}

/// `(kind, owner, nsp, ack_id, data, attachments | None)`: an EVENT or ACK record. `owner` is
/// the socket's sid on the server, the connection's generation on the client.
pub(crate) fn message_record<'py>(
    py: Python<'py>,
    kind: u8,
    owner: impl IntoPyObject<'py>,
    nsp: &str,
    ack_id: Option<u64>,
    data: &[u8],
    attachments: &[Bytes],
) -> PyResult<Bound<'py, PyTuple>> {
    (
        kind,
        owner,
        nsp,
        ack_id,
        PyBytes::new(py, data),
        attachment_list(py, attachments)?,
    )
        .into_pyobject(py)
}

/// A record's binary attachments: `None` when there are none (the common case: no list).
pub(crate) fn attachment_list<'py>(
    py: Python<'py>,
    attachments: &[Bytes],
) -> PyResult<Option<Bound<'py, PyList>>> {
    if attachments.is_empty() {
        return Ok(None);
    }
    PyList::new(py, attachments.iter().map(|a| PyBytes::new(py, a))).map(Some)
}
