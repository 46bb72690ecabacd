//! Binary packet reassembly, shared by the server layer and the client: a BINARY_EVENT or
//! BINARY_ACK announces `n` attachments, which arrive as the next `n` binary messages.
//!
//! Bounded, since the peer chooses `n` and the sizes: at most `max_attachments` per packet, at
//! most `max_bytes` of attachments per packet (its text is bounded by the transport's own
//! message limit, as each attachment is), and complete by a deadline
//! (checked by the owner's timer, e.g. at each heartbeat tick). Exceeding one is a protocol
//! error: the owner closes that connection.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::packet::SocketPacket;
use crate::error::ProtocolError;

/// Bounds on one binary packet in reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// Most attachments one packet may announce (Node's socket.io-parser default: 10).
    pub max_attachments: usize,
    /// Most bytes of one packet's attachments together.
    pub max_bytes: usize,
    /// How long the attachments of one packet may take to arrive, from its text.
    pub timeout: Duration,
}

impl AttachmentLimits {
    pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for AttachmentLimits {
    /// 10 attachments, 1 MB (the default `max_http_buffer_size`), 30 s.
    fn default() -> Self {
        AttachmentLimits {
            max_attachments: Self::DEFAULT_MAX_ATTACHMENTS,
            max_bytes: 1_000_000,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// A binary packet waiting for its attachments.
struct Partial {
    packet: SocketPacket,
    attachments: Vec<Bytes>,
    bytes: usize,
    deadline: Instant,
}

/// A packet with all its attachments.
pub type Assembled = (SocketPacket, Vec<Bytes>);

/// Reassembly state of one connection. Boxed while a packet is pending, so an idle connection
/// pays one pointer for it.
#[derive(Default)]
pub struct Assembler {
    partial: Option<Box<Partial>>,
}

impl Assembler {
    /// A text message (without the Engine.IO `4`). `Ok(None)`: a binary packet started and
    /// waits for its attachments.
    pub fn on_text(
        &mut self,
        text: Bytes,
        limits: &AttachmentLimits,
    ) -> Result<Option<Assembled>, ProtocolError> {
        if self.partial.is_some() {
            return Err(ProtocolError::MissingAttachments);
        }
        let packet = SocketPacket::decode(text)?;
        let expected = packet.attachments as usize;
        if expected == 0 {
            return Ok(Some((packet, Vec::new())));
        }
        if expected > limits.max_attachments {
            return Err(ProtocolError::TooManyAttachments(expected as u64));
        }
        self.partial = Some(Box::new(Partial {
            packet,
            attachments: Vec::with_capacity(expected),
            bytes: 0,
            deadline: Instant::now() + limits.timeout,
        }));
        Ok(None)
    }

    /// A binary message: the next attachment of the pending packet.
    pub fn on_binary(
        &mut self,
        data: Bytes,
        limits: &AttachmentLimits,
    ) -> Result<Option<Assembled>, ProtocolError> {
        let partial = self
            .partial
            .as_mut()
            .ok_or(ProtocolError::UnexpectedAttachment)?;
        partial.bytes += data.len();
        if partial.bytes > limits.max_bytes {
            self.partial = None;
            return Err(ProtocolError::PacketTooLarge(limits.max_bytes));
        }
        partial.attachments.push(data);
        if partial.attachments.len() < partial.packet.attachments as usize {
            return Ok(None);
        }
        let Partial {
            packet,
            attachments,
            ..
        } = *self.partial.take().expect("checked above");
        Ok(Some((packet, attachments)))
    }

    /// Err if a pending packet's attachments are overdue at `now`.
    pub fn check_deadline(&self, now: Instant) -> Result<(), ProtocolError> {
        match &self.partial {
            Some(p) if now >= p.deadline => Err(ProtocolError::AttachmentTimeout),
            _ => Ok(()),
        }
    }

    #[cfg(test)]
    pub fn is_pending(&self) -> bool {
        self.partial.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::packet::PacketType;

    fn text(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    const TWO: &str =
        "52-[\"up\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";

    #[test]
    fn plain_packets_pass_through() {
        let mut a = Assembler::default();
        let (p, atts) = a
            .on_text(text("2[\"x\"]"), &AttachmentLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(p.kind, PacketType::Event);
        assert!(atts.is_empty());
        let (p, _) = a
            .on_text(text("50-[\"x\"]"), &AttachmentLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            p.kind,
            PacketType::BinaryEvent,
            "zero attachments: complete at once"
        );
    }

    #[test]
    fn attachments_complete_the_packet_in_order() {
        let limits = AttachmentLimits::default();
        let mut a = Assembler::default();
        assert!(a.on_text(text(TWO), &limits).unwrap().is_none());
        assert_eq!(
            a.on_text(text("2[\"x\"]"), &limits),
            Err(ProtocolError::MissingAttachments)
        );
        assert!(a
            .on_binary(Bytes::from_static(&[1]), &limits)
            .unwrap()
            .is_none());
        let (p, atts) = a
            .on_binary(Bytes::from_static(&[2]), &limits)
            .unwrap()
            .unwrap();
        assert_eq!(p.attachments, 2);
        assert_eq!(atts, [Bytes::from_static(&[1]), Bytes::from_static(&[2])]);
        assert!(!a.is_pending());
        assert_eq!(
            a.on_binary(Bytes::from_static(&[3]), &limits),
            Err(ProtocolError::UnexpectedAttachment)
        );
    }

    #[test]
    fn too_many_attachments() {
        let limits = AttachmentLimits {
            max_attachments: 1,
            ..AttachmentLimits::default()
        };
        let mut a = Assembler::default();
        assert_eq!(
            a.on_text(text(TWO), &limits),
            Err(ProtocolError::TooManyAttachments(2))
        );
        assert!(!a.is_pending());
    }

    #[test]
    fn too_many_bytes() {
        let limits = AttachmentLimits {
            max_bytes: 10,
            ..AttachmentLimits::default()
        };
        let mut a = Assembler::default();
        assert!(a.on_text(text(TWO), &limits).unwrap().is_none());
        assert!(a
            .on_binary(Bytes::from(vec![0; 10]), &limits)
            .unwrap()
            .is_none());
        assert_eq!(
            a.on_binary(Bytes::from(vec![0; 1]), &limits),
            Err(ProtocolError::PacketTooLarge(10))
        );
        assert!(!a.is_pending(), "the partial packet is dropped");
    }

    #[test]
    fn overdue_attachments() {
        let limits = AttachmentLimits::default();
        let mut a = Assembler::default();
        assert_eq!(a.check_deadline(Instant::now()), Ok(()));
        assert!(a.on_text(text(TWO), &limits).unwrap().is_none());
        assert_eq!(a.check_deadline(Instant::now()), Ok(()));
        let later = Instant::now() + limits.timeout;
        assert_eq!(
            a.check_deadline(later),
            Err(ProtocolError::AttachmentTimeout)
        );
    }
}
