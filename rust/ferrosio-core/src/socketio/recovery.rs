//! Connection state recovery, as Node socket.io's `SessionAwareAdapter` does it: each
//! namespace keeps a log of the packets it broadcast (each stamped with an offset appended as
//! the last argument), and a socket lost abnormally leaves a session (sid, private id, rooms)
//! behind; a client that comes back with that private id and the last offset it processed gets
//! the same sid, its rooms, and every logged packet after that offset meant for it.
//!
//! Which packets are logged follows Node's `SessionAwareAdapter.broadcast`: events (binary or
//! not) without an ack id, not volatile. Every emit of ferrosio's server is a broadcast in
//! Node's sense (python-socketio's `emit(to=sid)` is Node's `io.to(sid).emit`), so emits to
//! one sid are logged too; acks and emits that ask for acks never are.
//!
//! Unlike Node (whose log and sessions only expire, every 60 s), everything here is bounded:
//! see [`RecoveryConfig`] and docs/bounds.md.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use foldhash::HashMap;

use super::adapter::BroadcastOptions;
use crate::engineio::packet::Frame;
use crate::engineio::DisconnectReason;

/// The bounds and duration of connection state recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long a lost socket's session is kept, and how long a packet stays in the log
    /// (Node's `maxDisconnectionDuration`).
    pub max_disconnection: Duration,
    /// Most sessions kept for recovery on this server (all namespaces); past it the oldest
    /// is forgotten (its client gets a new session). Node: unbounded.
    pub max_sessions: usize,
    /// Most bytes of packets in one namespace's log (each counted with its bookkeeping);
    /// past it the oldest packets are dropped (a client whose missed packets are gone gets a
    /// new session). Node: unbounded.
    pub max_log_bytes: usize,
    /// Most packets one session may have missed; more: a new session instead. Node: unbounded.
    pub max_missed_packets: usize,
    /// Most bytes of packets one session may have missed; more: a new session instead.
    pub max_missed_bytes: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection: Duration::from_secs(120),
            max_sessions: 10_000,
            max_log_bytes: 16_000_000,
            max_missed_packets: 10_000,
            max_missed_bytes: 4_000_000,
        }
    }
}

/// Node's `RECOVERABLE_DISCONNECT_REASONS` as ferrosio names them, for sockets still in their
/// namespace when their connection ends: the transport was lost, or the client closed its
/// Engine.IO connection without leaving the namespace first (an Engine.IO close packet, which
/// Node reports as "transport close"; a client leaving on purpose sends a Socket.IO
/// DISCONNECT first, and nothing is kept then). "server shutting down" is Node's too, but the
/// sessions of this in-process log do not outlive the server.
pub fn is_recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::PingTimeout
            | DisconnectReason::ClientDisconnect
    )
}

/// Offsets are `<prefix>.<counter in hex>`; the prefix is random per log, so an offset from
/// another namespace, server or run is never taken for one of this log.
const OFFSET_SEP: u8 = b'.';

/// Who a logged packet was for.
pub enum Audience {
    /// A broadcast: its rooms and except only matter.
    Broadcast(BroadcastOptions),
    /// One socket (Node's `io.to(sid)`), by the sid the namespace already holds.
    Socket(Arc<str>),
}

impl Audience {
    fn bytes(&self) -> usize {
        match self {
            Audience::Broadcast(o) => o.rooms.iter().chain(&o.except).map(String::len).sum(),
            Audience::Socket(_) => 0,
        }
    }

    /// Whether a socket in `rooms` (its own `sid` included) was meant to get the packet: in
    /// one of its rooms (or everyone's) and in none of its except (Node's
    /// `shouldIncludePacket`).
    fn includes(&self, rooms: &[Arc<str>], sid: &str) -> bool {
        match self {
            Audience::Socket(to) => &**to == sid,
            Audience::Broadcast(o) => {
                let in_rooms =
                    |name: &String| &**name == sid || rooms.iter().any(|r| **r == **name);
                (o.rooms.is_empty() || o.rooms.iter().any(in_rooms))
                    && !o.except.iter().any(in_rooms)
            }
        }
    }
}

/// Logged packets are many, small and long-lived: their stamped texts are cut from shared
/// chunks of this size rather than allocated one by one (which fragments the heap and made
/// every allocation of the engine thread slower).
const CHUNK: usize = 64 * 1024;

struct Logged {
    /// The stamped text packet (a slice of a shared chunk); `PlainText` when it was emitted
    /// with `compress=False`, so that a replay is not compressed either.
    text: Frame,
    /// Its binary attachments (empty, unallocated, for a text packet).
    attachments: Vec<Frame>,
    audience: Audience,
    emitted_at: Instant,
    bytes: usize,
}

/// One namespace's recovery state: the packet log and the private ids of its sockets.
pub struct PacketLog {
    prefix: Arc<str>,
    /// Where the next stamped texts are written (see [`CHUNK`]).
    chunk: BytesMut,
    /// Counter of the packet after the newest one; `packets[i]` has `next - len + i`.
    next: u64,
    packets: VecDeque<Logged>,
    bytes: usize,
    /// sid -> private session id of each socket of the namespace.
    pids: HashMap<Arc<str>, Arc<str>>,
}

/// What a recovered socket gets back.
pub struct Restored {
    pub sid: Arc<str>,
    pub pid: Arc<str>,
    /// The rooms it had joined (its own sid room not included).
    pub rooms: Vec<Arc<str>>,
    pub missed: Vec<Frame>,
    pub missed_bytes: usize,
}

impl Default for PacketLog {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketLog {
    pub fn new() -> Self {
        PacketLog {
            prefix: crate::sid::new_sid(),
            chunk: BytesMut::new(),
            next: 0,
            packets: VecDeque::new(),
            bytes: 0,
            pids: HashMap::default(),
        }
    }

    /// A new socket's private id (sent in its CONNECT reply).
    pub fn register(&mut self, sid: &Arc<str>, pid: Arc<str>) {
        self.pids.insert(sid.clone(), pid);
    }

    pub fn pid_of(&self, sid: &str) -> Option<&Arc<str>> {
        self.pids.get(sid)
    }

    pub fn forget(&mut self, sid: &str) -> Option<Arc<str>> {
        self.pids.remove(sid)
    }

    /// Packets and bytes in the log.
    pub fn len(&self) -> (usize, usize) {
        (self.packets.len(), self.bytes)
    }

    /// Appends the next offset to the packet's data in place (`frames[0]`), if it is a
    /// packet Node logs (an event without an ack id), and returns the stamped frame (text, or
    /// plain text for a `compress=False` emit); None (frames untouched) otherwise. Log it with
    /// [`PacketLog::record`] once delivered.
    pub fn stamp(&mut self, frames: &mut [Frame]) -> Option<Frame> {
        let (Some(Frame::Text(text)) | Some(Frame::PlainText(text))) = frames.first() else {
            return None;
        };
        if !is_loggable_event(text) {
            return None;
        }
        let mut counter = [0u8; 16];
        let digits = hex(self.next, &mut counter);
        let len = text.len() + self.prefix.len() + digits.len() + 4;
        if self.chunk.capacity() - self.chunk.len() < len {
            self.chunk = BytesMut::with_capacity(CHUNK.max(len));
        }
        let out = &mut self.chunk;
        out.put_slice(&text[..text.len() - 1]);
        // `[` right before the closing `]`: an event with no argument at all (no name) is
        // not valid, but keep the JSON valid anyway.
        if text[text.len() - 2] != b'[' {
            out.put_u8(b',');
        }
        out.put_u8(b'"');
        out.put_slice(self.prefix.as_bytes());
        out.put_u8(OFFSET_SEP);
        out.put_slice(digits);
        out.put_slice(b"\"]");
        let stamped = out.split().freeze();
        frames[0] = if frames[0].compressible() {
            Frame::Text(stamped)
        } else {
            Frame::PlainText(stamped)
        };
        Some(frames[0].clone())
    }

    /// Logs a packet [`PacketLog::stamp`] stamped (its text, its attachments and who it was
    /// for), then drops packets older than `cfg.max_disconnection` or past
    /// `cfg.max_log_bytes`.
    pub fn record(
        &mut self,
        text: Frame,
        attachments: Vec<Frame>,
        audience: Audience,
        now: Instant,
        cfg: &RecoveryConfig,
    ) {
        // The entry itself counts too: with small packets it is most of the memory.
        let bytes = std::mem::size_of::<Logged>()
            + text.len()
            + attachments.iter().map(Frame::len).sum::<usize>()
            + audience.bytes();
        self.next += 1;
        self.bytes += bytes;
        self.packets.push_back(Logged {
            text,
            attachments,
            audience,
            emitted_at: now,
            bytes,
        });
        while let Some(oldest) = self.packets.front() {
            let expired = now.duration_since(oldest.emitted_at) > cfg.max_disconnection;
            if !expired && self.bytes <= cfg.max_log_bytes {
                break;
            }
            self.bytes -= oldest.bytes;
            self.packets.pop_front();
        }
    }

    /// The packets after `offset` for a socket in `rooms` (its own sid included), or None
    /// when the offset is not this log's, some of them were dropped, or they pass the
    /// per-session bounds.
    fn missed(
        &self,
        offset: &str,
        rooms: &[Arc<str>],
        sid: &str,
        cfg: &RecoveryConfig,
    ) -> Option<(Vec<Frame>, usize)> {
        let (prefix, counter) = offset.rsplit_once(OFFSET_SEP as char)?;
        if prefix != &*self.prefix || counter.is_empty() || counter.len() > 16 {
            return None;
        }
        let counter = u64::from_str_radix(counter, 16).ok()?;
        let first = self.next - self.packets.len() as u64;
        // The offset's own packet may be gone as long as nothing after it is.
        if counter >= self.next || counter + 1 < first {
            return None;
        }
        let mut frames = Vec::new();
        let (mut count, mut bytes) = (0usize, 0usize);
        for logged in self.packets.range((counter + 1 - first) as usize..) {
            if !logged.audience.includes(rooms, sid) {
                continue;
            }
            count += 1;
            bytes += logged.bytes;
            if count > cfg.max_missed_packets || bytes > cfg.max_missed_bytes {
                return None;
            }
            frames.push(logged.text.clone());
            frames.extend_from_slice(&logged.attachments);
        }
        Some((frames, bytes))
    }
}

/// Whether a packet's text is `4` + an EVENT or BINARY_EVENT without an ack id whose data is
/// an array (the offset goes before its closing bracket).
fn is_loggable_event(text: &[u8]) -> bool {
    let mut i = match text {
        [b'4', b'2', ..] => 2,
        [b'4', b'5', ..] => {
            let digits = text[2..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || text.get(2 + digits) != Some(&b'-') {
                return false;
            }
            3 + digits
        }
        _ => return false,
    };
    if text.get(i) == Some(&b'/') {
        match text[i..].iter().position(|&b| b == b',') {
            Some(comma) => i += comma + 1,
            None => return false,
        }
    }
    text.get(i) == Some(&b'[') && text.len() >= i + 2 && text.last() == Some(&b']')
}

fn hex(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

struct Persisted {
    sid: Arc<str>,
    nsp: Arc<str>,
    rooms: Vec<Arc<str>>,
    disconnected_at: Instant,
}

/// The sessions of lost sockets, by private id, for every namespace of the server.
#[derive(Default)]
pub struct Sessions {
    by_pid: HashMap<Arc<str>, Persisted>,
    /// Private ids in the order their sessions were kept, for expiry and the bound; ids of
    /// sessions restored since are skipped when they come up.
    order: VecDeque<(Arc<str>, Instant)>,
}

impl Sessions {
    /// How many sessions are kept.
    pub fn kept(&self) -> usize {
        self.by_pid.len()
    }

    /// Keeps a lost socket's session; the oldest goes when `cfg.max_sessions` are kept.
    pub fn persist(
        &mut self,
        pid: Arc<str>,
        sid: Arc<str>,
        nsp: Arc<str>,
        rooms: Vec<Arc<str>>,
        now: Instant,
        cfg: &RecoveryConfig,
    ) {
        self.expire(now, cfg);
        if cfg.max_sessions == 0 {
            return;
        }
        while self.by_pid.len() >= cfg.max_sessions || self.order.len() >= 2 * cfg.max_sessions {
            self.pop_oldest();
        }
        self.order.push_back((pid.clone(), now));
        self.by_pid.insert(
            pid,
            Persisted {
                sid,
                nsp,
                rooms,
                disconnected_at: now,
            },
        );
    }

    fn pop_oldest(&mut self) {
        if let Some((pid, at)) = self.order.pop_front() {
            if self
                .by_pid
                .get(&pid)
                .is_some_and(|s| s.disconnected_at == at)
            {
                self.by_pid.remove(&pid);
            }
        }
    }

    /// Forgets the sessions lost longer ago than `cfg.max_disconnection`.
    pub fn expire(&mut self, now: Instant, cfg: &RecoveryConfig) {
        while let Some((_, at)) = self.order.front() {
            if now.duration_since(*at) <= cfg.max_disconnection {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Takes the session `pid` of namespace `nsp` if it is still kept, and the packets it
    /// missed after `offset` from `log`. A session whose packets cannot all be replayed is
    /// forgotten (its client gets a new session, as in Node).
    pub fn restore(
        &mut self,
        pid: &str,
        offset: &str,
        nsp: &str,
        log: &PacketLog,
        now: Instant,
        cfg: &RecoveryConfig,
    ) -> Option<Restored> {
        self.expire(now, cfg);
        if self.by_pid.get(pid).is_none_or(|s| &*s.nsp != nsp) {
            return None;
        }
        let (pid, session) = self.by_pid.remove_entry(pid)?;
        let (missed, missed_bytes) = log.missed(offset, &session.rooms, &session.sid, cfg)?;
        Some(Restored {
            sid: session.sid,
            pid,
            rooms: session.rooms,
            missed,
            missed_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn text(s: &str) -> Vec<Frame> {
        vec![Frame::Text(Bytes::copy_from_slice(s.as_bytes()))]
    }

    fn as_str(frames: &[Frame]) -> String {
        match &frames[0] {
            Frame::Text(b) | Frame::PlainText(b) => String::from_utf8(b.to_vec()).unwrap(),
            Frame::Binary(_) | Frame::PlainBinary(_) => panic!("binary"),
        }
    }

    fn offset_of(frames: &[Frame]) -> String {
        let s = as_str(frames);
        let start = s.rfind(",\"").unwrap() + 2;
        s[start..s.len() - 2].to_owned()
    }

    /// Stamps and logs one text packet; returns its offset.
    fn push(
        log: &mut PacketLog,
        packet: &str,
        audience: Audience,
        now: Instant,
        cfg: &RecoveryConfig,
    ) -> String {
        let mut frames = text(packet);
        let stamped = log.stamp(&mut frames).unwrap();
        let offset = offset_of(&frames);
        log.record(stamped, Vec::new(), audience, now, cfg);
        offset
    }

    fn everyone() -> Audience {
        Audience::Broadcast(BroadcastOptions::default())
    }

    #[test]
    fn only_events_without_ack_ids_are_stamped() {
        let mut log = PacketLog::new();
        let mut stamp = |p: &str| log.stamp(&mut text(p)).is_some();
        assert!(stamp(r#"42["a",1]"#));
        assert!(stamp(r#"42/chat,["a"]"#));
        assert!(stamp(r#"451-/chat,["a",{"_placeholder":true,"num":0}]"#));
        assert!(!stamp(r#"4212["a"]"#), "ack id");
        assert!(!stamp(r#"42/chat,7["a"]"#), "ack id");
        assert!(!stamp(r#"451-3["a"]"#), "ack id");
        assert!(!stamp(r#"43["a"]"#), "ack");
        assert!(!stamp(r#"40{"sid":"x"}"#), "connect");
        let mut frames = text(r#"42/chat,["a",1]"#);
        let stamped = log.stamp(&mut frames).unwrap();
        assert_eq!(
            as_str(&frames),
            String::from_utf8(stamped.payload().to_vec()).unwrap()
        );
        let s = as_str(&frames);
        assert!(
            s.starts_with(r#"42/chat,["a",1,""#) && s.ends_with("\"]"),
            "{s}"
        );
    }

    #[test]
    fn a_packet_emitted_with_compress_false_is_replayed_plain() {
        let cfg = RecoveryConfig::default();
        let mut log = PacketLog::new();
        let now = Instant::now();
        let first = push(&mut log, r#"42["a"]"#, everyone(), now, &cfg);
        let mut frames = vec![
            Frame::PlainText(Bytes::from_static(
                br#"451-["b",{"_placeholder":true,"num":0}]"#,
            )),
            Frame::PlainBinary(Bytes::from_static(&[1, 2])),
        ];
        let stamped = log.stamp(&mut frames).unwrap();
        assert!(!stamped.compressible() && !frames[0].compressible());
        let attachments = frames.split_off(1);
        log.record(stamped, attachments, everyone(), now, &cfg);
        let (missed, _) = log.missed(&first, &[], "me", &cfg).unwrap();
        assert!(matches!(
            missed.as_slice(),
            [Frame::PlainText(_), Frame::PlainBinary(_)]
        ));
    }

    #[test]
    fn missed_packets_follow_the_offset_and_the_rooms() {
        let cfg = RecoveryConfig::default();
        let mut log = PacketLog::new();
        let now = Instant::now();
        let mut offsets = Vec::new();
        for (i, rooms, except) in [
            (0, vec![], vec![]),
            (1, vec!["r1".to_string()], vec![]),
            (2, vec!["r2".to_string()], vec![]),
            (3, vec![], vec!["r1".to_string()]),
            (4, vec!["me".to_string()], vec![]),
        ] {
            let opts = BroadcastOptions {
                rooms,
                except,
                ..BroadcastOptions::default()
            };
            let packet = format!(r#"42["e",{i}]"#);
            offsets.push(push(
                &mut log,
                &packet,
                Audience::Broadcast(opts),
                now,
                &cfg,
            ));
        }
        push(
            &mut log,
            r#"42["e",5]"#,
            Audience::Socket("me".into()),
            now,
            &cfg,
        );
        push(
            &mut log,
            r#"42["e",6]"#,
            Audience::Socket("you".into()),
            now,
            &cfg,
        );
        let rooms: Vec<Arc<str>> = vec![Arc::from("r1")];
        let (missed, _) = log.missed(&offsets[0], &rooms, "me", &cfg).unwrap();
        let got: Vec<String> = missed
            .iter()
            .map(|f| as_str(std::slice::from_ref(f)))
            .collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].starts_with(r#"42["e",1,"#) && got[1].starts_with(r#"42["e",4,"#));
        assert!(got[2].starts_with(r#"42["e",5,"#), "to this socket only");
        assert_eq!(
            log.missed(&offsets[4], &rooms, "me", &cfg).unwrap().0.len(),
            1
        );
        assert!(log.missed("other.1", &rooms, "me", &cfg).is_none());
        assert!(log.missed("garbage", &rooms, "me", &cfg).is_none());
        let tight = RecoveryConfig {
            max_missed_packets: 1,
            ..cfg.clone()
        };
        assert!(log.missed(&offsets[0], &rooms, "me", &tight).is_none());
        let (_, bytes) = log.missed(&offsets[0], &rooms, "me", &cfg).unwrap();
        let exact = RecoveryConfig {
            max_missed_bytes: bytes,
            ..cfg.clone()
        };
        assert!(log.missed(&offsets[0], &rooms, "me", &exact).is_some());
        let under = RecoveryConfig {
            max_missed_bytes: bytes - 1,
            ..cfg.clone()
        };
        assert!(log.missed(&offsets[0], &rooms, "me", &under).is_none());
    }

    #[test]
    fn the_log_drops_its_oldest_packets_past_its_bound() {
        let cfg = RecoveryConfig {
            max_log_bytes: 1000,
            ..RecoveryConfig::default()
        };
        let mut log = PacketLog::new();
        let now = Instant::now();
        let first = push(&mut log, r#"42["e",0]"#, everyone(), now, &cfg);
        for i in 1..20 {
            push(&mut log, &format!(r#"42["e",{i}]"#), everyone(), now, &cfg);
        }
        assert!(log.len().1 <= 1000 && log.len().0 < 20);
        assert!(log.missed(&first, &[], "me", &cfg).is_none());
        let later = now + Duration::from_secs(121);
        push(&mut log, r#"42["e"]"#, everyone(), later, &cfg);
        assert_eq!(log.len().0, 1, "older than max_disconnection: dropped");
    }

    #[test]
    fn sessions_are_taken_once_bounded_and_expire() {
        let cfg = RecoveryConfig {
            max_sessions: 2,
            ..RecoveryConfig::default()
        };
        let mut log = PacketLog::new();
        let now = Instant::now();
        let offset = push(&mut log, r#"42["e"]"#, everyone(), now, &cfg);
        let mut sessions = Sessions::default();
        for n in ["a", "b", "c"] {
            sessions.persist(n.into(), n.into(), "/".into(), vec![], now, &cfg);
        }
        assert_eq!(sessions.kept(), 2);
        assert!(sessions
            .restore("a", &offset, "/", &log, now, &cfg)
            .is_none());
        assert!(sessions
            .restore("b", &offset, "/x", &log, now, &cfg)
            .is_none());
        let b = sessions
            .restore("b", &offset, "/", &log, now, &cfg)
            .unwrap();
        assert_eq!(&*b.sid, "b");
        assert!(sessions
            .restore("b", &offset, "/", &log, now, &cfg)
            .is_none());
        let later = now + Duration::from_secs(121);
        assert!(sessions
            .restore("c", &offset, "/", &log, later, &cfg)
            .is_none());
        assert_eq!(sessions.kept(), 0);
    }
}
