//! Client-side Socket.IO decoding: server packets become [`ClientInbound`] records, binary
//! packets once all their attachments have arrived.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::socketio::assembler::{Assembler, AttachmentLimits};
use crate::socketio::msgpack;
use crate::socketio::packet::{PacketType, SocketPacket};
use crate::socketio::parser::Parser;

use super::ClientInbound;

/// Per-connection decoder state: binary packets in reassembly, within `limits`.
#[derive(Default)]
pub struct SocketDecoder {
    assembler: Assembler,
    limits: AttachmentLimits,
    parser: Parser,
}

impl SocketDecoder {
    pub fn new(limits: AttachmentLimits, parser: Parser) -> Self {
        SocketDecoder {
            assembler: Assembler::default(),
            limits,
            parser,
        }
    }

    /// A text Engine.IO message (without the `4`). `Ok(None)`: a binary packet started.
    pub fn on_text(
        &mut self,
        gen: u64,
        text: Bytes,
    ) -> Result<Option<ClientInbound>, ProtocolError> {
        if self.parser == Parser::MsgPack {
            return Err(ProtocolError::TextWithMsgPack);
        }
        self.assembler
            .on_text(text, &self.limits)?
            .map(|(packet, attachments)| build(gen, packet, attachments))
            .transpose()
    }

    /// A binary Engine.IO message: the next attachment of the pending packet.
    pub fn on_binary(
        &mut self,
        gen: u64,
        data: Bytes,
    ) -> Result<Option<ClientInbound>, ProtocolError> {
        if self.parser == Parser::MsgPack {
            let (packet, attachments) = msgpack::decode(&data, self.limits.max_attachments)?;
            return build(gen, packet, attachments).map(Some);
        }
        self.assembler
            .on_binary(data, &self.limits)?
            .map(|(packet, attachments)| build(gen, packet, attachments))
            .transpose()
    }

    /// Err if a binary packet's attachments are overdue (checked at each server ping).
    pub fn check_deadline(&self, now: std::time::Instant) -> Result<(), ProtocolError> {
        self.assembler.check_deadline(now)
    }
}

fn build(
    gen: u64,
    p: SocketPacket,
    attachments: Vec<Bytes>,
) -> Result<ClientInbound, ProtocolError> {
    let nsp = std::str::from_utf8(&p.nsp)
        .map_err(|_| ProtocolError::BadNamespace)?
        .to_owned();
    Ok(match p.kind {
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
    })
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

    #[test]
    fn reassembly_is_bounded() {
        let mut d = SocketDecoder::new(
            AttachmentLimits {
                max_attachments: 1,
                ..AttachmentLimits::default()
            },
            Parser::Json,
        );
        assert_eq!(
            d.on_text(1, text("52-[\"x\",{\"_placeholder\":true,\"num\":0}]")),
            Err(ProtocolError::TooManyAttachments(2))
        );
        assert!(d
            .on_text(1, text("51-[\"x\",{\"_placeholder\":true,\"num\":0}]"))
            .unwrap()
            .is_none());
        let late = std::time::Instant::now() + AttachmentLimits::DEFAULT_TIMEOUT;
        assert_eq!(
            d.check_deadline(late),
            Err(ProtocolError::AttachmentTimeout)
        );
    }
}
