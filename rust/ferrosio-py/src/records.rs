//! What the server and client bindings share: packets built from Python's JSON and attachments,
//! and the message records (events, acks) handed to Python.

use bytes::Bytes;
use ferrosio_core::codec::{encode_message, PacketType};
use ferrosio_core::Frame;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

/// Builds the frames of one packet: the text packet, then its binary attachments.
pub(crate) fn packet_frames(
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    data: &[u8],
    attachments: Option<Vec<Vec<u8>>>,
) -> PyResult<Vec<Frame>> {
    if std::str::from_utf8(data).is_err() {
        return Err(PyValueError::new_err("packet data must be UTF-8 JSON"));
    }
    let attachments = attachments.unwrap_or_default();
    let kind = match (kind, attachments.is_empty()) {
        (PacketType::Event, false) => PacketType::BinaryEvent,
        (PacketType::Ack, false) => PacketType::BinaryAck,
        (k, _) => k,
    };
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::Text(encode_message(
        kind,
        nsp,
        ack_id,
        attachments.len(),
        data,
    )));
    frames.extend(
        attachments
            .into_iter()
            .map(|a| Frame::Binary(Bytes::from(a))),
    );
    Ok(frames)
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
    let attachments = if attachments.is_empty() {
        None
    } else {
        Some(PyList::new(
            py,
            attachments.iter().map(|a| PyBytes::new(py, a)),
        )?)
    };
    (
        kind,
        owner,
        nsp,
        ack_id,
        PyBytes::new(py, data),
        attachments,
    )
        .into_pyobject(py)
}
