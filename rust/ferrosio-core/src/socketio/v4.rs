//! Socket.IO v4 (socket.io-client 2.x, over Engine.IO v3), where it differs from v5: the
//! packets the server writes itself. Events, acks and disconnects are the same bytes in both,
//! so a broadcast is encoded once for clients of either revision.
//!
//! - The main namespace `/` is joined implicitly: the server connects every new session
//!   there and answers `40` without a CONNECT from the client (see the layer's `on_open`).
//! - The CONNECT reply carries no payload (`40`, `40/chat,`): no socket id.
//! - A refused CONNECT is an ERROR packet whose payload is the error's `data` when it has one,
//!   else its message as a JSON string (`44"Not authorized"`), as socket.io 2.x sends it.
//! - A client's CONNECT for another namespace may carry a query in the name (`/chat?x=1`),
//!   which the codec drops; there is no auth payload.
//! - A socket's id is not the server's choice: the client computes it from the Engine.IO sid
//!   (`<sid>` in `/`, `<nsp>#<sid>` elsewhere), and apps pass it around, so the server uses
//!   the same, as Node does for these clients.

use bytes::Bytes;

use super::packet::{encode_message, PacketType};

/// The id of a v4 client's socket in `nsp`, as the client computes it.
pub fn socket_id(nsp: &str, eio_sid: &str) -> std::sync::Arc<str> {
    if nsp == "/" {
        eio_sid.into()
    } else {
        format!("{nsp}#{eio_sid}").into()
    }
}

/// `40` / `40/nsp,`: the CONNECT reply to a v4 client.
pub fn connect_reply(nsp: &str) -> Bytes {
    encode_message(PacketType::Connect, nsp, None, 0, b"")
}

/// `44<nsp,><data or "message">`: a refused CONNECT for a v4 client, from the v5 payload
/// (`{"message":...,"data":...}`, as the host builds it).
pub fn connect_error(nsp: &str, v5_payload: &[u8]) -> Bytes {
    let payload = match serde_json::from_slice::<serde_json::Value>(v5_payload) {
        Ok(serde_json::Value::Object(mut map)) => match map.remove("data") {
            Some(data) if !data.is_null() => data,
            _ => map
                .remove("message")
                .unwrap_or_else(|| serde_json::Value::String("Connection refused".into())),
        },
        // Not the host's object: passed on as it is.
        _ => return encode_message(PacketType::ConnectError, nsp, None, 0, v5_payload),
    };
    encode_message(
        PacketType::ConnectError,
        nsp,
        None,
        0,
        payload.to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_the_clients_own() {
        assert_eq!(&*socket_id("/", "abc"), "abc");
        assert_eq!(&*socket_id("/chat", "abc"), "/chat#abc");
    }

    #[test]
    fn connect_replies_have_no_payload() {
        assert_eq!(&connect_reply("/")[..], b"40");
        assert_eq!(&connect_reply("/chat")[..], b"40/chat,");
    }

    #[test]
    fn connect_errors_carry_the_data_or_the_message() {
        assert_eq!(
            &connect_error("/", br#"{"message":"Not authorized"}"#)[..],
            br#"44"Not authorized""#
        );
        assert_eq!(
            &connect_error("/chat", br#"{"message":"no","data":{"code":7}}"#)[..],
            br#"44/chat,{"code":7}"#
        );
        assert_eq!(
            &connect_error("/", br#"{"message":"no","data":null}"#)[..],
            br#"44"no""#
        );
        assert_eq!(&connect_error("/", b"\"x\"")[..], b"44\"x\"");
    }
}
