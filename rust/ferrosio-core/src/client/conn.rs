//! One connection attempt, from handshake to close, driven by a single `select!` loop.
//!
//! Reads, writes, the long-poll, the upgrade probe and the heartbeat deadline are all futures
//! polled by the same loop, so a server that stops reading (its TCP window full) never stops us
//! from reading, and a server that hangs is noticed by the deadline whatever is in flight.
//! Writes coalesce: frames queued while a write is in flight go out together in the next one
//! (one WebSocket flush, or one polling POST of up to `maxPayload` bytes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::engineio::dispatch::{receive, PacketReceiver, Step};
use crate::engineio::packet::{encode_payload, EnginePacket, Frame};

use super::decoder::SocketDecoder;
use super::http::{request_path, ws_connect, HttpConn, Ws};
use super::tls::TlsConnector;
use super::{
    ClientCommand, ClientInbound, ConnectTarget, DisconnectReason, TransportName, WakeQueue,
};

type LocalFut<T> = Pin<Box<dyn Future<Output = T>>>;

/// Most inbound messages handled before handing a batch to the host.
const READ_BATCH: usize = 256;
/// Most commands applied in one go before going back to the sockets.
const COMMAND_BATCH: usize = 1024;

/// Polls an optional boxed future; pending forever when there is none.
struct Maybe<'a, T>(&'a mut Option<LocalFut<T>>);

impl<T> Future for Maybe<'_, T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut().0.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The next item of an optional stream; pending forever when there is none.
struct MaybeNext<'a, S>(&'a mut Option<S>);

impl<S: Stream + Unpin> Future for MaybeNext<'_, S> {
    type Output = Option<S::Item>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut().0.as_mut() {
            Some(s) => s.poll_next_unpin(cx),
            None => Poll::Pending,
        }
    }
}

#[derive(Deserialize)]
struct OpenPacket {
    sid: String,
    #[serde(default)]
    upgrades: Vec<String>,
    #[serde(rename = "pingInterval")]
    ping_interval: u64,
    #[serde(rename = "pingTimeout")]
    ping_timeout: u64,
    #[serde(rename = "maxPayload", default)]
    max_payload: Option<u64>,
}

enum Start {
    Ws(Box<Ws>),
    Polling(HttpConn),
}

struct Opened {
    start: Start,
    open: OpenPacket,
    raw: Bytes,
    /// Packets that came in the same polling response as the open packet.
    extra: Vec<EnginePacket>,
}

fn parse_open(json: &Bytes) -> Result<OpenPacket, String> {
    serde_json::from_slice(json).map_err(|e| format!("invalid open packet: {e}"))
}

async fn handshake(
    target: &Arc<ConnectTarget>,
    tls: Option<&TlsConnector>,
) -> Result<Opened, String> {
    if target.polling && target.in_process.is_none() {
        let mut conn = HttpConn::new(target.clone(), tls.cloned());
        let body = conn
            .request(&request_path(target, "polling", None), None)
            .await
            .map_err(|e| format!("handshake failed: {e}"))?;
        let mut packets = EnginePacket::decode_payload(&body)
            .map_err(|e| format!("invalid handshake response: {e}"))?
            .into_iter();
        let Some(EnginePacket::Open(raw)) = packets.next() else {
            return Err("the handshake response is not an open packet".into());
        };
        let open = parse_open(&raw)?;
        return Ok(Opened {
            start: Start::Polling(conn),
            open,
            raw,
            extra: packets.collect(),
        });
    }
    let mut ws = match &target.in_process {
        Some(server) => super::in_process::connect(server, target).await?,
        None if !target.websocket => return Err("no transport enabled".into()),
        None => ws_connect(target, tls, None).await?,
    };
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let Ok(EnginePacket::Open(raw)) = EnginePacket::decode_text(Bytes::from(t)) else {
                    return Err("the first websocket message is not an open packet".into());
                };
                let open = parse_open(&raw)?;
                return Ok(Opened {
                    start: Start::Ws(Box::new(ws)),
                    open,
                    raw,
                    extra: Vec::new(),
                });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(other)) => return Err(format!("unexpected websocket message {other:?}")),
            Some(Err(e)) => return Err(format!("websocket error: {e}")),
            None => return Err("the server closed the websocket during the handshake".into()),
        }
    }
}

/// The WebSocket upgrade probe: a second connection with the session id, `2probe` -> `3probe`.
async fn probe(
    target: Arc<ConnectTarget>,
    tls: Option<TlsConnector>,
    sid: String,
) -> Result<Ws, String> {
    let attempt = async {
        let mut ws = ws_connect(&target, tls.as_ref(), Some(&sid)).await?;
        ws.send(Message::Text(Utf8Bytes::from_static("2probe")))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "3probe" => return Ok(ws),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                other => return Err(format!("upgrade probe failed: {other:?}")),
            }
        }
    };
    tokio::time::timeout(target.request_timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("upgrade probe timed out".into()))
}

enum WriteDone {
    Ws(SplitSink<Ws, Message>, Result<(), String>),
    Post(HttpConn, Result<(), String>),
}

async fn ws_write(mut sink: SplitSink<Ws, Message>, frames: Vec<Frame>) -> WriteDone {
    let result = async {
        for frame in frames {
            let msg = match frame {
                // A noop only releases a polling GET; it means nothing on a WebSocket.
                Frame::Text(b) if b.as_ref() == b"6" => continue,
                Frame::Text(b) | Frame::PlainText(b) => Message::Text(
                    Utf8Bytes::try_from(b).map_err(|_| "text frame is not UTF-8".to_owned())?,
                ),
                Frame::Binary(b) | Frame::PlainBinary(b) => Message::Binary(b),
            };
            sink.feed(msg).await.map_err(|e| e.to_string())?;
        }
        sink.flush().await.map_err(|e| e.to_string())
    }
    .await;
    WriteDone::Ws(sink, result)
}

async fn post(mut conn: HttpConn, path: String, body: Bytes, timeout: Duration) -> WriteDone {
    let result = match tokio::time::timeout(timeout, conn.request(&path, Some(body))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("POST timed out".into()),
    };
    WriteDone::Post(conn, result)
}

/// Takes the frames of one polling POST from the front of `outbox`: as many as fit in
/// `max_payload` bytes once encoded (at least one).
fn take_payload(outbox: &mut Vec<Frame>, max_payload: usize) -> Vec<Frame> {
    let mut size = 0usize;
    let mut n = 0usize;
    for frame in outbox.iter() {
        let len = match frame {
            Frame::Text(b) | Frame::PlainText(b) => b.len(),
            Frame::Binary(b) | Frame::PlainBinary(b) => 1 + b.len().div_ceil(3) * 4,
        } + 1;
        if n > 0 && size + len > max_payload {
            break;
        }
        size += len;
        n += 1;
    }
    if n == outbox.len() {
        std::mem::take(outbox)
    } else {
        outbox.drain(..n).collect()
    }
}

/// Why the connection loop stopped, and the command to handle next (if one interrupted it).
struct End {
    reason: DisconnectReason,
    detail: String,
    next: Option<ClientCommand>,
    /// A `Close` that flushed everything: end the WebSocket with a close frame too.
    graceful: bool,
}

impl End {
    fn new(reason: DisconnectReason, detail: impl Into<String>) -> Self {
        End {
            reason,
            detail: detail.into(),
            next: None,
            graceful: false,
        }
    }
}

/// Protocol state of an open connection.
struct State {
    gen: u64,
    decoder: SocketDecoder,
    outbox: Vec<Frame>,
    batch: Vec<ClientInbound>,
    ping_window: Duration,
    ping_deadline: Instant,
    closing: Option<Instant>,
    request_timeout: Duration,
}

/// The client's end: pings are the server's heartbeat, messages go to the decoder.
impl PacketReceiver for State {
    type Refusal = End;

    fn reply(&mut self, frame: Frame) {
        self.outbox.push(frame);
    }

    fn on_ping(&mut self) -> Result<(), End> {
        // The heartbeat is also the clock of the reassembly deadline.
        self.decoder
            .check_deadline(std::time::Instant::now())
            .map_err(|e| End::new(DisconnectReason::TransportError, e.to_string()))?;
        self.ping_deadline = Instant::now() + self.ping_window;
        Ok(())
    }

    fn on_message(&mut self, text: Bytes) -> Result<(), End> {
        let item = self
            .decoder
            .on_text(self.gen, text)
            .map_err(|e| End::new(DisconnectReason::TransportError, e.to_string()))?;
        self.batch.extend(item);
        Ok(())
    }

    fn on_binary(&mut self, data: Bytes) -> Result<(), End> {
        let item = self
            .decoder
            .on_binary(self.gen, data)
            .map_err(|e| End::new(DisconnectReason::TransportError, e.to_string()))?;
        self.batch.extend(item);
        Ok(())
    }
}

impl State {
    fn on_packet(&mut self, packet: EnginePacket) -> Result<(), End> {
        match receive(self, packet) {
            Ok(Step::Continue) => Ok(()),
            Ok(Step::PeerClosed) => Err(End::new(
                DisconnectReason::TransportClose,
                "the server closed the connection",
            )),
            Ok(Step::Refused(end)) => Err(end),
            Err(_) => Err(End::new(
                DisconnectReason::TransportError,
                "unexpected open packet",
            )),
        }
    }

    fn on_ws_message(
        &mut self,
        msg: Option<Result<Message, impl std::fmt::Display>>,
    ) -> Result<(), End> {
        match msg {
            Some(Ok(Message::Text(t))) => match EnginePacket::decode_text(Bytes::from(t)) {
                Ok(p) => self.on_packet(p),
                Err(e) => Err(End::new(DisconnectReason::TransportError, e.to_string())),
            },
            Some(Ok(Message::Binary(b))) => self.on_packet(EnginePacket::Binary(b)),
            Some(Ok(Message::Close(_))) | None => Err(End::new(
                DisconnectReason::TransportClose,
                "the server closed the websocket",
            )),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(End::new(DisconnectReason::TransportError, e.to_string())),
        }
    }

    /// Applies one command. `Err` ends the connection.
    fn on_command(&mut self, cmd: ClientCommand) -> Result<(), End> {
        match cmd {
            ClientCommand::Send { gen, frames } => {
                if gen == self.gen && self.closing.is_none() {
                    self.outbox.extend(frames);
                }
                Ok(())
            }
            ClientCommand::Close { gen } => {
                if gen == self.gen && self.closing.is_none() {
                    self.outbox.push(Frame::CLOSE);
                    self.closing = Some(Instant::now() + self.request_timeout);
                }
                Ok(())
            }
            next @ (ClientCommand::Connect { .. } | ClientCommand::Shutdown) => Err(End {
                reason: DisconnectReason::ClientDisconnect,
                detail: "client closed the connection".into(),
                next: Some(next),
                graceful: false,
            }),
        }
    }
}

/// Runs connection attempt `gen` until it ends; pushes its `Closed` record last. Returns a
/// command that interrupted it (a new `Connect`, or `Shutdown`).
pub(super) async fn run(
    gen: u64,
    target: Arc<ConnectTarget>,
    tls: Option<TlsConnector>,
    commands: &mut mpsc::UnboundedReceiver<ClientCommand>,
    out: &WakeQueue<ClientInbound>,
) -> Option<ClientCommand> {
    let closed = |reason: DisconnectReason, detail: String| ClientInbound::Closed {
        gen,
        reason,
        detail,
    };

    // ---- handshake (interruptible by commands) ----
    let opened = {
        let hs = tokio::time::timeout(target.request_timeout, handshake(&target, tls.as_ref()));
        tokio::pin!(hs);
        loop {
            tokio::select! {
                r = &mut hs => break r.unwrap_or_else(|_| Err("handshake timed out".into())),
                cmd = commands.recv() => match cmd {
                    None | Some(ClientCommand::Shutdown) => {
                        out.push(closed(DisconnectReason::ClientDisconnect, "shutdown".into()));
                        return Some(ClientCommand::Shutdown);
                    }
                    Some(c @ ClientCommand::Connect { .. }) => {
                        out.push(closed(DisconnectReason::ClientDisconnect, "replaced".into()));
                        return Some(c);
                    }
                    Some(ClientCommand::Close { gen: g }) if g == gen => {
                        out.push(closed(DisconnectReason::ClientDisconnect, "closed while connecting".into()));
                        return None;
                    }
                    Some(_) => {}
                },
            }
        }
    };
    let opened = match opened {
        Ok(o) => o,
        Err(detail) => {
            out.push(closed(DisconnectReason::ConnectError, detail));
            return None;
        }
    };

    let Opened {
        start,
        open,
        raw,
        extra,
    } = opened;
    let sid = open.sid.clone();
    // (clamped: a server's absurd values must not overflow the deadline arithmetic)
    let ping_window = Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout))
        .min(Duration::from_secs(86_400 * 365));
    let max_payload = open
        .max_payload
        .map_or(1_000_000, |m| usize::try_from(m).unwrap_or(usize::MAX))
        .max(1);
    let mut st = State {
        gen,
        decoder: SocketDecoder::new(target.attachment_limits, target.parser),
        outbox: Vec::new(),
        batch: Vec::with_capacity(64),
        ping_window,
        ping_deadline: Instant::now() + ping_window,
        closing: None,
        request_timeout: target.request_timeout,
    };

    let mut transport;
    let mut ws_read: Option<SplitStream<Ws>> = None;
    let mut ws_sink: Option<SplitSink<Ws, Message>> = None;
    let mut get_conn: Option<HttpConn> = None;
    let mut post_conn: Option<HttpConn> = None;
    let mut get_fut: Option<LocalFut<(HttpConn, Result<Bytes, String>)>> = None;
    let mut write_fut: Option<LocalFut<WriteDone>> = None;
    let mut probe_fut: Option<LocalFut<Result<Ws, String>>> = None;
    // A probed WebSocket waiting for polling to go quiet before the switch.
    let mut upgrade_ws: Option<Ws> = None;
    let mut polling_paused = false;

    match start {
        Start::Ws(ws) => {
            transport = TransportName::WebSocket;
            let (sink, read) = (*ws).split();
            ws_sink = Some(sink);
            ws_read = Some(read);
        }
        Start::Polling(conn) => {
            transport = TransportName::Polling;
            get_conn = Some(conn);
            post_conn = Some(HttpConn::new(target.clone(), tls.clone()));
        }
    }
    st.batch.push(ClientInbound::Open {
        gen,
        sid: sid.clone(),
        transport,
        handshake: raw,
    });
    let mut end: Option<End> = None;
    for p in extra {
        if let Err(e) = st.on_packet(p) {
            end = Some(e);
            break;
        }
    }
    if transport == TransportName::Polling
        && target.upgrade
        && target.websocket
        && open.upgrades.iter().any(|u| u == "websocket")
    {
        // No new long-poll from now on: the one in flight is released by the server's noop
        // once it sees the probe, and the switch needs polling to be quiet.
        polling_paused = true;
        probe_fut = Some(Box::pin(probe(target.clone(), tls.clone(), sid.clone())));
    }
    out.push_many(st.batch.drain(..));

    let ping_sleep = tokio::time::sleep_until(st.ping_deadline);
    tokio::pin!(ping_sleep);
    let mut armed = st.ping_deadline;
    let end = loop {
        if let Some(e) = end.take() {
            break e;
        }
        // ---- start what can start ----
        if st.closing.is_some() {
            // a pending upgrade is abandoned: finish on the current transport
            probe_fut = None;
            upgrade_ws = None;
            polling_paused = true;
            if st.outbox.is_empty() && write_fut.is_none() {
                let mut end = End::new(DisconnectReason::ClientDisconnect, "client disconnect");
                end.graceful = true;
                break end;
            }
        }
        if upgrade_ws.is_some() && get_fut.is_none() && write_fut.is_none() {
            // Polling is quiet: finish the upgrade with `5` on the WebSocket.
            let mut ws = upgrade_ws.take().expect("checked");
            let sent = tokio::time::timeout(
                target.request_timeout,
                ws.send(Message::Text(Utf8Bytes::from_static("5"))),
            )
            .await;
            if matches!(sent, Ok(Ok(()))) {
                transport = TransportName::WebSocket;
                let (sink, read) = ws.split();
                ws_sink = Some(sink);
                ws_read = Some(read);
                get_conn = None;
                post_conn = None;
                st.batch.push(ClientInbound::Upgraded { gen });
            } else {
                polling_paused = false;
            }
        }
        if write_fut.is_none() && !st.outbox.is_empty() {
            match transport {
                TransportName::WebSocket => {
                    if let Some(sink) = ws_sink.take() {
                        let frames = std::mem::take(&mut st.outbox);
                        write_fut = Some(Box::pin(ws_write(sink, frames)));
                    }
                }
                TransportName::Polling => {
                    if upgrade_ws.is_none() {
                        if let Some(conn) = post_conn.take() {
                            let frames = take_payload(&mut st.outbox, max_payload);
                            let body = encode_payload(&frames);
                            let path = request_path(&target, "polling", Some(&sid));
                            write_fut =
                                Some(Box::pin(post(conn, path, body, target.request_timeout)));
                        }
                    }
                }
            }
        }
        if transport == TransportName::Polling && get_fut.is_none() && !polling_paused {
            if let Some(mut conn) = get_conn.take() {
                let path = request_path(&target, "polling", Some(&sid));
                get_fut = Some(Box::pin(async move {
                    let r = conn.request(&path, None).await.map_err(|e| e.to_string());
                    (conn, r)
                }));
            }
        }
        out.push_many(st.batch.drain(..));
        if st.ping_deadline != armed {
            armed = st.ping_deadline;
            ping_sleep.as_mut().reset(armed);
        }
        let closing = st.closing;
        let step: Result<(), End> = tokio::select! {
            cmd = commands.recv() => {
                let mut r = match cmd {
                    Some(cmd) => st.on_command(cmd),
                    None => st.on_command(ClientCommand::Shutdown),
                };
                // Apply whatever else is queued before going back to the sockets.
                let mut n = 0;
                while r.is_ok() && n < COMMAND_BATCH {
                    match commands.try_recv() {
                        Ok(cmd) => r = st.on_command(cmd),
                        Err(_) => break,
                    }
                    n += 1;
                }
                r
            }
            msg = MaybeNext(&mut ws_read) => {
                let mut r = st.on_ws_message(msg);
                // Take what else is already buffered, so the host gets one batch.
                let mut n = 0;
                while r.is_ok() && n < READ_BATCH {
                    let Some(read) = ws_read.as_mut() else { break };
                    match read.next().now_or_never() {
                        Some(msg) => r = st.on_ws_message(msg),
                        None => break,
                    }
                    n += 1;
                }
                r
            }
            (conn, r) = Maybe(&mut get_fut) => {
                get_fut = None;
                get_conn = Some(conn);
                match r {
                    Ok(body) => match EnginePacket::decode_payload(&body) {
                        Ok(packets) => packets.into_iter().try_for_each(|p| st.on_packet(p)),
                        Err(e) => Err(End::new(DisconnectReason::TransportError, e.to_string())),
                    },
                    Err(e) => Err(End::new(DisconnectReason::TransportError, e)),
                }
            }
            done = Maybe(&mut write_fut) => {
                write_fut = None;
                let r = match done {
                    WriteDone::Ws(sink, r) => {
                        ws_sink = Some(sink);
                        r
                    }
                    WriteDone::Post(conn, r) => {
                        post_conn = Some(conn);
                        r
                    }
                };
                r.map_err(|e| End::new(DisconnectReason::TransportError, e))
            }
            r = Maybe(&mut probe_fut) => {
                probe_fut = None;
                match r {
                    Ok(ws) => upgrade_ws = Some(ws),
                    Err(_) => polling_paused = false,
                }
                Ok(())
            }
            () = &mut ping_sleep => Err(End::new(
                DisconnectReason::PingTimeout,
                format!("no ping from the server within {} ms", ping_window.as_millis()),
            )),
            () = async {
                match closing {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            } => Err(End::new(
                DisconnectReason::ClientDisconnect,
                "client disconnect (flush timed out)",
            )),
        };
        if let Err(e) = step {
            break e;
        }
    };

    if end.graceful {
        if let Some(mut sink) = ws_sink.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), sink.close()).await;
        }
    }
    st.batch.push(closed(end.reason, end.detail));
    out.push_many(st.batch.drain(..));
    end.next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_split_respects_max_payload() {
        let mut outbox = vec![
            Frame::Text(Bytes::from_static(b"4aaaa")),
            Frame::Text(Bytes::from_static(b"4bbbb")),
            Frame::Binary(Bytes::from_static(&[1, 2, 3])),
        ];
        let first = take_payload(&mut outbox, 12);
        assert_eq!(first.len(), 2);
        assert_eq!(outbox.len(), 1);
        // one frame larger than the limit still goes (alone)
        let mut outbox = vec![Frame::Text(Bytes::from_static(b"4xxxxxxxxxxxxxxx"))];
        assert_eq!(take_payload(&mut outbox, 4).len(), 1);
        assert!(outbox.is_empty());
    }
}
