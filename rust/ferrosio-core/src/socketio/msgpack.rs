//! The msgpack parser, wire-compatible with npm's `socket.io-msgpack-parser` (python-socketio's
//! `serializer="msgpack"`): each Socket.IO packet is ONE binary Engine.IO message, a
//! MessagePack map `{type, nsp, data?, id?}` (types 0-4 only: binary values travel inline as
//! MessagePack `bin`, so there are no attachments and no BINARY_* packets).
//!
//! The rest of the engine and the Python layer see a decoded packet exactly as the JSON parser
//! makes it: JSON data where each binary value is a `{"_placeholder":true,"num":n}` and the
//! binaries as attachments. So a handler gets `bytes` and `dict` whichever parser the peer
//! uses, and outbound packets (JSON + attachments from Python) are converted here, once per
//! packet: a broadcast is still encoded once for all its recipients.
//!
//! The same conversions serve the Redis cluster's messages (`cluster::wire`), which are
//! MessagePack too.

use bytes::Bytes;
use rmp::Marker;
use rmpv::Value;
use serde_json::Value as Json;

use super::packet::{PacketType, SocketPacket};
use crate::error::ProtocolError;

/// notepack.io's extension type 0: `undefined` (fixext 1, one zero byte), or an `ArrayBuffer`.
const EXT_UNDEFINED_OR_ARRAY_BUFFER: i8 = 0;
/// The MessagePack timestamp extension (notepack.io encodes a `Date` with it).
const EXT_TIMESTAMP: i8 = -1;

/// Decodes one binary Engine.IO message of a peer using the msgpack parser into the packet the
/// JSON parser would have made, and its binary values as attachments (at most
/// `max_attachments`, as for a JSON binary packet).
pub fn decode(
    message: &[u8],
    max_attachments: usize,
) -> Result<(SocketPacket, Vec<Bytes>), ProtocolError> {
    let mut rd = Reader {
        buf: message,
        attachments: Vec::new(),
    };
    let len = match rd.marker()? {
        Marker::FixMap(n) => usize::from(n),
        Marker::Map16 => rd.len16()?,
        Marker::Map32 => rd.len32()?,
        _ => return Err(ProtocolError::BadMsgPack("a packet is a map".into())),
    };
    let (mut kind, mut nsp, mut data, mut id) = (None, None, None, None);
    let mut seen_data = false;
    for _ in 0..len {
        // Before the key: a key that is binary (or an extension) makes an attachment too.
        let before = rd.attachments.len();
        let key = rd.value(0)?;
        let value = rd.value(0)?;
        match key.as_ref().and_then(Json::as_str) {
            Some("type") => kind = value,
            Some("nsp") => nsp = value,
            Some("id") => id = value,
            // Twice: the first one's binaries would stay as attachments of the second.
            Some("data") if seen_data => {
                return Err(ProtocolError::BadMsgPack("the key \"data\" twice".into()))
            }
            Some("data") => {
                data = value;
                seen_data = true;
                continue;
            }
            _ => {} // `options` from the JS client, anything else: ignored as Node does
        }
        rd.attachments.truncate(before); // binaries only count in `data`
    }
    if !rd.buf.is_empty() {
        return Err(ProtocolError::BadMsgPack(format!(
            "{} trailing bytes",
            rd.buf.len()
        )));
    }
    let attachments = rd.attachments;
    let kind = match kind.as_ref().and_then(Json::as_u64) {
        Some(0) => PacketType::Connect,
        Some(1) => PacketType::Disconnect,
        Some(2) => PacketType::Event,
        Some(3) => PacketType::Ack,
        Some(4) => PacketType::ConnectError,
        _ => return Err(ProtocolError::BadMsgPack("invalid packet type".into())),
    };
    let Some(Json::String(nsp)) = nsp else {
        return Err(ProtocolError::BadMsgPack("invalid namespace".into()));
    };
    // As with the JSON parser, a v4 client's query after the namespace is not part of it.
    let nsp = Bytes::from(match nsp.find('?') {
        Some(q) => nsp[..q].to_owned(),
        None => nsp,
    });
    let ack_id = match id {
        None => None,
        Some(v) => Some(v.as_u64().ok_or(ProtocolError::BadAckId)?),
    };
    let json = match (kind, data) {
        (PacketType::Connect, None) | (PacketType::Disconnect, _) => None,
        (PacketType::Connect, Some(v @ Json::Object(_))) => Some(v),
        (PacketType::Connect, Some(_)) => {
            return Err(ProtocolError::BadPayload(
                "CONNECT payload must be an object",
            ))
        }
        (PacketType::Event, Some(Json::Array(items))) => {
            if !matches!(items.first(), Some(Json::String(_))) {
                return Err(ProtocolError::BadPayload(
                    "EVENT needs a string event name first",
                ));
            }
            Some(Json::Array(items))
        }
        (PacketType::Event, _) => {
            return Err(ProtocolError::BadPayload("EVENT payload must be an array"))
        }
        (PacketType::Ack, Some(v @ Json::Array(_))) => {
            if ack_id.is_none() {
                return Err(ProtocolError::BadAckId);
            }
            Some(v)
        }
        (PacketType::Ack, _) => {
            return Err(ProtocolError::BadPayload("ACK payload must be an array"))
        }
        (PacketType::ConnectError, Some(v @ Json::Object(_))) => Some(v),
        // The parser allows a bare message; it is the `message` of the JSON parser's object.
        (PacketType::ConnectError, Some(Json::String(s))) => {
            Some(serde_json::json!({ "message": s }))
        }
        (PacketType::ConnectError, _) => {
            return Err(ProtocolError::BadPayload(
                "CONNECT_ERROR payload must be an object",
            ))
        }
        (PacketType::BinaryEvent | PacketType::BinaryAck, _) => unreachable!("not decoded"),
    };
    let attachments = if json.is_some() {
        attachments
    } else {
        Vec::new()
    };
    if attachments.len() > max_attachments {
        return Err(ProtocolError::TooManyAttachments(attachments.len() as u64));
    }
    let data = match json {
        Some(json) => Bytes::from(
            serde_json::to_vec(&json).map_err(|e| ProtocolError::BadMsgPack(e.to_string()))?,
        ),
        None => Bytes::new(),
    };
    let kind = match (kind, attachments.is_empty()) {
        (PacketType::Event, false) => PacketType::BinaryEvent,
        (PacketType::Ack, false) => PacketType::BinaryAck,
        (kind, _) => kind,
    };
    let packet = SocketPacket {
        kind,
        nsp,
        attachments: attachments.len() as u32,
        ack_id,
        data,
    };
    Ok((packet, attachments))
}

/// Most nesting of arrays and maps in a packet's data: what the outbound conversion (serde_json,
/// 128 levels) can always write back, so anything read can be sent on.
pub const MAX_DEPTH: usize = 100;

/// Reads MessagePack straight into JSON, binaries to `attachments` (see [`msgpack_to_json`]
/// for what becomes what). Read by marker, because notepack.io 2 (the parser's encoder) tells
/// its extensions apart by form, which a decoded `rmpv::Value` no longer shows: `undefined`
/// is fixext 1 of type 0, a `Date` fixext 8 of type 0 (milliseconds since 1970, i64), an
/// `ArrayBuffer` (what browsers send for binary data) ext 8/16/32 of type 0.
struct Reader<'a> {
    buf: &'a [u8],
    attachments: Vec<Bytes>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::BadMsgPack("truncated".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn marker(&mut self) -> Result<Marker, ProtocolError> {
        Ok(Marker::from_u8(self.array::<1>()?[0]))
    }

    fn len8(&mut self) -> Result<usize, ProtocolError> {
        Ok(usize::from(self.array::<1>()?[0]))
    }

    fn len16(&mut self) -> Result<usize, ProtocolError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn len32(&mut self) -> Result<usize, ProtocolError> {
        Ok(u32::from_be_bytes(self.array()?) as usize)
    }

    /// One value; `None` is JS's `undefined`.
    fn value(&mut self, depth: usize) -> Result<Option<Json>, ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(ProtocolError::BadMsgPack("nested too deeply".into()));
        }
        let float = |f: f64| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number);
        let json = match self.marker()? {
            Marker::Null => Json::Null,
            Marker::True => Json::Bool(true),
            Marker::False => Json::Bool(false),
            Marker::FixPos(n) => Json::from(n),
            Marker::FixNeg(n) => Json::from(n),
            Marker::U8 => Json::from(self.array::<1>()?[0]),
            Marker::U16 => Json::from(u16::from_be_bytes(self.array()?)),
            Marker::U32 => Json::from(u32::from_be_bytes(self.array()?)),
            Marker::U64 => Json::from(u64::from_be_bytes(self.array()?)),
            Marker::I8 => Json::from(i8::from_be_bytes(self.array()?)),
            Marker::I16 => Json::from(i16::from_be_bytes(self.array()?)),
            Marker::I32 => Json::from(i32::from_be_bytes(self.array()?)),
            Marker::I64 => Json::from(i64::from_be_bytes(self.array()?)),
            Marker::F32 => float(f64::from(f32::from_be_bytes(self.array()?))),
            Marker::F64 => float(f64::from_be_bytes(self.array()?)),
            Marker::FixStr(n) => self.string(usize::from(n))?,
            Marker::Str8 => {
                let n = self.len8()?;
                self.string(n)?
            }
            Marker::Str16 => {
                let n = self.len16()?;
                self.string(n)?
            }
            Marker::Str32 => {
                let n = self.len32()?;
                self.string(n)?
            }
            Marker::Bin8 => {
                let n = self.len8()?;
                self.binary(n)?
            }
            Marker::Bin16 => {
                let n = self.len16()?;
                self.binary(n)?
            }
            Marker::Bin32 => {
                let n = self.len32()?;
                self.binary(n)?
            }
            Marker::FixArray(n) => self.items(usize::from(n), depth)?,
            Marker::Array16 => {
                let n = self.len16()?;
                self.items(n, depth)?
            }
            Marker::Array32 => {
                let n = self.len32()?;
                self.items(n, depth)?
            }
            Marker::FixMap(n) => self.entries(usize::from(n), depth)?,
            Marker::Map16 => {
                let n = self.len16()?;
                self.entries(n, depth)?
            }
            Marker::Map32 => {
                let n = self.len32()?;
                self.entries(n, depth)?
            }
            Marker::FixExt1 => {
                if self.buf.first() == Some(&(EXT_UNDEFINED_OR_ARRAY_BUFFER as u8)) {
                    self.take(2)?;
                    return Ok(None);
                }
                self.extension(1, true)?
            }
            Marker::FixExt2 => self.extension(2, true)?,
            Marker::FixExt4 => self.extension(4, true)?,
            Marker::FixExt8 => self.extension(8, true)?,
            Marker::FixExt16 => self.extension(16, true)?,
            Marker::Ext8 => {
                let n = self.len8()?;
                self.extension(n, false)?
            }
            Marker::Ext16 => {
                let n = self.len16()?;
                self.extension(n, false)?
            }
            Marker::Ext32 => {
                let n = self.len32()?;
                self.extension(n, false)?
            }
            Marker::Reserved => return Err(ProtocolError::BadMsgPack("reserved byte 0xc1".into())),
        };
        Ok(Some(json))
    }

    fn string(&mut self, n: usize) -> Result<Json, ProtocolError> {
        Ok(Json::String(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }

    fn binary(&mut self, n: usize) -> Result<Json, ProtocolError> {
        let bytes = self.take(n)?;
        Ok(placeholder(bytes, &mut self.attachments))
    }

    fn items(&mut self, n: usize, depth: usize) -> Result<Json, ProtocolError> {
        // Never preallocated from the peer's count: each item takes at least a byte.
        let mut items = Vec::with_capacity(n.min(self.buf.len()));
        for _ in 0..n {
            items.push(self.value(depth + 1)?.unwrap_or(Json::Null));
        }
        Ok(Json::Array(items))
    }

    fn entries(&mut self, n: usize, depth: usize) -> Result<Json, ProtocolError> {
        let mut map = serde_json::Map::new();
        for _ in 0..n {
            let key = match self.value(depth + 1)? {
                Some(Json::String(s)) => s,
                // As a JS object key: its text.
                Some(k @ (Json::Number(_) | Json::Bool(_) | Json::Null)) => k.to_string(),
                None => "undefined".to_owned(),
                // Refused: as text, nested keys would grow by escaping at every level.
                Some(_) => {
                    return Err(ProtocolError::BadMsgPack(
                        "a map key is an array, a map or binary".into(),
                    ))
                }
            };
            if map.contains_key(&key) {
                // No encoder of a JS object or a dict writes one; the later value would hide
                // the earlier one and leave its binaries as attachments nothing points to.
                return Err(ProtocolError::BadMsgPack(format!(
                    "a map has the key {key:?} twice"
                )));
            }
            if let Some(value) = self.value(depth + 1)? {
                map.insert(key, value);
            }
        }
        Ok(Json::Object(map))
    }

    /// An extension of `n` data bytes after its type: a date is its ISO text; anything else
    /// its bytes.
    fn extension(&mut self, n: usize, fixed: bool) -> Result<Json, ProtocolError> {
        let kind = self.array::<1>()?[0] as i8;
        let bytes = self.take(n)?;
        let text = match (kind, fixed, n) {
            (EXT_UNDEFINED_OR_ARRAY_BUFFER, true, 8) => {
                let ms = i64::from_be_bytes(bytes.try_into().unwrap_or_default());
                date_text(
                    ms.div_euclid(1000),
                    (ms.rem_euclid(1000) * 1_000_000) as u32,
                )
            }
            (EXT_TIMESTAMP, _, _) => timestamp_text(bytes),
            _ => None,
        };
        Ok(match text {
            Some(text) => Json::String(text),
            None => placeholder(bytes, &mut self.attachments),
        })
    }
}

/// Encodes one packet for a peer using the msgpack parser: `data` is the packet's JSON (empty:
/// none), each `{"_placeholder":true,"num":n}` in it standing for `attachments[n]`, which goes
/// inline as `bin`.
pub fn encode(
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    data: &[u8],
    attachments: &[Bytes],
) -> Result<Bytes, ProtocolError> {
    // The parser knows only types 0-4: binary events and acks are plain ones.
    let type_number = match kind {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        other => other,
    } as u8;
    let mut map = Vec::with_capacity(4);
    map.push((Value::from("type"), Value::from(type_number)));
    if !data.is_empty() {
        let json: Json = serde_json::from_slice(data).map_err(|_| {
            ProtocolError::BadPayload("packet data must be JSON nested at most 128 levels deep")
        })?;
        let attachments: Vec<&Bytes> = attachments.iter().collect();
        map.push((Value::from("data"), json_to_msgpack(&json, &attachments)));
    }
    map.push((Value::from("nsp"), Value::from(nsp)));
    if let Some(id) = ack_id {
        map.push((Value::from("id"), Value::from(id)));
    }
    let size: usize = data.len() + nsp.len() + attachments.iter().map(Bytes::len).sum::<usize>();
    let mut out = Vec::with_capacity(size + 24);
    rmpv::encode::write_value(&mut out, &Value::Map(map))
        .map_err(|e| ProtocolError::BadMsgPack(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// notepack.io's `undefined`: fixext 1 of type 0 holding a zero byte.
fn is_undefined(value: &Value) -> bool {
    matches!(value, Value::Ext(EXT_UNDEFINED_OR_ARRAY_BUFFER, b) if b.as_slice() == [0])
}

/// JSON with attachment placeholders to MessagePack with the binaries inline.
pub(crate) fn json_to_msgpack(value: &Json, attachments: &[&Bytes]) -> Value {
    match value {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| json_to_msgpack(v, attachments))
                .collect(),
        ),
        Json::Object(map) => {
            if map.get("_placeholder") == Some(&Json::Bool(true)) {
                if let Some(bin) = map
                    .get("num")
                    .and_then(Json::as_u64)
                    .and_then(|n| attachments.get(n as usize))
                {
                    return Value::Binary(bin.to_vec());
                }
            }
            Value::Map(
                map.iter()
                    .map(|(k, v)| (Value::from(k.as_str()), json_to_msgpack(v, attachments)))
                    .collect(),
            )
        }
    }
}

/// MessagePack to JSON, each binary value moved to `attachments` and replaced by its
/// placeholder (depth first, in order, as socket.io-parser numbers them). What JSON has no
/// value for becomes what `JSON.stringify` makes of notepack.io's decoding of it: `undefined`
/// is `null` in an array and left out of an object, a timestamp (a JS `Date`) its ISO 8601
/// text, and an `ArrayBuffer` (extension 0) or any other extension its bytes.
pub(crate) fn msgpack_to_json(value: &Value, attachments: &mut Vec<Bytes>) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (_, Some(s)) => Json::from(s),
            _ => Json::Null,
        },
        Value::F32(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        v if is_undefined(v) => Json::Null,
        Value::Ext(EXT_TIMESTAMP, b) => match timestamp_text(b) {
            Some(text) => Json::String(text),
            None => placeholder(b, attachments),
        },
        Value::Binary(b) | Value::Ext(_, b) => placeholder(b, attachments),
        Value::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| msgpack_to_json(v, attachments))
                .collect(),
        ),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .filter(|(_, v)| !is_undefined(v))
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        other => other.to_string(),
                    };
                    (key, msgpack_to_json(v, attachments))
                })
                .collect(),
        ),
    }
}

/// Moves `bytes` to `attachments`; its placeholder stands where it was.
fn placeholder(bytes: &[u8], attachments: &mut Vec<Bytes>) -> Json {
    let num = attachments.len();
    attachments.push(Bytes::copy_from_slice(bytes));
    serde_json::json!({"_placeholder": true, "num": num})
}

/// A MessagePack timestamp (32, 64 or 96 bit form) as `JSON.stringify` writes a `Date`:
/// `2024-01-31T12:00:00.000Z` (milliseconds, UTC).
fn timestamp_text(b: &[u8]) -> Option<String> {
    let (secs, nanos): (i64, u32) = match b.len() {
        4 => (i64::from(u32::from_be_bytes(b.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(b.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(b[4..].try_into().ok()?),
            u32::from_be_bytes(b[..4].try_into().ok()?),
        ),
        _ => return None,
    };
    date_text(secs, nanos)
}

/// `secs` and `nanos` since 1970 as `JSON.stringify` writes a `Date`; `None` outside the
/// range of JS dates (±8.64e15 ms) or with bad nanoseconds.
fn date_text(secs: i64, nanos: u32) -> Option<String> {
    if nanos >= 1_000_000_000 || secs.unsigned_abs() > 8_640_000_000_000 {
        return None;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    Some(format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    ))
}

/// Proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes notepack.io makes of `value` (a map written key by key, in order).
    fn pack(value: Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &value).unwrap();
        out
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    const UNDEFINED: fn() -> Value = || Value::Ext(0, vec![0]);

    #[test]
    fn an_event_from_the_js_client_with_inline_binaries() {
        // What socket.io-client sends for `socket.emit("up", Buffer.from([1, 2]), {b: buf}, cb)`
        // on `/chat`, including its `options` and an `undefined`.
        let wire = pack(map(vec![
            ("type", Value::from(2)),
            (
                "data",
                Value::Array(vec![
                    Value::from("up"),
                    Value::Binary(vec![1, 2]),
                    map(vec![("b", Value::Binary(vec![3])), ("u", UNDEFINED())]),
                    UNDEFINED(),
                ]),
            ),
            ("options", map(vec![("compress", Value::from(true))])),
            ("nsp", Value::from("/chat")),
            ("id", Value::from(7)),
        ]));
        let (p, attachments) = decode(&wire, 10).unwrap();
        assert_eq!(
            (p.kind, &p.nsp[..], p.ack_id, p.attachments),
            (PacketType::BinaryEvent, &b"/chat"[..], Some(7), 2)
        );
        assert_eq!(
            &p.data[..],
            br#"["up",{"_placeholder":true,"num":0},{"b":{"_placeholder":true,"num":1}},null]"#
        );
        assert_eq!(
            attachments,
            [Bytes::from_static(&[1, 2]), Bytes::from_static(&[3])]
        );
        assert_eq!(decode(&wire, 1), Err(ProtocolError::TooManyAttachments(2)));
    }

    #[test]
    fn no_binary_is_left_without_its_placeholder() {
        // A map with a key twice: the later value would hide the earlier one, whose binary
        // would stay as an attachment no placeholder points to. Refused.
        let nested = pack(map(vec![
            ("type", Value::from(2)),
            (
                "data",
                Value::Array(vec![
                    Value::from("e"),
                    map(vec![("k", Value::Binary(vec![1])), ("k", Value::from(2))]),
                ]),
            ),
            ("nsp", Value::from("/")),
        ]));
        assert!(
            matches!(decode(&nested, 10), Err(ProtocolError::BadMsgPack(m)) if m.contains("twice"))
        );
        let data = |v: Value| ("data", Value::Array(vec![Value::from("e"), v]));
        let top = pack(map(vec![
            ("type", Value::from(2)),
            data(Value::Binary(vec![1])),
            data(Value::from(1)),
            ("nsp", Value::from("/")),
        ]));
        assert!(
            matches!(decode(&top, 10), Err(ProtocolError::BadMsgPack(m)) if m.contains("twice"))
        );
        // A packet key that is binary (here an extension, as the fuzzer's input) is ignored
        // with its bytes: no attachment is left that nothing points to.
        let mut wire = vec![0x84, 0xd4, 0x86, 0x86, 0x01];
        wire.extend(pack(Value::from("type")));
        wire.extend(pack(Value::from(0)));
        wire.extend(pack(Value::from("nsp")));
        wire.extend(pack(Value::from("/")));
        wire.extend(pack(Value::from("data")));
        wire.extend(pack(map(vec![("a", Value::from(1))])));
        let (p, att) = decode(&wire, 10).unwrap();
        assert_eq!(
            (p.kind, p.attachments, att.len()),
            (PacketType::Connect, 0, 0)
        );
        // Other keys may repeat, as before (the last `type`, `nsp`, `id` wins).
        let (p, att) = decode(
            &pack(map(vec![
                ("type", Value::from(1)),
                ("type", Value::from(2)),
                data(Value::Binary(vec![1])),
                ("nsp", Value::from("/")),
            ])),
            10,
        )
        .unwrap();
        assert_eq!(
            (p.kind, p.attachments, att.len()),
            (PacketType::BinaryEvent, 1, 1)
        );
    }

    #[test]
    fn connect_disconnect_and_connect_error() {
        let (p, _) = decode(
            &pack(map(vec![
                ("type", Value::from(0)),
                ("nsp", Value::from("/")),
            ])),
            10,
        )
        .unwrap();
        assert_eq!(
            (p.kind, &p.nsp[..], &p.data[..]),
            (PacketType::Connect, &b"/"[..], &b""[..])
        );
        let auth = pack(map(vec![
            ("type", Value::from(0)),
            ("nsp", Value::from("/admin?x=1")),
            ("data", map(vec![("token", Value::from("s"))])),
        ]));
        let (p, _) = decode(&auth, 10).unwrap();
        assert_eq!(
            (&p.nsp[..], &p.data[..]),
            (&b"/admin"[..], &br#"{"token":"s"}"#[..])
        );
        let undefined_auth = pack(map(vec![
            ("type", Value::from(0)),
            ("data", UNDEFINED()),
            ("nsp", Value::from("/")),
        ]));
        assert!(decode(&undefined_auth, 10).unwrap().0.data.is_empty());
        let (p, _) = decode(
            &pack(map(vec![
                ("type", Value::from(1)),
                ("nsp", Value::from("/a")),
            ])),
            10,
        )
        .unwrap();
        assert_eq!(p.kind, PacketType::Disconnect);
        let bare = pack(map(vec![
            ("type", Value::from(4)),
            ("nsp", Value::from("/")),
            ("data", Value::from("nope")),
        ]));
        assert_eq!(
            &decode(&bare, 10).unwrap().0.data[..],
            br#"{"message":"nope"}"#
        );
    }

    #[test]
    fn what_the_parser_refuses_is_a_typed_error() {
        let bad = |entries: Vec<(&str, Value)>| decode(&pack(map(entries)), 10).unwrap_err();
        let nsp = || ("nsp", Value::from("/"));
        assert!(matches!(
            bad(vec![("type", Value::from(5)), nsp()]),
            ProtocolError::BadMsgPack(_)
        ));
        assert!(matches!(
            bad(vec![("type", Value::from(2))]),
            ProtocolError::BadMsgPack(_)
        ));
        assert!(matches!(
            bad(vec![("type", Value::from(2)), nsp(), ("data", map(vec![]))]),
            ProtocolError::BadPayload(_)
        ));
        assert!(matches!(
            bad(vec![
                ("type", Value::from(2)),
                nsp(),
                ("data", Value::Array(vec![Value::from(1)]))
            ]),
            ProtocolError::BadPayload(_)
        ));
        assert_eq!(
            bad(vec![
                ("type", Value::from(3)),
                nsp(),
                ("data", Value::Array(vec![]))
            ]),
            ProtocolError::BadAckId
        );
        assert_eq!(
            bad(vec![
                ("type", Value::from(3)),
                nsp(),
                ("id", Value::from(-1)),
                ("data", Value::Array(vec![]))
            ]),
            ProtocolError::BadAckId
        );
        assert!(matches!(
            bad(vec![
                ("type", Value::from(0)),
                nsp(),
                ("data", Value::from(1))
            ]),
            ProtocolError::BadPayload(_)
        ));
        assert!(matches!(decode(b"", 10), Err(ProtocolError::BadMsgPack(_))));
        assert!(matches!(
            decode(b"\x92\x01\x02", 10),
            Err(ProtocolError::BadMsgPack(_))
        ));
        let mut trailing = pack(map(vec![("type", Value::from(1)), nsp()]));
        trailing.push(0);
        assert!(matches!(
            decode(&trailing, 10),
            Err(ProtocolError::BadMsgPack(_))
        ));
        // JSON text is not a msgpack packet: a peer on the default parser is refused clearly.
        assert!(decode(b"0{}", 10).is_err());
    }

    #[test]
    fn encode_writes_the_parsers_map_with_binaries_inline() {
        let wire = encode(
            PacketType::BinaryAck,
            "/chat",
            Some(9),
            br#"[{"_placeholder":true,"num":0},1.5,-3,"x",null]"#,
            &[Bytes::from_static(&[7, 8])],
        )
        .unwrap();
        let v = rmpv::decode::read_value(&mut &wire[..]).unwrap();
        assert_eq!(
            v,
            map(vec![
                ("type", Value::from(3)),
                (
                    "data",
                    Value::Array(vec![
                        Value::Binary(vec![7, 8]),
                        Value::F64(1.5),
                        Value::from(-3),
                        Value::from("x"),
                        Value::Nil
                    ])
                ),
                ("nsp", Value::from("/chat")),
                ("id", Value::from(9)),
            ])
        );
        // And back: the packet Python would have had from the JSON parser.
        let (p, attachments) = decode(&wire, 10).unwrap();
        assert_eq!(p.kind, PacketType::BinaryAck);
        assert_eq!(
            &p.data[..],
            br#"[{"_placeholder":true,"num":0},1.5,-3,"x",null]"#
        );
        assert_eq!(attachments, [Bytes::from_static(&[7, 8])]);
        let v = rmpv::decode::read_value(
            &mut &encode(PacketType::Disconnect, "/", None, b"", &[]).unwrap()[..],
        )
        .unwrap();
        assert_eq!(
            v,
            map(vec![("type", Value::from(1)), ("nsp", Value::from("/"))])
        );
        assert!(encode(PacketType::Event, "/", None, b"[", &[]).is_err());
    }

    #[test]
    fn dates_become_the_text_json_gives_them() {
        // new Date(Date.UTC(2024, 1, 29, 13, 5, 9, 250)): notepack.io's 64-bit form.
        let secs: u64 = 1_709_211_909;
        let nanos: u64 = 250_000_000;
        let ts = Value::Ext(-1, ((nanos << 34) | secs).to_be_bytes().to_vec());
        let mut att = Vec::new();
        assert_eq!(
            msgpack_to_json(&ts, &mut att),
            Json::from("2024-02-29T13:05:09.250Z")
        );
        let epoch = Value::Ext(-1, 0u32.to_be_bytes().to_vec());
        assert_eq!(
            msgpack_to_json(&epoch, &mut att),
            Json::from("1970-01-01T00:00:00.000Z")
        );
        let mut before = 0u32.to_be_bytes().to_vec();
        before.extend((-86_400i64).to_be_bytes());
        assert_eq!(
            msgpack_to_json(&Value::Ext(-1, before), &mut att),
            Json::from("1969-12-31T00:00:00.000Z")
        );
        assert!(att.is_empty());
        // Not a timestamp: its bytes.
        assert!(msgpack_to_json(&Value::Ext(-1, vec![1, 2, 3]), &mut att).is_object());
        assert_eq!(att.len(), 1);
    }

    #[test]
    fn floats_keep_their_exact_value() {
        // Found by the fuzzer: without serde_json's float_roundtrip the last digit changed.
        let data = br#"[8.366288310149156e-78,0.1,1e300,-2.5]"#;
        let wire = encode(PacketType::Ack, "/", Some(1), data, &[]).unwrap();
        let back: Json = serde_json::from_slice(&decode(&wire, 10).unwrap().0.data).unwrap();
        let sent: Json = serde_json::from_slice(data).unwrap();
        assert_eq!(back, sent);
        assert_eq!(back[0].as_f64(), Some(8.366288310149156e-78));
    }

    #[test]
    fn object_keys_keep_the_peers_order() {
        let data =
            br#"["e",{"zeta":1,"alpha":{"_placeholder":true,"num":0},"mid":[{"y":1,"x":2}]}]"#;
        let wire = encode(
            PacketType::Event,
            "/",
            None,
            data,
            &[Bytes::from_static(b"b")],
        )
        .unwrap();
        assert_eq!(&decode(&wire, 10).unwrap().0.data[..], &data[..]);
    }

    #[test]
    fn notepack_2_forms_are_told_apart_by_marker() {
        // ["e", Date(2024-02-29T13:05:09.250Z), ArrayBuffer [0], undefined, Uint8Array[1,2]]
        let mut data = vec![0x95, 0xa1, b'e'];
        data.extend([0xd7, 0x00]);
        data.extend(1_709_211_909_250i64.to_be_bytes());
        data.extend([0xc7, 0x01, 0x00, 0x00]); // ext 8, type 0, one byte: an ArrayBuffer
        data.extend([0xd4, 0x00, 0x00]); // fixext 1, type 0: undefined
        data.extend([0xc7, 0x02, 0x00, 0x01, 0x02]);
        let mut wire = vec![0x83, 0xa4];
        wire.extend(b"type");
        wire.push(0x02);
        wire.push(0xa3);
        wire.extend(b"nsp");
        wire.extend([0xa1, b'/']);
        wire.push(0xa4);
        wire.extend(b"data");
        wire.extend(&data);
        let (p, attachments) = decode(&wire, 10).unwrap();
        assert_eq!(
            &p.data[..],
            br#"["e","2024-02-29T13:05:09.250Z",{"_placeholder":true,"num":0},null,{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(
            attachments,
            [Bytes::from_static(&[0]), Bytes::from_static(&[1, 2])]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let wire = |depth: usize| {
            let mut w = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e".to_vec();
            w.extend(std::iter::repeat_n(0x91, depth));
            w.push(0x01);
            w
        };
        assert!(decode(&wire(MAX_DEPTH - 1), 10).is_ok());
        assert!(matches!(
            decode(&wire(MAX_DEPTH + 1), 10),
            Err(ProtocolError::BadMsgPack(_))
        ));
    }

    #[test]
    fn map_keys_are_strings_or_scalars() {
        // Maps as keys of maps as keys...: refused, not stringified (found by the fuzzer: the
        // escaping doubled at each level).
        let mut data = vec![0x92, 0xa1, b'e'];
        data.extend([0x81; 40]);
        data.extend([0xa1, b'k', 0x01]);
        data.extend([0x01; 40]);
        let mut wire = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data".to_vec();
        wire.extend(&data);
        assert!(matches!(
            decode(&wire, 10),
            Err(ProtocolError::BadMsgPack(_))
        ));
        // Numbers, booleans and nil as keys become their text, as in JS.
        let mut wire = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e\x83".to_vec();
        wire.extend([0x07, 0x01, 0xc3, 0x02, 0xc0, 0x03]);
        assert_eq!(
            &decode(&wire, 10).unwrap().0.data[..],
            br#"["e",{"7":1,"true":2,"null":3}]"#
        );
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes() {
        let seed = encode(
            PacketType::Event,
            "/a",
            Some(3),
            br#"["e",{"k":[1,2.5,"s"]}]"#,
            &[],
        )
        .unwrap();
        for n in 0..=seed.len() {
            let _ = decode(&seed[..n], 10);
        }
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let mut v = seed.to_vec();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(0..v.len());
                v[i] = rng.u8(..);
            }
            let _ = decode(&v, 10);
        }
    }
}
