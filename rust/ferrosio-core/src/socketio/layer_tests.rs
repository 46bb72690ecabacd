//! The Socket.IO layer driven without sockets: sessions are transport-independent, so a test
//! opens them, feeds the layer's `EngineHandler` methods and `execute`, and reads what each
//! session would send (`take`) and what the host would get (`drain`).

use std::sync::mpsc::sync_channel;
use std::time::Duration;

use super::*;
use crate::bridge::Inbound;
use crate::engineio::session::{Handshake, TransportKind};

struct Harness {
    layer: Arc<SocketIoLayer>,
    inbound: Arc<InboundQueue>,
}

fn harness() -> Harness {
    harness_with(ServerConfig::default())
}

fn harness_with(config: ServerConfig) -> Harness {
    let inbound = InboundQueue::new().unwrap();
    Harness {
        layer: SocketIoLayer::new(inbound.clone(), &config),
        inbound,
    }
}

fn text(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

impl Harness {
    fn open(&self, eio_sid: &str) -> Arc<EngineSession> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "EIO=4", [], addr, addr);
        let s = EngineSession::new(eio_sid.into(), hs, TransportKind::WebSocket);
        self.layer.on_open(&s);
        s
    }

    fn drain(&self) -> Vec<SocketIoInbound> {
        self.inbound
            .drain()
            .into_iter()
            .map(|item| match item {
                Inbound::SocketIo(item) => item,
                other => panic!("not a Socket.IO record: {other:?}"),
            })
            .collect()
    }

    /// Sends CONNECT for `nsp`; returns the new socket's sid (not yet accepted).
    fn connect(&self, s: &Arc<EngineSession>, nsp: &str) -> Arc<str> {
        let packet = if nsp == "/" {
            "0".to_owned()
        } else {
            format!("0{nsp},")
        };
        self.layer.on_message(s, text(&packet)).unwrap();
        match self.drain().as_slice() {
            [SocketIoInbound::Connect { sid, nsp: n, .. }] if &**n == nsp => sid.clone(),
            other => panic!("expected one Connect, got {other:?}"),
        }
    }

    /// Connects and accepts; the CONNECT reply is taken off the session.
    fn joined(&self, eio_sid: &str) -> (Arc<EngineSession>, Arc<str>) {
        let s = self.open(eio_sid);
        let sid = self.connect(&s, "/");
        self.run(SocketIoCommand::Accept {
            nsp: "/".into(),
            sid: sid.to_string(),
        });
        assert_eq!(sent(&s).len(), 1, "the CONNECT reply");
        (s, sid)
    }

    fn run(&self, cmd: SocketIoCommand) {
        self.layer.execute(cmd);
    }

    fn broadcast(&self, rooms: &[&str], except: &[&str], packet: &str) {
        self.run(SocketIoCommand::Emit {
            nsp: "/".into(),
            target: Target::Broadcast(BroadcastOptions {
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
                except: except.iter().map(|r| r.to_string()).collect(),
                ..BroadcastOptions::default()
            }),
            frames: vec![Frame::Text(text(packet))],
        });
    }

    fn join(&self, sid: &str, room: &str) {
        self.run(SocketIoCommand::Join {
            nsp: "/".into(),
            sid: sid.into(),
            room: room.into(),
        });
    }

    fn rooms(&self, nsp: &str, sid: &str) -> Vec<String> {
        let (reply, answer) = sync_channel(1);
        self.run(SocketIoCommand::Rooms {
            nsp: nsp.into(),
            sid: sid.into(),
            reply,
        });
        answer.try_recv().expect("answered at once")
    }
}

/// What the session would write, as text (binary frames as `<bin:len>`).
fn sent(s: &EngineSession) -> Vec<String> {
    s.take()
        .0
        .into_iter()
        .map(|f| match f {
            Frame::Text(t) | Frame::PlainText(t) => String::from_utf8(t.to_vec()).unwrap(),
            Frame::Binary(b) | Frame::PlainBinary(b) => format!("<bin:{}>", b.len()),
        })
        .collect()
}

#[test]
fn the_connect_reply_goes_before_the_frames_held_while_pending() {
    let h = harness();
    let s = h.open("e1");
    let sid = h.connect(&s, "/");
    h.run(SocketIoCommand::Emit {
        nsp: "/".into(),
        target: Target::Socket(sid.to_string()),
        frames: vec![Frame::Text(text("42[\"direct\"]"))],
    });
    h.broadcast(&[], &[], "42[\"all\"]");
    assert!(sent(&s).is_empty(), "held until the host accepts");
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    assert_eq!(
        sent(&s),
        [
            format!("40{{\"sid\":\"{sid}\"}}"),
            "42[\"direct\"]".to_owned(),
            "42[\"all\"]".to_owned()
        ]
    );
    h.broadcast(&[], &[], "42[\"after\"]");
    assert_eq!(
        sent(&s),
        ["42[\"after\"]"],
        "delivered at once after the accept"
    );
}

#[test]
fn events_and_acks_reach_the_host_with_their_attachments() {
    let h = harness();
    let (s, sid) = h.joined("e1");
    h.layer
        .on_message(&s, text("51-3[\"up\",{\"_placeholder\":true,\"num\":0}]"))
        .unwrap();
    assert!(h.drain().is_empty(), "held until its attachment arrives");
    h.layer.on_binary(&s, Bytes::from_static(&[1, 2])).unwrap();
    h.layer.on_message(&s, text("27[\"hi\",1]")).unwrap();
    h.layer.on_message(&s, text("39[]")).unwrap();
    match h.drain().as_slice() {
        [SocketIoInbound::Event {
            ack_id: Some(3),
            attachments: a2,
            ..
        }, SocketIoInbound::Event {
            sid: s1,
            ack_id: Some(7),
            attachments: a1,
            ..
        }, SocketIoInbound::Ack { ack_id: 9, .. }] => {
            assert_eq!(s1, &sid);
            assert!(a1.is_empty());
            assert_eq!(a2, &[Bytes::from_static(&[1, 2])]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_binary_packet_for_another_namespace_is_dropped_whole() {
    let h = harness();
    let (s, _) = h.joined("e1");
    h.layer
        .on_message(
            &s,
            text("51-/other,[\"x\",{\"_placeholder\":true,\"num\":0}]"),
        )
        .unwrap();
    // Its attachment belongs to it: not a stray attachment that breaks the connection.
    h.layer.on_binary(&s, Bytes::from_static(&[1])).unwrap();
    assert!(h.drain().is_empty());
    h.layer.on_message(&s, text("2[\"next\"]")).unwrap();
    assert_eq!(h.drain().len(), 1);
}

#[test]
fn fan_out_with_except_rooms_and_sid_as_room() {
    let h = harness();
    let (sa, a) = h.joined("ea");
    let (sb, b) = h.joined("eb");
    let (sc, c) = h.joined("ec");
    h.join(&a, "r");
    h.join(&b, "r");
    let got = |want: [bool; 3]| {
        for (s, w) in [&sa, &sb, &sc].into_iter().zip(want) {
            assert_eq!(sent(s).len(), usize::from(w));
        }
    };
    h.broadcast(&["r"], &[&a], "42[\"1\"]");
    got([false, true, false]);
    h.broadcast(&[], &["r"], "42[\"2\"]");
    got([false, false, true]);
    h.broadcast(&[&c, "r"], &[&b], "42[\"3\"]");
    got([true, false, true]);
    h.broadcast(&[], &[], "42[\"4\"]");
    got([true, true, true]);
    h.broadcast(&["nobody"], &[], "42[\"5\"]");
    got([false, false, false]);
}

#[test]
fn a_broadcast_with_ack_reports_how_many_clients_it_reached() {
    let h = harness();
    let (sa, a) = h.joined("ea");
    let (sb, b) = h.joined("eb");
    let (sc, _c) = h.joined("ec");
    h.join(&a, "r");
    h.join(&b, "r");
    let emit = |rooms: &[&str], nsp: &str, ack_id: u64| {
        h.run(SocketIoCommand::EmitWithAck {
            nsp: nsp.into(),
            opts: BroadcastOptions {
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
                ..BroadcastOptions::default()
            },
            frames: vec![Frame::Text(text(&format!("2{ack_id}[\"ask\"]")))],
            ack_id,
        });
        match h.drain().as_slice() {
            [SocketIoInbound::BroadcastReach {
                nsp: n,
                ack_id: id,
                clients,
            }] if &**n == nsp && *id == ack_id => *clients,
            other => panic!("expected one BroadcastReach, got {other:?}"),
        }
    };
    assert_eq!(emit(&["r"], "/", 7), 2);
    // one packet, one ack id, for every recipient (as Node's BroadcastOperator)
    assert_eq!(sent(&sa), ["27[\"ask\"]"]);
    assert_eq!(sent(&sb), ["27[\"ask\"]"]);
    assert!(sent(&sc).is_empty());
    assert_eq!(emit(&[], "/", 8), 3);
    assert_eq!(emit(&["nobody"], "/", 9), 0);
    // a namespace nobody joined still gets its answer
    assert_eq!(emit(&[], "/nowhere", 10), 0);
    for s in [&sa, &sb, &sc] {
        s.take();
    }
}

#[test]
fn join_leave_close_room_and_the_rooms_query() {
    let h = harness();
    let (_s, a) = h.joined("ea");
    let (_t, b) = h.joined("eb");
    assert_eq!(h.rooms("/", &a), [a.to_string()]);
    h.join(&a, "r1");
    h.join(&a, "r2");
    h.join(&a, "r2");
    h.join(&b, "r2");
    assert_eq!(h.rooms("/", &a), [a.to_string(), "r1".into(), "r2".into()]);
    h.run(SocketIoCommand::Leave {
        nsp: "/".into(),
        sid: a.to_string(),
        room: "r1".into(),
    });
    assert_eq!(h.rooms("/", &a), [a.to_string(), "r2".into()]);
    h.run(SocketIoCommand::CloseRoom {
        nsp: "/".into(),
        room: "r2".into(),
    });
    assert_eq!(h.rooms("/", &a), [a.to_string()]);
    assert_eq!(h.rooms("/", &b), [b.to_string()]);
    assert!(h.rooms("/", "unknown").is_empty());
    assert!(h.rooms("/nowhere", &a).is_empty());
}

#[test]
fn disconnect_reasons_client_server_and_transport() {
    let h = harness();
    let (s, a) = h.joined("e1");
    h.layer.on_message(&s, text("1")).unwrap();
    assert!(matches!(
        h.drain().as_slice(),
        [SocketIoInbound::Disconnect { sid, reason: DisconnectReason::ClientDisconnect, .. }] if *sid == a
    ));

    let b = h.connect(&s, "/");
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: b.to_string(),
    });
    h.join(&b, "r");
    h.run(SocketIoCommand::Disconnect {
        nsp: "/".into(),
        sid: b.to_string(),
    });
    assert!(matches!(
        h.drain().as_slice(),
        [SocketIoInbound::Disconnect { sid, reason: DisconnectReason::ServerDisconnect, .. }] if *sid == b
    ));
    assert_eq!(sent(&s).last().map(String::as_str), Some("41"));
    assert!(h.rooms("/", &b).is_empty(), "its rooms went with it");

    let c = h.connect(&s, "/");
    let d = h.connect(&s, "/admin");
    h.layer.on_close(&s, DisconnectReason::TransportClose);
    let mut gone: Vec<(Arc<str>, DisconnectReason)> = h
        .drain()
        .into_iter()
        .map(|item| match item {
            SocketIoInbound::Disconnect { sid, reason, .. } => (sid, reason),
            other => panic!("{other:?}"),
        })
        .collect();
    gone.sort();
    let mut want = vec![
        (c, DisconnectReason::TransportClose),
        (d, DisconnectReason::TransportClose),
    ];
    want.sort();
    assert_eq!(gone, want);
    assert!(h.layer.has_sockets("e1"), "a gone session counts as done");
}

#[test]
fn a_rejected_socket_is_gone() {
    let h = harness();
    let s = h.open("e1");
    let a = h.connect(&s, "/admin");
    h.run(SocketIoCommand::Reject {
        nsp: "/admin".into(),
        sid: a.to_string(),
        data: text("{\"message\":\"no\"}"),
    });
    assert_eq!(sent(&s), ["44/admin,{\"message\":\"no\"}"]);
    assert!(!h.layer.has_sockets("e1"));
    assert!(h.rooms("/admin", &a).is_empty());
    h.run(SocketIoCommand::Emit {
        nsp: "/admin".into(),
        target: Target::Socket(a.to_string()),
        frames: vec![Frame::Text(text("42/admin,[\"x\"]"))],
    });
    assert!(sent(&s).is_empty());
    assert!(h.drain().is_empty(), "a reject is no disconnect");
}

const ONE: &str = "51-[\"up\",{\"_placeholder\":true,\"num\":0}]";
const TWO: &str = "52-[\"up\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";

#[test]
fn too_many_attachments_is_a_protocol_error() {
    let h = harness_with(ServerConfig {
        max_attachments: 1,
        ..ServerConfig::default()
    });
    let (s, _) = h.joined("e1");
    assert!(h.layer.on_message(&s, text(ONE)).is_ok());
    h.layer.on_binary(&s, Bytes::from_static(&[0])).unwrap();
    assert_eq!(
        h.layer.on_message(&s, text(TWO)),
        Err(ProtocolError::TooManyAttachments(2))
    );
}

#[test]
fn too_many_attachment_bytes_is_a_protocol_error() {
    let h = harness_with(ServerConfig {
        max_attachment_bytes: Some(4),
        ..ServerConfig::default()
    });
    let (s, _) = h.joined("e1");
    h.layer.on_message(&s, text(TWO)).unwrap();
    h.layer.on_binary(&s, Bytes::from_static(&[0; 3])).unwrap();
    assert_eq!(
        h.layer.on_binary(&s, Bytes::from_static(&[0; 2])),
        Err(ProtocolError::PacketTooLarge(4))
    );
    assert!(h.drain().is_empty());
}

#[test]
fn attachments_that_do_not_arrive_in_time_fail_the_tick() {
    let h = harness_with(ServerConfig {
        attachment_timeout: Duration::ZERO,
        ..ServerConfig::default()
    });
    let (s, _) = h.joined("e1");
    assert_eq!(h.layer.on_tick(&s), Ok(()), "nothing pending");
    h.layer.on_message(&s, text(ONE)).unwrap();
    assert_eq!(h.layer.on_tick(&s), Err(ProtocolError::AttachmentTimeout));
}

#[test]
fn the_default_limits_follow_max_payload() {
    let config = ServerConfig {
        max_payload: 1234,
        ..ServerConfig::default()
    };
    let limits = config.attachment_limits();
    assert_eq!(limits.max_bytes, 1234);
    assert_eq!(limits.max_attachments, 10);
    assert_eq!(limits.timeout, Duration::from_secs(30));
}

#[test]
fn namespaces_per_connection_are_bounded() {
    let h = harness();
    let s = h.open("e1");
    for i in 0..MAX_NAMESPACES_PER_CONNECTION {
        h.connect(&s, &format!("/n{i}"));
    }
    let over = format!("/n{MAX_NAMESPACES_PER_CONNECTION}");
    h.layer.on_message(&s, text(&format!("0{over},"))).unwrap();
    assert!(h.drain().is_empty(), "the host is not asked");
    assert_eq!(
        sent(&s),
        vec![format!(
            "44{over},{{\"message\":\"Too many namespaces on this connection\"}}"
        )]
    );
    assert!(s.closed().is_none(), "the connection stays");
}

#[test]
fn abort_closes_the_whole_connection_as_a_transport_error() {
    let h = harness();
    let (s, sid) = h.joined("e1");
    h.run(SocketIoCommand::Abort {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    assert_eq!(s.closed(), Some(DisconnectReason::TransportError));
}

fn volatile_broadcast(h: &Harness, packet: &str) {
    h.run(SocketIoCommand::Emit {
        nsp: "/".into(),
        target: Target::Broadcast(BroadcastOptions {
            flags: crate::socketio::adapter::BroadcastFlags {
                volatile: true,
                ..Default::default()
            },
            ..BroadcastOptions::default()
        }),
        frames: vec![Frame::Text(text(packet))],
    });
}

#[test]
fn a_volatile_broadcast_skips_only_the_clients_that_cannot_take_it() {
    let h = harness();
    let (ready, _) = h.joined("e1");
    let (stalled, _) = h.joined("e2");
    stalled.set_backlog(10); // its socket has not taken everything yet
    volatile_broadcast(&h, "42[\"pos\"]");
    assert_eq!(sent(&ready), ["42[\"pos\"]"]);
    assert!(sent(&stalled).is_empty());
    assert_eq!(
        stalled.closed(),
        None,
        "dropping a volatile packet closes nothing"
    );
    h.broadcast(&[], &[], "42[\"after\"]");
    assert_eq!(
        sent(&stalled),
        ["42[\"after\"]"],
        "the flag does not outlive its emit"
    );
}

#[test]
fn frames_held_while_a_connect_is_pending_are_bounded() {
    let h = harness();
    let addr = "127.0.0.1:1".parse().unwrap();
    let hs = Handshake::new("GET", "/socket.io/", "EIO=4", [], addr, addr);
    let s = EngineSession::bounded("e1".into(), hs, TransportKind::WebSocket, 100);
    h.layer.on_open(&s);
    let sid = h.connect(&s, "/");
    volatile_broadcast(&h, "42[\"lost\"]"); // nothing reaches a client before its CONNECT reply
    h.broadcast(&[], &[], &format!("42[\"{}\"]", "x".repeat(60)));
    assert_eq!(s.closed(), None, "66 bytes held: within the bound");
    h.broadcast(&[], &[], &format!("42[\"{}\"]", "x".repeat(60)));
    assert_eq!(s.closed(), Some(DisconnectReason::BufferFull));
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    assert!(sent(&s).is_empty(), "nothing is queued on a closed session");
}

#[test]
fn the_host_queue_counts_what_each_connection_pushed() {
    let inbound = InboundQueue::with_budget(InboundBudget::new(200, usize::MAX)).unwrap();
    let h = Harness {
        layer: SocketIoLayer::new(inbound.clone(), &ServerConfig::default()),
        inbound,
    };
    let (s, _) = h.joined("e1");
    h.drain();
    let budget = h.layer.inbound_budget().expect("the layer has a budget");
    h.layer.on_message(&s, text("2[\"a\"]")).unwrap();
    assert_eq!(budget.must_wait(&s.inbound), None);
    h.layer
        .on_message(&s, text(&format!("2[\"{}\"]", "x".repeat(200))))
        .unwrap();
    assert!(budget.must_wait(&s.inbound).is_some(), "past its bound");
    assert_eq!(h.drain().len(), 2);
    assert_eq!(budget.must_wait(&s.inbound), None, "the drain took it all");
}

impl Harness {
    /// An Engine.IO v3 session (a socket.io-client 2.x), opened.
    fn open_v3(&self, eio_sid: &str) -> Arc<EngineSession> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/socket.io/", "EIO=3", [], addr, addr);
        let s = EngineSession::bounded_with_protocol(
            eio_sid.into(),
            hs,
            TransportKind::WebSocket,
            usize::MAX,
            crate::engineio::v3::Protocol::V3 { base64: false },
        );
        self.layer.on_open(&s);
        s
    }
}

#[test]
fn a_v3_session_joins_the_main_namespace_at_once_and_gets_v4_replies() {
    let h = harness();
    let s = h.open_v3("e1");
    let main = match h.drain().as_slice() {
        [SocketIoInbound::Connect { sid, nsp, auth, .. }] if &**nsp == "/" => {
            assert!(auth.is_empty(), "no auth in Socket.IO v4");
            sid.clone()
        }
        other => panic!("expected the implicit Connect to /, got {other:?}"),
    };
    assert!(h.layer.has_sockets("e1"));
    assert_eq!(&*main, "e1", "the id the client computes");
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: main.to_string(),
    });
    assert_eq!(sent(&s), ["40"], "no sid payload in v4");
    // A repeated CONNECT to / changes nothing; another namespace with a query is joined
    // under its name alone.
    h.layer.on_message(&s, text("0")).unwrap();
    assert!(h.drain().is_empty());
    h.layer.on_message(&s, text("0/chat?token=1,")).unwrap();
    let chat = match h.drain().as_slice() {
        [SocketIoInbound::Connect { sid, nsp, .. }] if &**nsp == "/chat" => sid.clone(),
        other => panic!("expected a Connect to /chat, got {other:?}"),
    };
    assert_eq!(&*chat, "/chat#e1");
    h.run(SocketIoCommand::Accept {
        nsp: "/chat".into(),
        sid: chat.to_string(),
    });
    assert_eq!(sent(&s), ["40/chat,"]);
    // Refusals are ERROR packets with the data, or the message as a string.
    h.layer.on_message(&s, text("0/a,")).unwrap();
    h.layer.on_message(&s, text("0/b,")).unwrap();
    let refused: Vec<_> = h
        .drain()
        .into_iter()
        .map(|i| match i {
            SocketIoInbound::Connect { sid, nsp, .. } => (nsp, sid),
            other => panic!("{other:?}"),
        })
        .collect();
    h.run(SocketIoCommand::Reject {
        nsp: refused[0].0.to_string(),
        sid: refused[0].1.to_string(),
        data: text(r#"{"message":"no"}"#),
    });
    h.run(SocketIoCommand::Reject {
        nsp: refused[1].0.to_string(),
        sid: refused[1].1.to_string(),
        data: text(r#"{"message":"no","data":{"why":1}}"#),
    });
    assert_eq!(sent(&s), [r#"44/a,"no""#, r#"44/b,{"why":1}"#]);
}

#[test]
fn a_broadcast_reaches_v3_and_v4_sessions_with_the_same_frames() {
    let h = harness();
    let (v4, _) = h.joined("e4");
    let v3 = h.open_v3("e3");
    let sid = match h.drain().as_slice() {
        [SocketIoInbound::Connect { sid, .. }] => sid.clone(),
        other => panic!("{other:?}"),
    };
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    sent(&v3);
    h.broadcast(&[], &[], "42[\"news\"]");
    let (a, b) = (v4.take().0, v3.take().0);
    assert_eq!(a, b);
    let (Frame::Text(a), Frame::Text(b)) = (&a[0], &b[0]) else {
        panic!("text frames")
    };
    assert_eq!(a.as_ptr(), b.as_ptr(), "one encoding, shared");
}

#[test]
fn without_recovery_nothing_is_stamped_and_the_reply_has_no_pid() {
    let h = harness();
    let s = h.open("e1");
    let sid = h.connect(&s, "/");
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    assert_eq!(sent(&s), vec![format!("40{{\"sid\":\"{sid}\"}}")]);
    h.broadcast(&[], &[], r#"42["a",1]"#);
    assert_eq!(sent(&s), vec![r#"42["a",1]"#.to_string()]);
    assert_eq!(h.layer.recovery_stats(), (0, 0, 0));
}

#[test]
fn a_lost_socket_comes_back_with_its_sid_rooms_and_missed_packets() {
    let h = harness_with(ServerConfig {
        recovery: Some(RecoveryConfig::default()),
        ..ServerConfig::default()
    });
    let s = h.open("e1");
    let sid = h.connect(&s, "/");
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    let reply = sent(&s).remove(0);
    let pid = reply
        .split("\"pid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a pid in the CONNECT reply")
        .to_owned();
    h.join(&sid, "r");
    h.broadcast(&[], &[], r#"42["a",1]"#);
    let got = sent(&s);
    let offset = got[0]
        .rsplit("\"")
        .nth(1)
        .expect("an offset as the last argument")
        .to_owned();
    assert!(got[0].starts_with(r#"42["a",1,""#), "{got:?}");
    h.layer.on_close(&s, DisconnectReason::TransportClose);
    let gone = h.drain();
    assert!(
        matches!(
            gone.as_slice(),
            [
                SocketIoInbound::Kept { .. },
                SocketIoInbound::Disconnect { .. }
            ]
        ),
        "{gone:?}"
    );
    h.broadcast(&["r"], &[], r#"42["b",2]"#);
    h.broadcast(&["other"], &[], r#"42["c",3]"#);
    h.broadcast(&[], &["r"], r#"42["d",4]"#);
    assert_eq!(h.layer.recovery_stats().0, 1);

    let s2 = h.open("e2");
    let auth = format!(r#"0{{"pid":"{pid}","offset":"{offset}"}}"#);
    h.layer.on_message(&s2, text(&auth)).unwrap();
    match h.drain().as_slice() {
        [SocketIoInbound::Connect {
            sid: back,
            recovered: true,
            ..
        }] => assert_eq!(back, &sid),
        other => panic!("expected a recovered Connect, got {other:?}"),
    }
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    let got = sent(&s2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("40{") && got[0].contains(&pid));
    assert!(got[1].starts_with(r#"42["b",2,""#), "{got:?}");
    assert_eq!(h.rooms("/", &sid), vec![sid.to_string(), "r".to_string()]);
    assert_eq!(h.layer.recovery_stats().0, 0, "a session is taken once");
}

/// The frames a session would send, as msgpack packets decoded back to JSON form.
fn sent_msgpack(s: &EngineSession) -> Vec<(PacketType, String, String)> {
    s.take()
        .0
        .into_iter()
        .map(|f| match f {
            Frame::Binary(b) | Frame::PlainBinary(b) => {
                let (p, _) = msgpack::decode(&b, 10).unwrap();
                (
                    p.kind,
                    String::from_utf8(p.nsp.to_vec()).unwrap(),
                    String::from_utf8(p.data.to_vec()).unwrap(),
                )
            }
            Frame::Text(t) | Frame::PlainText(t) => {
                panic!("a text frame on a msgpack connection: {t:?}")
            }
        })
        .collect()
}

#[test]
fn a_msgpack_server_reads_and_writes_one_binary_message_per_packet() {
    let h = harness_with(ServerConfig {
        parser: Parser::MsgPack,
        ..ServerConfig::default()
    });
    let s = h.open("e1");
    let connect = Parser::MsgPack.connect("/", br#"{"t":1}"#).unwrap();
    let Frame::Binary(connect) = connect else {
        panic!()
    };
    h.layer.on_binary(&s, connect).unwrap();
    let sid = match h.drain().as_slice() {
        [SocketIoInbound::Connect { sid, auth, .. }] => {
            assert_eq!(&auth[..], br#"{"t":1}"#);
            sid.clone()
        }
        other => panic!("{other:?}"),
    };
    h.run(SocketIoCommand::Accept {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    let reply = sent_msgpack(&s);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].0, PacketType::Connect);
    assert_eq!(reply[0].2, format!("{{\"sid\":\"{sid}\"}}"));

    // An event with an inline binary reaches the host as JSON + attachment.
    let frames = Parser::MsgPack
        .packet_frames(
            PacketType::Event,
            "/",
            Some(4),
            br#"["up",{"_placeholder":true,"num":0}]"#,
            vec![Bytes::from_static(&[9])],
        )
        .unwrap();
    let [Frame::Binary(event)] = frames.as_slice() else {
        panic!()
    };
    h.layer.on_binary(&s, event.clone()).unwrap();
    match h.drain().as_slice() {
        [SocketIoInbound::Event {
            ack_id,
            data,
            attachments,
            ..
        }] => {
            assert_eq!(*ack_id, Some(4));
            assert_eq!(&data[..], br#"["up",{"_placeholder":true,"num":0}]"#);
            assert_eq!(attachments, &[Bytes::from_static(&[9])]);
        }
        other => panic!("{other:?}"),
    }

    // The engine's own packets are msgpack too; a text message is a protocol error.
    h.run(SocketIoCommand::Disconnect {
        nsp: "/".into(),
        sid: sid.to_string(),
    });
    assert_eq!(
        sent_msgpack(&s),
        [(PacketType::Disconnect, "/".to_owned(), String::new())]
    );
    assert_eq!(
        h.layer.on_message(&s, text("0")),
        Err(ProtocolError::TextWithMsgPack)
    );
}

#[test]
fn a_json_server_refuses_a_msgpack_packet_clearly() {
    let h = harness();
    let s = h.open("e1");
    let Frame::Binary(connect) = Parser::MsgPack.connect("/", b"").unwrap() else {
        panic!()
    };
    let err = h.layer.on_binary(&s, connect).unwrap_err();
    assert_eq!(err, ProtocolError::UnexpectedAttachment);
    assert!(err.to_string().contains("msgpack"));
}
