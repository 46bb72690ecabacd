//! Client-side Socket.IO decoding: server packets become [`ClientInbound`] records, binary
//! packets once all their attachments have arrived.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::socketio::packet::{PacketType, SocketPacket};

use super::ClientInbound;

/// A binary packet waiting for its attachments.
struct Partial {
    packet: SocketPacket,
    nsp: String,
    attachments: Vec<Bytes>,
}

/// Per-connection decoder state (a binary packet in reassembly).
#[derive(Default)]
pub struct SocketDecoder {
    partial: Option<Partial>,
}

impl SocketDecoder {
    /// A text Engine.IO message (without the `4`). `Ok(None)`: a binary packet started.
    pub fn on_text(
        &mut self,
        gen: u64,
        text: Bytes,
    ) -> Result<Option<ClientInbound>, ProtocolError> {
        if self.partial.is_some() {
            return Err(ProtocolError::MissingAttachments);
        }
        let packet = SocketPacket::decode(text)?;
        let nsp = std::str::from_utf8(&packet.nsp)
            .map_err(|_| ProtocolError::BadNamespace)?
            .to_owned();
        if packet.kind.is_binary() && packet.attachments > 0 {
            let n = packet.attachments as usize;
            self.partial = Some(Partial {
                packet,
                nsp,
                attachments: Vec::with_capacity(n),
            });
            return Ok(None);
        }
        Ok(Some(build(gen, packet, nsp, Vec::new())))
    }

    /// A binary Engine.IO message: the next attachment of the pending packet.
    pub fn on_binary(
        &mut self,
        gen: u64,
        data: Bytes,
    ) -> Result<Option<ClientInbound>, ProtocolError> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(ProtocolError::UnexpectedAttachment);
        };
        partial.attachments.push(data);
        if partial.attachments.len() < partial.packet.attachments as usize {
            return Ok(None);
        }
        let Partial {
            packet,
            nsp,
            attachments,
        } = self.partial.take().expect("checked above");
        Ok(Some(build(gen, packet, nsp, attachments)))
    }
}

fn build(gen: u64, p: SocketPacket, nsp: String, attachments: Vec<Bytes>) -> ClientInbound {
    match p.kind {
        PacketType::Connect => ClientInbound::Connect {
            gen,
            nsp,
            data: p.data,
        },
        PacketType::ConnectError => ClientInbound::ConnectError {
            gen,
            nsp,
            data: p.data,
        },
        PacketType::Disconnect => ClientInbound::Disconnect { gen, nsp },
        PacketType::Event | PacketType::BinaryEvent => ClientInbound::Event {
            gen,
            nsp,
            ack_id: p.ack_id,
            data: p.data,
            attachments,
        },
        PacketType::Ack | PacketType::BinaryAck => ClientInbound::Ack {
            gen,
            nsp,
            // validated: an ACK always carries an id
            ack_id: p.ack_id.unwrap_or(0),
            data: p.data,
            attachments,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn plain_packets() {
        let mut d = SocketDecoder::default();
        let Some(ClientInbound::Connect { nsp, data, gen }) =
            d.on_text(3, text("0/admin,{\"sid\":\"x\"}")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (gen, nsp.as_str(), &data[..]),
            (3, "/admin", &b"{\"sid\":\"x\"}"[..])
        );
        let Some(ClientInbound::Event { ack_id, data, .. }) =
            d.on_text(3, text("27[\"a\",1]")).unwrap()
        else {
            panic!()
        };
        assert_eq!((ack_id, &data[..]), (Some(7), &b"[\"a\",1]"[..]));
        assert!(matches!(
            d.on_text(3, text("1/admin,")).unwrap(),
            Some(ClientInbound::Disconnect { .. })
        ));
        assert!(matches!(
            d.on_text(3, text("4/admin,{\"message\":\"unauthorized\"}"))
                .unwrap(),
            Some(ClientInbound::ConnectError { .. })
        ));
    }

    #[test]
    fn binary_reassembly() {
        let mut d = SocketDecoder::default();
        assert!(d
            .on_text(1, text("62-/admin,5[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]"))
            .unwrap()
            .is_none());
        assert_eq!(
            d.on_text(1, text("2[\"x\"]")),
            Err(ProtocolError::MissingAttachments)
        );
        assert!(d.on_binary(1, Bytes::from_static(&[1])).unwrap().is_none());
        let Some(ClientInbound::Ack {
            nsp,
            ack_id,
            attachments,
            ..
        }) = d.on_binary(1, Bytes::from_static(&[2])).unwrap()
        else {
            panic!()
        };
        assert_eq!((nsp.as_str(), ack_id), ("/admin", 5));
        assert_eq!(
            attachments,
            vec![Bytes::from_static(&[1]), Bytes::from_static(&[2])]
        );
        assert_eq!(
            d.on_binary(1, Bytes::from_static(&[3])),
            Err(ProtocolError::UnexpectedAttachment)
        );
    }
}
