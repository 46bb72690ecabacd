//! Which Socket.IO parser a server or client speaks, chosen once at construction: the default
//! one (JSON text, binary attachments as extra messages, [`super::packet`]) or the msgpack one
//! ([`super::msgpack`]). A JSON server pays one enum comparison per packet for the choice.

use bytes::Bytes;

use super::msgpack;
use super::packet::{
    encode_connect_error, encode_connect_reply, encode_connect_reply_with_pid, encode_disconnect,
    encode_message, PacketType,
};
use crate::engineio::packet::Frame;
use crate::error::ProtocolError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parser {
    /// socket.io-parser (the default of every official client and server).
    #[default]
    Json,
    /// socket.io-msgpack-parser: one binary message per packet.
    MsgPack,
}

impl Parser {
    /// The frames of one outbound EVENT or ACK: `data` is its JSON, with a placeholder for
    /// each of `attachments`. Fails only on data that is not JSON (msgpack converts it).
    pub fn packet_frames(
        self,
        kind: PacketType,
        nsp: &str,
        ack_id: Option<u64>,
        data: &[u8],
        attachments: Vec<Bytes>,
    ) -> Result<Vec<Frame>, ProtocolError> {
        let kind = match (kind, attachments.is_empty()) {
            (PacketType::Event, false) => PacketType::BinaryEvent,
            (PacketType::Ack, false) => PacketType::BinaryAck,
            (k, _) => k,
        };
        match self {
            Parser::Json => {
                let mut frames = Vec::with_capacity(1 + attachments.len());
                frames.push(Frame::Text(encode_message(
                    kind,
                    nsp,
                    ack_id,
                    attachments.len(),
                    data,
                )));
                frames.extend(attachments.into_iter().map(Frame::Binary));
                Ok(frames)
            }
            Parser::MsgPack => Ok(vec![Frame::Binary(msgpack::encode(
                kind,
                nsp,
                ack_id,
                data,
                &attachments,
            )?)]),
        }
    }

    /// A client's CONNECT with its auth object's JSON (empty: none).
    pub fn connect(self, nsp: &str, auth: &[u8]) -> Result<Frame, ProtocolError> {
        match self {
            Parser::Json => Ok(Frame::Text(encode_message(
                PacketType::Connect,
                nsp,
                None,
                0,
                auth,
            ))),
            Parser::MsgPack => Ok(Frame::Binary(msgpack::encode(
                PacketType::Connect,
                nsp,
                None,
                auth,
                &[],
            )?)),
        }
    }

    /// The server's CONNECT reply, `{"sid": sid}`, and `"pid"` with connection state recovery.
    pub fn connect_reply(self, nsp: &str, sid: &str, pid: Option<&str>) -> Frame {
        match (self, pid) {
            (Parser::Json, None) => Frame::Text(encode_connect_reply(nsp, sid)),
            (Parser::Json, Some(pid)) => Frame::Text(encode_connect_reply_with_pid(nsp, sid, pid)),
            (Parser::MsgPack, _) => {
                let data = match pid {
                    None => serde_json::json!({ "sid": sid }),
                    Some(pid) => serde_json::json!({ "sid": sid, "pid": pid }),
                }
                .to_string();
                self.must(PacketType::Connect, nsp, data.as_bytes())
            }
        }
    }

    /// DISCONNECT of a namespace.
    pub fn disconnect(self, nsp: &str) -> Frame {
        match self {
            Parser::Json => Frame::Text(encode_disconnect(nsp)),
            Parser::MsgPack => self.must(PacketType::Disconnect, nsp, b""),
        }
    }

    /// A refused CONNECT; `data` is the JSON object (`{"message": ..., "data": ...}`).
    pub fn connect_error(self, nsp: &str, data: &[u8]) -> Frame {
        match self {
            Parser::Json => Frame::Text(encode_connect_error(nsp, data)),
            Parser::MsgPack => self.must(PacketType::ConnectError, nsp, data),
        }
    }

    /// A msgpack packet the engine itself writes: its JSON comes from the engine or was
    /// checked by the binding, so the conversion cannot fail; if it ever did, the packet goes
    /// without its data rather than not at all.
    fn must(self, kind: PacketType, nsp: &str, data: &[u8]) -> Frame {
        let bytes = msgpack::encode(kind, nsp, None, data, &[])
            .or_else(|_| msgpack::encode(kind, nsp, None, b"", &[]))
            .unwrap_or_default();
        Frame::Binary(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_frames_are_the_codecs() {
        let frames = Parser::Json
            .packet_frames(
                PacketType::Event,
                "/",
                Some(1),
                br#"["a",{"_placeholder":true,"num":0}]"#,
                vec![Bytes::from_static(b"x")],
            )
            .unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Text(Bytes::from_static(
                    br#"451-1["a",{"_placeholder":true,"num":0}]"#
                )),
                Frame::Binary(Bytes::from_static(b"x"))
            ]
        );
        assert_eq!(
            Parser::Json.connect_reply("/", "s", None),
            Frame::Text(Bytes::from_static(br#"40{"sid":"s"}"#))
        );
    }

    #[test]
    fn msgpack_frames_are_one_binary_message_each() {
        let frames = Parser::MsgPack
            .packet_frames(
                PacketType::Event,
                "/",
                None,
                br#"["a",{"_placeholder":true,"num":0}]"#,
                vec![Bytes::from_static(b"x")],
            )
            .unwrap();
        let [Frame::Binary(b)] = frames.as_slice() else {
            panic!("{frames:?}")
        };
        let (p, attachments) = msgpack::decode(b, 10).unwrap();
        assert_eq!(p.kind, PacketType::BinaryEvent);
        assert_eq!(attachments, [Bytes::from_static(b"x")]);
        for frame in [
            Parser::MsgPack.connect_reply("/a", "s", None),
            Parser::MsgPack.disconnect("/a"),
            Parser::MsgPack.connect_error("/a", br#"{"message":"no"}"#),
            Parser::MsgPack.connect("/a", br#"{"t":1}"#).unwrap(),
        ] {
            let Frame::Binary(b) = frame else { panic!() };
            let (p, _) = msgpack::decode(&b, 10).unwrap();
            assert_eq!(&p.nsp[..], b"/a");
        }
        assert!(Parser::MsgPack
            .packet_frames(PacketType::Event, "/", None, b"nope", Vec::new())
            .is_err());
    }
}
