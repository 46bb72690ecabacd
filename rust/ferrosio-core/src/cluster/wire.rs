//! The messages of `@socket.io/redis-adapter` 8.x and `@socket.io/redis-emitter`, in
//! MessagePack (the npm packages encode with `notepack.io`).
//!
//! A broadcast is published as `[uid, packet, opts]` on `<key>#<nsp>#` (or
//! `<key>#<nsp>#<room>#` when it targets exactly one room), where `packet` is
//! `{type: 2, data: [event, ...args], nsp}` with binary values inline (MessagePack `bin`)
//! and `opts` is `{rooms: [...], except: [...], flags: {...}}`. Our packets travel as
//! Socket.IO frames (JSON text with `{"_placeholder":true,"num":n}` for each binary
//! attachment, then the attachments): this module converts between the two.

use bytes::Bytes;
use rmpv::Value;
use serde_json::Value as Json;
use thiserror::Error;

use crate::engineio::packet::Frame;
use crate::socketio::adapter::{BroadcastFlags, BroadcastOptions};
use crate::socketio::msgpack::{json_to_msgpack, msgpack_to_json};
use crate::socketio::packet::{encode_message, PacketType, SocketPacket};

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum WireError {
    #[error("not a Socket.IO event packet")]
    NotAnEvent,
    #[error("malformed packet: {0}")]
    BadPacket(String),
    #[error("malformed MessagePack message: {0}")]
    BadMessage(String),
}

/// A broadcast that came from another node (or an emitter).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteBroadcast {
    pub uid: String,
    pub nsp: String,
    /// The packet as Socket.IO frames, ready for this node's clients.
    pub frames: Vec<Frame>,
    /// Its target, with `local` set: it must not be published again.
    pub opts: BroadcastOptions,
}

/// The channel every node of `nsp` listens on, by pattern (`<key>#<nsp>#*`).
pub fn broadcast_channel(key: &str, nsp: &str, opts: &BroadcastOptions) -> String {
    match opts.rooms.as_slice() {
        [room] => format!("{key}#{nsp}#{room}#"),
        _ => format!("{key}#{nsp}#"),
    }
}

/// Encodes a broadcast of `frames` (one EVENT packet and its attachments, as built for
/// clients) for the other nodes.
pub fn encode_broadcast(
    uid: &str,
    nsp: &str,
    frames: &[Frame],
    opts: &BroadcastOptions,
) -> Result<Vec<u8>, WireError> {
    let Some(Frame::Text(text) | Frame::PlainText(text)) = frames.first() else {
        return Err(WireError::NotAnEvent);
    };
    // The frame is Engine.IO message text: `4` then the Socket.IO packet.
    let packet =
        SocketPacket::decode(text.slice(1..)).map_err(|e| WireError::BadPacket(e.to_string()))?;
    if !matches!(packet.kind, PacketType::Event | PacketType::BinaryEvent) {
        return Err(WireError::NotAnEvent);
    }
    let data: Json =
        serde_json::from_slice(&packet.data).map_err(|e| WireError::BadPacket(e.to_string()))?;
    let attachments: Vec<&Bytes> = frames[1..].iter().map(Frame::payload).collect();
    let mut map = vec![
        (Value::from("type"), Value::from(PacketType::Event as u8)),
        (Value::from("data"), json_to_msgpack(&data, &attachments)),
        (Value::from("nsp"), Value::from(nsp)),
    ];
    if let Some(id) = packet.ack_id {
        map.push((Value::from("id"), Value::from(id)));
    }
    let mut options = options_value(opts);
    if !frames[0].compressible() {
        set_compress_false(&mut options);
    }
    let message = Value::Array(vec![Value::from(uid), Value::Map(map), options]);
    let mut out = Vec::with_capacity(packet.data.len() + 64);
    rmpv::encode::write_value(&mut out, &message)
        .map_err(|e| WireError::BadMessage(e.to_string()))?;
    Ok(out)
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

fn options_value(opts: &BroadcastOptions) -> Value {
    Value::Map(vec![
        (Value::from("rooms"), strings(&opts.rooms)),
        (Value::from("except"), strings(&opts.except)),
        (Value::from("flags"), Value::Map(Vec::new())),
    ])
}

/// Node's `flags.compress = false` (an emit with `compress=False`) in encoded options.
fn set_compress_false(options: &mut Value) {
    if let Value::Map(entries) = options {
        for (key, flags) in entries.iter_mut() {
            if let (Some("flags"), Value::Map(flags)) = (key.as_str(), flags) {
                flags.push((Value::from("compress"), Value::from(false)));
            }
        }
    }
}

/// Whether decoded options carry `flags.compress = false`.
fn compress_false(options: &Value) -> bool {
    field(options, "flags")
        .and_then(|flags| field(flags, "compress"))
        .and_then(Value::as_bool)
        == Some(false)
}

/// The channel of requests between the nodes of `nsp`.
pub fn request_channel(key: &str, nsp: &str) -> String {
    format!("{key}-request#{nsp}#")
}

/// What a bulk request asks of the selected sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAction {
    Join(Vec<String>),
    Leave(Vec<String>),
    Disconnect { close: bool },
}

const REMOTE_JOIN: u64 = 2;
const REMOTE_LEAVE: u64 = 3;
const REMOTE_DISCONNECT: u64 = 4;

/// A bulk request from another node or an emitter (Node's `socketsJoin`, `socketsLeave`,
/// `disconnectSockets`): no answer is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBulk {
    /// Absent in the emitter's requests.
    pub uid: Option<String>,
    pub action: BulkAction,
    /// With `local` set: not to be published again.
    pub opts: BroadcastOptions,
}

/// Encodes a bulk request as the adapter does (JSON).
pub fn encode_bulk(uid: &str, action: &BulkAction, opts: &BroadcastOptions) -> Vec<u8> {
    let selection = serde_json::json!({"rooms": opts.rooms, "except": opts.except});
    let value = match action {
        BulkAction::Join(rooms) => {
            serde_json::json!({"uid": uid, "type": REMOTE_JOIN, "opts": selection, "rooms": rooms})
        }
        BulkAction::Leave(rooms) => {
            serde_json::json!({"uid": uid, "type": REMOTE_LEAVE, "opts": selection, "rooms": rooms})
        }
        BulkAction::Disconnect { close } => serde_json::json!(
            {"uid": uid, "type": REMOTE_DISCONNECT, "opts": selection, "close": close}
        ),
    };
    value.to_string().into_bytes()
}

/// Decodes a request; `None` for the kinds the host answers (see [`decode_value`]) and for
/// requests about one socket by sid.
#[cfg(test)]
pub fn decode_bulk(message: &[u8]) -> Result<Option<RemoteBulk>, WireError> {
    let (value, _) = decode_value(message)?;
    Ok(bulk_from_value(&value))
}

/// A request or response as the adapter sends it (JSON text, or MessagePack when it carries
/// binaries), as JSON with a `{"_placeholder":true,"num":n}` for each binary value, and those
/// binaries in order.
pub fn decode_value(message: &[u8]) -> Result<(Json, Vec<Bytes>), WireError> {
    if message.first() == Some(&b'{') {
        let value =
            serde_json::from_slice(message).map_err(|e| WireError::BadMessage(e.to_string()))?;
        return Ok((value, Vec::new()));
    }
    let v = rmpv::decode::read_value(&mut &message[..])
        .map_err(|e| WireError::BadMessage(e.to_string()))?;
    let mut attachments = Vec::new();
    let value = msgpack_to_json(&v, &mut attachments);
    Ok((value, attachments))
}

/// Encodes a request or response built by the host (JSON with placeholders for
/// `attachments`): JSON text as is when there is no binary, else MessagePack with the
/// binaries inline (the adapter reads both, by the first byte).
pub fn encode_value(json: &[u8], attachments: &[Bytes]) -> Result<Vec<u8>, WireError> {
    let value: Json =
        serde_json::from_slice(json).map_err(|e| WireError::BadMessage(e.to_string()))?;
    if !value.is_object() {
        return Err(WireError::BadMessage("not a JSON object".into()));
    }
    if attachments.is_empty() {
        return Ok(json.to_vec());
    }
    let refs: Vec<&Bytes> = attachments.iter().collect();
    let mut out =
        Vec::with_capacity(json.len() + attachments.iter().map(Bytes::len).sum::<usize>());
    rmpv::encode::write_value(&mut out, &json_to_msgpack(&value, &refs))
        .map_err(|e| WireError::BadMessage(e.to_string()))?;
    Ok(out)
}

/// The channel on which nodes answer the requests of `nsp` (Node's `responseChannel`), or,
/// with `uid`, the one only that node listens on (`publishOnSpecificResponseChannel`).
pub fn response_channel(key: &str, nsp: &str, uid: Option<&str>) -> String {
    match uid {
        Some(uid) => format!("{key}-response#{nsp}#{uid}#"),
        None => format!("{key}-response#{nsp}#"),
    }
}

/// The request's sender (absent in the emitter's).
pub fn request_uid(value: &Json) -> Option<&str> {
    value.get("uid").and_then(Json::as_str)
}

/// A bulk request (join, leave, disconnect the sockets a selection picks), or None for
/// the other kinds (the host answers those).
pub fn bulk_from_value(value: &Json) -> Option<RemoteBulk> {
    let opts = value.get("opts")?;
    let names = |v: Option<&Json>| -> Vec<String> {
        v.and_then(Json::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|x| match x {
                        Json::String(s) => Some(s.clone()),
                        Json::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let action = match value.get("type").and_then(Json::as_u64) {
        Some(REMOTE_JOIN) => BulkAction::Join(names(value.get("rooms"))),
        Some(REMOTE_LEAVE) => BulkAction::Leave(names(value.get("rooms"))),
        Some(REMOTE_DISCONNECT) => BulkAction::Disconnect {
            close: value.get("close").and_then(Json::as_bool).unwrap_or(false),
        },
        _ => return None,
    };
    Some(RemoteBulk {
        uid: value.get("uid").and_then(Json::as_str).map(str::to_owned),
        action,
        opts: BroadcastOptions {
            rooms: names(opts.get("rooms")),
            except: names(opts.get("except")),
            flags: BroadcastFlags {
                local: true,
                ..BroadcastFlags::default()
            },
        },
    })
}

/// Decodes a broadcast message published by a node or an emitter.
pub fn decode_broadcast(message: &[u8]) -> Result<RemoteBroadcast, WireError> {
    let value = rmpv::decode::read_value(&mut &message[..])
        .map_err(|e| WireError::BadMessage(e.to_string()))?;
    let Value::Array(parts) = value else {
        return Err(WireError::BadMessage("not an array".into()));
    };
    let [uid, packet, opts] = <[Value; 3]>::try_from(parts)
        .map_err(|_| WireError::BadMessage("not [uid, packet, opts]".into()))?;
    let uid = uid.as_str().unwrap_or_default().to_owned();
    let kind = field(&packet, "type").and_then(Value::as_u64);
    if !matches!(kind, Some(2) | Some(5)) {
        return Err(WireError::NotAnEvent);
    }
    let nsp = field(&packet, "nsp")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    let ack_id = field(&packet, "id").and_then(Value::as_u64);
    let data = field(&packet, "data").ok_or(WireError::NotAnEvent)?;
    let mut attachments = Vec::new();
    let json = msgpack_to_json(data, &mut attachments);
    let text = serde_json::to_vec(&json).map_err(|e| WireError::BadPacket(e.to_string()))?;
    let kind = if attachments.is_empty() {
        PacketType::Event
    } else {
        PacketType::BinaryEvent
    };
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(Frame::Text(encode_message(
        kind,
        &nsp,
        ack_id,
        attachments.len(),
        &text,
    )));
    frames.extend(attachments.into_iter().map(Frame::Binary));
    if compress_false(&opts) {
        frames = frames.into_iter().map(Frame::plain).collect();
    }
    Ok(RemoteBroadcast {
        uid,
        nsp,
        frames,
        opts: BroadcastOptions {
            rooms: string_list(field(&opts, "rooms")),
            except: string_list(field(&opts, "except")),
            flags: BroadcastFlags {
                local: true,
                ..BroadcastFlags::default()
            },
        },
    })
}

/// The value of a string key of a MessagePack map.
fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    match map {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Room names; Node allows numbers as room names, so they are kept as their decimal text.
fn string_list(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => s.as_str().map(str::to_owned),
            Value::Integer(i) => Some(i.to_string()),
            Value::F64(f) => Some(f.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|s| s.to_string()).collect(),
            except: except.iter().map(|s| s.to_string()).collect(),
            ..BroadcastOptions::default()
        }
    }

    #[test]
    fn channel_names_follow_the_adapter() {
        assert_eq!(
            broadcast_channel("socket.io", "/", &opts(&[], &[])),
            "socket.io#/#"
        );
        assert_eq!(
            broadcast_channel("socket.io", "/chat", &opts(&["r1"], &["x"])),
            "socket.io#/chat#r1#"
        );
        assert_eq!(broadcast_channel("k", "/", &opts(&["a", "b"], &[])), "k#/#");
    }

    #[test]
    fn a_text_event_round_trips() {
        let frames = vec![Frame::Text(encode_message(
            PacketType::Event,
            "/chat",
            None,
            0,
            br#"["hi",{"n":1,"f":1.5,"neg":-3,"s":"x","l":[true,null]}]"#,
        ))];
        let o = opts(&["r1"], &["s1"]);
        let bytes = encode_broadcast("abc123", "/chat", &frames, &o).unwrap();
        let got = decode_broadcast(&bytes).unwrap();
        assert_eq!(got.uid, "abc123");
        assert_eq!(got.nsp, "/chat");
        assert_eq!(got.opts.rooms, ["r1"]);
        assert_eq!(got.opts.except, ["s1"]);
        assert!(got.opts.flags.local, "never published again");
        let Frame::Text(text) = &got.frames[0] else {
            panic!()
        };
        let p = SocketPacket::decode(text.slice(1..)).unwrap();
        let a: Json = serde_json::from_slice(&p.data).unwrap();
        let b: Json =
            serde_json::from_str(r#"["hi",{"n":1,"f":1.5,"neg":-3,"s":"x","l":[true,null]}]"#)
                .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn binary_attachments_travel_inline_and_come_back_as_attachments() {
        let frames = vec![
            Frame::Text(encode_message(
                PacketType::BinaryEvent,
                "/",
                None,
                2,
                br#"["bin",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]"#,
            )),
            Frame::Binary(Bytes::from_static(b"\x01\x02")),
            Frame::Binary(Bytes::from_static(b"\x03")),
        ];
        let bytes = encode_broadcast("u", "/", &frames, &opts(&[], &[])).unwrap();
        // The packet itself carries the binaries as MessagePack bin, type 2 (Node's EVENT).
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let packet = &v.as_array().unwrap()[1];
        assert_eq!(field(packet, "type").and_then(Value::as_u64), Some(2));
        let data = field(packet, "data").unwrap().as_array().unwrap();
        assert_eq!(data[1], Value::Binary(vec![1, 2]));
        let got = decode_broadcast(&bytes).unwrap();
        assert_eq!(got.frames, frames);
    }

    #[test]
    fn compress_false_travels_as_nodes_flag() {
        let text = encode_message(PacketType::Event, "/", None, 0, br#"["x"]"#);
        let plain = vec![Frame::PlainText(text.clone())];
        let bytes = encode_broadcast("u", "/", &plain, &opts(&[], &[])).unwrap();
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let flags = field(&v.as_array().unwrap()[2], "flags").unwrap();
        assert_eq!(
            field(flags, "compress").and_then(Value::as_bool),
            Some(false)
        );
        assert_eq!(decode_broadcast(&bytes).unwrap().frames, plain);
        let bytes = encode_broadcast("u", "/", &[Frame::Text(text)], &opts(&[], &[])).unwrap();
        assert!(decode_broadcast(&bytes).unwrap().frames[0].compressible());
    }

    #[test]
    fn bulk_requests_round_trip_and_others_are_skipped() {
        let o = opts(&["r1"], &["s1"]);
        for action in [
            BulkAction::Join(vec!["x".into(), "y".into()]),
            BulkAction::Leave(vec!["x".into()]),
            BulkAction::Disconnect { close: true },
        ] {
            let bytes = encode_bulk("me", &action, &o);
            let got = decode_bulk(&bytes).unwrap().unwrap();
            assert_eq!(got.uid.as_deref(), Some("me"));
            assert_eq!(got.action, action);
            assert_eq!(got.opts.rooms, ["r1"]);
            assert_eq!(got.opts.except, ["s1"]);
            assert!(got.opts.flags.local);
        }
        // The emitter's form: no uid.
        let emitter = br#"{"type":2,"opts":{"rooms":[],"except":[]},"rooms":["z"]}"#;
        let got = decode_bulk(emitter).unwrap().unwrap();
        assert_eq!(got.uid, None);
        assert_eq!(got.action, BulkAction::Join(vec!["z".into()]));
        // Requests needing an answer, and the one-socket form, are not ours to handle.
        let fetch = br#"{"uid":"n","requestId":"q","type":5,"opts":{"rooms":[],"except":[]}}"#;
        assert_eq!(decode_bulk(fetch).unwrap(), None);
        let one = br#"{"uid":"n","requestId":"q","type":2,"sid":"s","room":"r"}"#;
        assert_eq!(decode_bulk(one).unwrap(), None);
        assert!(decode_bulk(b"{nope").is_err());
    }

    #[test]
    fn other_packets_and_garbage_are_refused() {
        let ack = vec![Frame::Text(encode_message(
            PacketType::Ack,
            "/",
            Some(1),
            0,
            b"[1]",
        ))];
        assert_eq!(
            encode_broadcast("u", "/", &ack, &opts(&[], &[])),
            Err(WireError::NotAnEvent)
        );
        assert!(matches!(
            decode_broadcast(b"\xc1"),
            Err(WireError::BadMessage(_))
        ));
        let mut not_three = Vec::new();
        rmpv::encode::write_value(&mut not_three, &Value::Array(vec![Value::Nil])).unwrap();
        assert!(matches!(
            decode_broadcast(&not_three),
            Err(WireError::BadMessage(_))
        ));
    }

    #[test]
    fn host_messages_round_trip_in_json_or_msgpack() {
        let json = br#"{"uid":"n1","requestId":"q","type":7,"packet":{"type":2,"data":["ev",{"_placeholder":true,"num":0}],"nsp":"/"}}"#;
        let bin = [Bytes::from_static(b"\x00\x01")];
        let packed = encode_value(json, &bin).unwrap();
        assert_ne!(packed.first(), Some(&b'{'), "binaries: MessagePack");
        let (value, attachments) = decode_value(&packed).unwrap();
        assert_eq!(attachments, bin);
        assert_eq!(value, serde_json::from_slice::<Json>(json).unwrap());
        assert_eq!(request_uid(&value), Some("n1"));
        assert!(
            bulk_from_value(&value).is_none(),
            "a BROADCAST is the host's"
        );
        let plain = br#"{"requestId":"q","rooms":["a"]}"#;
        assert_eq!(encode_value(plain, &[]).unwrap(), plain.to_vec());
        assert!(encode_value(b"[1]", &[]).is_err());
        assert_eq!(
            response_channel("socket.io", "/chat", Some("u1")),
            "socket.io-response#/chat#u1#"
        );
    }

    #[test]
    fn object_keys_keep_their_order_across_nodes() {
        // Node's clients see keys in the order the sender wrote them, as on one node.
        let text = br#"["ev",{"t":1,"pad":"x","a":{"z":1,"b":2}}]"#;
        let frames = vec![Frame::Text(encode_message(
            PacketType::Event,
            "/",
            None,
            0,
            text,
        ))];
        let bytes = encode_broadcast("u", "/", &frames, &opts(&[], &[])).unwrap();
        let got = decode_broadcast(&bytes).unwrap();
        let Frame::Text(out) = &got.frames[0] else {
            panic!()
        };
        let packet = SocketPacket::decode(out.slice(1..)).unwrap();
        assert_eq!(&packet.data[..], &text[..]);
    }
}
