//! The client engine against ferrosio's own server engine, in process: every transport, acks,
//! binary attachments, a server-side close, and the heartbeat deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::bridge::{Inbound, SocketIoCommand, SocketIoInbound, Target};
use crate::engineio::packet::Frame;
use crate::server::ServerHandle;
use crate::socketio::packet::{encode_message, PacketType};
use crate::ServerConfig;

/// A server whose host accepts every namespace and acks every event with its own data.
struct EchoServer {
    handle: Arc<ServerHandle>,
    stop: Arc<AtomicBool>,
    host: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(config: ServerConfig) -> Self {
        let handle = Arc::new(ServerHandle::start(config, "127.0.0.1:0").unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (handle.clone(), stop.clone());
        let host = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for item in h.drain() {
                    match item {
                        Inbound::SocketIo(SocketIoInbound::Connect { sid, nsp, .. }) => {
                            let _ = h.command(
                                SocketIoCommand::Accept {
                                    nsp: nsp.to_string(),
                                    sid: sid.to_string(),
                                }
                                .into(),
                            );
                        }
                        Inbound::SocketIo(SocketIoInbound::Event {
                            sid,
                            nsp,
                            ack_id: Some(id),
                            data,
                            attachments,
                        }) => {
                            let kind = if attachments.is_empty() {
                                PacketType::Ack
                            } else {
                                PacketType::BinaryAck
                            };
                            let mut frames = vec![Frame::Text(encode_message(
                                kind,
                                &nsp,
                                Some(id),
                                attachments.len(),
                                &data,
                            ))];
                            frames.extend(attachments.into_iter().map(Frame::Binary));
                            let _ = h.command(
                                SocketIoCommand::Emit {
                                    nsp: nsp.to_string(),
                                    target: Target::Socket(sid.to_string()),
                                    frames,
                                }
                                .into(),
                            );
                        }
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        EchoServer {
            handle,
            stop,
            host: Some(host),
        }
    }

    fn port(&self) -> u16 {
        self.handle.local_addr().port()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.host.take() {
            let _ = h.join();
        }
        self.handle.shutdown(Duration::from_millis(100));
    }
}

fn target(port: u16, websocket: bool, polling: bool) -> Box<ConnectTarget> {
    Box::new(ConnectTarget {
        host: "127.0.0.1".into(),
        port,
        path: "/socket.io/".into(),
        query: String::new(),
        headers: vec![("x-test".into(), "1".into())],
        websocket,
        polling,
        upgrade: true,
        request_timeout: Duration::from_secs(5),
        tls: None,
        attachment_limits: Default::default(),
        in_process: None,
        parser: Default::default(),
    })
}

/// Drains until `pred` matches an item (returned), within 10 s; items before it go to `seen`,
/// items after it stay queued in `seen`'s pending tail for the next call.
fn wait_for(
    client: &ClientHandle,
    seen: &mut Vec<ClientInbound>,
    pred: impl Fn(&ClientInbound) -> bool,
) -> ClientInbound {
    thread_local! {
        static PENDING: std::cell::RefCell<std::collections::VecDeque<ClientInbound>> =
            std::cell::RefCell::default();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.extend(client.drain());
            while let Some(item) = p.pop_front() {
                if pred(&item) {
                    return Some(item);
                }
                seen.push(item);
            }
            None
        });
        if let Some(item) = found {
            return item;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; last seen: {:?}",
            &seen[seen.len().saturating_sub(5)..]
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn text(kind: PacketType, nsp: &str, ack: Option<u64>, n: usize, data: &[u8]) -> Frame {
    Frame::Text(encode_message(kind, nsp, ack, n, data))
}

fn round_trip(websocket: bool, polling: bool, expect_upgrade: bool) {
    round_trip_on(websocket, polling, expect_upgrade, false);
}

/// With `in_process`, the same through an in-process connection (its target asks for
/// `polling`/`websocket` as given; the connection is an in-process WebSocket whatever they say).
fn round_trip_on(websocket: bool, polling: bool, expect_upgrade: bool, in_process: bool) {
    let server = EchoServer::start(ServerConfig::default());
    let client = ClientHandle::start().unwrap();
    let mut seen = Vec::new();
    let mut to = target(server.port(), websocket, polling);
    if in_process {
        to.in_process = Some(server.handle.in_process());
    }
    let polling = polling && !in_process;
    client
        .command(ClientCommand::Connect { gen: 1, target: to })
        .unwrap();
    let open = wait_for(&client, &mut seen, |i| {
        matches!(i, ClientInbound::Open { .. })
    });
    let ClientInbound::Open { transport, .. } = open else {
        unreachable!()
    };
    assert_eq!(
        transport,
        if polling {
            TransportName::Polling
        } else {
            TransportName::WebSocket
        }
    );
    for nsp in ["/", "/admin"] {
        client
            .command(ClientCommand::Send {
                gen: 1,
                frames: vec![text(
                    PacketType::Connect,
                    nsp,
                    None,
                    0,
                    b"{\"token\":\"x\"}",
                )],
            })
            .unwrap();
        let c = wait_for(&client, &mut seen, |i| {
            matches!(i, ClientInbound::Connect { .. })
        });
        let ClientInbound::Connect { nsp: got, data, .. } = c else {
            unreachable!()
        };
        assert_eq!(got, nsp);
        assert!(data.starts_with(b"{\"sid\":"));
    }
    // a stale generation is dropped
    client
        .command(ClientCommand::Send {
            gen: 0,
            frames: vec![text(PacketType::Event, "/", Some(99), 0, b"[\"stale\"]")],
        })
        .unwrap();
    for i in 0..200u64 {
        let data = format!("[\"echo\",{i}]");
        client
            .command(ClientCommand::Send {
                gen: 1,
                frames: vec![text(
                    PacketType::Event,
                    "/admin",
                    Some(i),
                    0,
                    data.as_bytes(),
                )],
            })
            .unwrap();
    }
    for i in 0..200u64 {
        let a = wait_for(&client, &mut seen, |x| {
            matches!(x, ClientInbound::Ack { .. })
        });
        let ClientInbound::Ack {
            ack_id, data, nsp, ..
        } = a
        else {
            unreachable!()
        };
        assert_eq!((ack_id, nsp.as_str()), (i, "/admin"));
        assert_eq!(data, Bytes::from(format!("[\"echo\",{i}]")));
    }
    // binary attachments both ways
    client
        .command(ClientCommand::Send {
            gen: 1,
            frames: vec![
                text(
                    PacketType::BinaryEvent,
                    "/",
                    Some(500),
                    2,
                    br#"["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
                ),
                Frame::Binary(Bytes::from_static(&[1, 2, 3])),
                Frame::Binary(Bytes::from_static(&[0, 255])),
            ],
        })
        .unwrap();
    let a = wait_for(&client, &mut seen, |x| {
        matches!(x, ClientInbound::Ack { .. })
    });
    let ClientInbound::Ack {
        ack_id,
        attachments,
        ..
    } = a
    else {
        unreachable!()
    };
    assert_eq!(ack_id, 500);
    assert_eq!(
        attachments,
        vec![
            Bytes::from_static(&[1, 2, 3]),
            Bytes::from_static(&[0, 255])
        ]
    );
    assert!(!seen
        .iter()
        .any(|i| matches!(i, ClientInbound::Ack { ack_id: 99, .. })));
    assert_eq!(
        expect_upgrade,
        seen.iter()
            .any(|i| matches!(i, ClientInbound::Upgraded { gen: 1 }))
    );
    client.command(ClientCommand::Close { gen: 1 }).unwrap();
    let c = wait_for(&client, &mut seen, |x| {
        matches!(x, ClientInbound::Closed { .. })
    });
    assert!(matches!(
        c,
        ClientInbound::Closed {
            gen: 1,
            reason: DisconnectReason::ClientDisconnect,
            ..
        }
    ));
    client.shutdown();
    assert!(!client.is_running());
}

#[test]
fn websocket_round_trip() {
    round_trip(true, false, false);
}

#[test]
fn polling_round_trip() {
    round_trip(false, true, false);
}

#[test]
fn upgraded_round_trip() {
    round_trip(true, true, true);
}

#[test]
fn in_process_round_trip() {
    round_trip_on(true, true, false, true);
}

#[test]
fn in_process_refusal_and_server_shutdown() {
    // A path the server does not serve: refused as the handshake of a WebSocket would be.
    let server = EchoServer::start(ServerConfig::default());
    let client = ClientHandle::start().unwrap();
    let mut seen = Vec::new();
    let mut to = target(0, true, false);
    to.path = "/elsewhere/".into();
    to.in_process = Some(server.handle.in_process());
    client
        .command(ClientCommand::Connect { gen: 1, target: to })
        .unwrap();
    let c = wait_for(&client, &mut seen, |x| {
        matches!(x, ClientInbound::Closed { .. })
    });
    let ClientInbound::Closed { reason, detail, .. } = c else {
        unreachable!()
    };
    assert_eq!(reason, DisconnectReason::ConnectError);
    assert!(detail.contains("404"), "{detail}");

    // The server shuts down under an open connection: the client sees the transport close.
    let mut to = target(0, true, false);
    to.in_process = Some(server.handle.in_process());
    client
        .command(ClientCommand::Connect { gen: 2, target: to })
        .unwrap();
    wait_for(&client, &mut seen, |i| {
        matches!(i, ClientInbound::Open { gen: 2, .. })
    });
    let in_process = server.handle.in_process();
    drop(server);
    let c = wait_for(&client, &mut seen, |x| {
        matches!(x, ClientInbound::Closed { .. })
    });
    let ClientInbound::Closed { gen, reason, .. } = c else {
        unreachable!()
    };
    assert_eq!(gen, 2);
    assert!(
        matches!(
            reason,
            DisconnectReason::TransportClose | DisconnectReason::TransportError
        ),
        "{reason:?}"
    );
    // ... and a stopped server refuses new connections at once.
    let mut to = target(0, true, false);
    to.in_process = Some(in_process);
    client
        .command(ClientCommand::Connect { gen: 3, target: to })
        .unwrap();
    let c = wait_for(&client, &mut seen, |x| {
        matches!(x, ClientInbound::Closed { gen: 3, .. })
    });
    let ClientInbound::Closed { reason, detail, .. } = c else {
        unreachable!()
    };
    assert_eq!(reason, DisconnectReason::ConnectError);
    assert!(detail.contains("not running"), "{detail}");
}

#[test]
fn refused_connection_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = ClientHandle::start().unwrap();
    let mut seen = Vec::new();
    for (gen, ws, polling) in [(1, true, false), (2, false, true)] {
        client
            .command(ClientCommand::Connect {
                gen,
                target: target(port, ws, polling),
            })
            .unwrap();
        let c = wait_for(&client, &mut seen, |x| {
            matches!(x, ClientInbound::Closed { .. })
        });
        let ClientInbound::Closed { gen: g, reason, .. } = c else {
            unreachable!()
        };
        assert_eq!((g, reason), (gen, DisconnectReason::ConnectError));
    }
}

#[test]
fn server_shutdown_is_a_transport_close_and_silence_a_ping_timeout() {
    for polling in [false, true] {
        // A generous ping timeout: on a loaded machine the client may answer late, and being
        // late is not what this checks.
        let server = EchoServer::start(ServerConfig {
            ping_interval: Duration::from_millis(100),
            ping_timeout: Duration::from_millis(2_000),
            ..ServerConfig::default()
        });
        let client = ClientHandle::start().unwrap();
        let mut seen = Vec::new();
        client
            .command(ClientCommand::Connect {
                gen: 7,
                target: target(server.port(), !polling, polling),
            })
            .unwrap();
        wait_for(&client, &mut seen, |i| {
            matches!(i, ClientInbound::Open { .. })
        });
        // several ping periods pass: the client answers, so it stays connected
        std::thread::sleep(Duration::from_millis(600));
        assert!(!client
            .drain()
            .iter()
            .any(|i| matches!(i, ClientInbound::Closed { .. })));
        drop(server);
        let c = wait_for(&client, &mut seen, |x| {
            matches!(x, ClientInbound::Closed { .. })
        });
        let ClientInbound::Closed { reason, .. } = c else {
            unreachable!()
        };
        assert!(
            matches!(
                reason,
                DisconnectReason::TransportClose | DisconnectReason::TransportError
            ),
            "{reason:?}"
        );
    }
    // A server that accepts TCP and answers the handshake, then goes silent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tokio_tungstenite::tungstenite::accept(stream).unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            r#"0{"sid":"s","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000}"#,
        ))
        .unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let client = ClientHandle::start().unwrap();
    let mut seen = Vec::new();
    client
        .command(ClientCommand::Connect {
            gen: 1,
            target: target(port, true, false),
        })
        .unwrap();
    wait_for(&client, &mut seen, |i| {
        matches!(i, ClientInbound::Open { .. })
    });
    let t0 = Instant::now();
    let c = wait_for(&client, &mut seen, |x| {
        matches!(x, ClientInbound::Closed { .. })
    });
    assert!(matches!(
        c,
        ClientInbound::Closed {
            reason: DisconnectReason::PingTimeout,
            ..
        }
    ));
    assert!(t0.elapsed() < Duration::from_secs(2));
    silent.join().unwrap();
}
