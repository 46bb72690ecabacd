//! The server-side heartbeat of every session, whatever its transport: a ping every
//! `interval`, and the session closes if no pong follows within `timeout`; plus Socket.IO's
//! connect timeout (a session that has not joined a namespace by then is closed).
//!
//! One [`Heartbeats`] and one task serve all the sessions of a server, instead of a task and a
//! timer per session: what an idle session costs is a few queue entries and [`Beat`]. That
//! works without a sorted structure because every deadline of one kind is "now + a constant"
//! at the time it is set (a ping `interval` after the session opened or after its last pong, a
//! pong `timeout` after its ping, the connect check `connect_timeout` after the open), so each
//! kind is queued in order: three FIFO queues. A deadline that is moved (a pong came) leaves its
//! old entry behind; [`Beat`] says which entry is current, stale ones are skipped.
//!
//! An Engine.IO v3 client pings and the server answers (the server never pings it): its
//! session closes with `ping timeout` when no ping came for `interval + timeout`. Such a
//! session has no ping entry; a client ping only moves its deadline ([`Beat::pong_due`], no
//! queue touched), and its one entry in a fourth queue, once due, is queued again at the moved
//! deadline. Those are earlier than "now + a constant", so that queue is a heap; it holds only
//! v3 sessions, so v4 sessions pay nothing for it.
//!
//! The host ([`HeartbeatHost`]) finds sessions by sid, runs the layer above's checks, and ends
//! sessions; a session tells its [`Heartbeats`] when it closes, so its end is not left to its
//! next deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::packet::Frame;
use super::session::{DisconnectReason, EngineSession};

/// What the heartbeat needs from the server it serves.
pub trait HeartbeatHost: Send + Sync + 'static {
    /// The live session `sid`, if any.
    fn live_session(&self, sid: &str) -> Option<Arc<EngineSession>>;
    /// The connect check: has the session joined a namespace?
    fn joined(&self, session: &Arc<EngineSession>) -> bool;
    /// Runs at each ping (once per `interval`) for the layer above's own deadlines (e.g. an
    /// unfinished binary packet); false closes the session as a protocol error.
    fn tick(&self, session: &Arc<EngineSession>) -> bool;
    /// Forgets a closed session and tells the layer above (may be called more than once).
    fn end(&self, session: &Arc<EngineSession>, reason: DisconnectReason);
}

/// One session's deadlines (inside [`EngineSession`]). A queue entry is current only while
/// its instant is the one recorded here.
#[derive(Debug, Default)]
pub struct Beat {
    /// When the next ping goes, while no pong is awaited. v3 (the client pings): when the
    /// layer's next tick is due, run at a client ping (see [`Heartbeats::client_ping`]).
    next_ping: Option<Instant>,
    /// When the pong for the last ping is due, while one is awaited. v3: when the client's
    /// next ping is due (its last ping, or the open, + interval + timeout).
    pub(super) pong_due: Option<Instant>,
    /// When the connect check runs (Socket.IO endpoint, until it ran).
    connect_by: Option<Instant>,
    /// The heartbeats that watch the session, told when it closes (none: not watched). Under
    /// this lock rather than a `OnceLock` of its own: 8 bytes per session, not 16.
    pub(super) heartbeats: Option<Weak<Heartbeats>>,
}

/// A deadline of one session: when, and whose (by sid: a queue entry keeps nothing alive).
type Entry = (Instant, Arc<str>);

#[derive(Default)]
struct Queues {
    pings: VecDeque<Entry>,
    pongs: VecDeque<Entry>,
    connects: VecDeque<Entry>,
    /// The ping deadlines of v3 sessions (the client pings), one entry per session, soonest
    /// first.
    client_pings: BinaryHeap<Reverse<Entry>>,
    /// Sessions closed since the task last ran.
    closed: Vec<Arc<str>>,
    /// Lengths (pings, pongs, connects, client pings) past which a queue is swept (see
    /// [`Heartbeats::sweep`]).
    sweep_at: [usize; 4],
}

impl Queues {
    fn next_wake(&self) -> Option<Instant> {
        [&self.pings, &self.pongs, &self.connects]
            .iter()
            .filter_map(|q| q.front().map(|(at, _)| *at))
            .chain(self.client_pings.peek().map(|Reverse((at, _))| *at))
            .min()
    }
}

/// Appends in order (each queue's deadlines are set in order, see the module doc; the search
/// only guards that). True if the entry is now the queue's first.
fn push(queue: &mut VecDeque<Entry>, entry: Entry) -> bool {
    let at = entry.0;
    if queue.back().is_none_or(|(last, _)| *last <= at) {
        queue.push_back(entry);
    } else {
        let i = queue.partition_point(|(t, _)| *t <= at);
        queue.insert(i, entry);
    }
    queue.front().is_some_and(|(t, _)| *t == at)
}

/// Fewest entries a queue holds before it is swept.
const SWEEP_MIN: usize = 64;

/// Keeps the entries of `queue` that `current` says are still current; returns how many are
/// left.
fn retain_current(
    queue: &mut VecDeque<Entry>,
    host: &dyn HeartbeatHost,
    current: impl Fn(&Beat, Instant) -> bool,
) -> usize {
    queue.retain(|(at, sid)| {
        host.live_session(sid)
            .is_some_and(|s| s.closed().is_none() && current(&s.beat.lock(), *at))
    });
    queue.len()
}

/// Takes the entries of `queue` due at `now`; gives back most of the room of a queue that
/// emptied (after a wave of connections, or of their connect checks).
fn due(queue: &mut VecDeque<Entry>, now: Instant) -> Vec<Entry> {
    let n = queue.partition_point(|(at, _)| *at <= now);
    let taken = queue.drain(..n).collect();
    if queue.capacity() > 64 && queue.len() < queue.capacity() / 4 {
        queue.shrink_to(queue.len() * 2);
    }
    taken
}

/// Takes the entries of the heap `queue` due at `now`; gives back room as [`due`] does.
fn due_in_heap(queue: &mut BinaryHeap<Reverse<Entry>>, now: Instant) -> Vec<Entry> {
    let mut taken = Vec::new();
    while queue.peek().is_some_and(|Reverse((at, _))| *at <= now) {
        if let Some(Reverse(entry)) = queue.pop() {
            taken.push(entry);
        }
    }
    if queue.capacity() > 64 && queue.len() < queue.capacity() / 4 {
        queue.shrink_to(queue.len() * 2);
    }
    taken
}

/// The heartbeats of all the sessions of one server.
pub struct Heartbeats {
    interval: Duration,
    timeout: Duration,
    queues: Mutex<Queues>,
    wake: Notify,
}

impl Heartbeats {
    pub fn new(interval: Duration, timeout: Duration) -> Arc<Self> {
        Arc::new(Heartbeats {
            interval,
            timeout,
            queues: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// Starts the heartbeat of a new session: its first ping an `interval` from now (v3: the
    /// client's first ping due an `interval + timeout` from now), and with `connect_timeout`
    /// the connect check that far from now.
    pub fn watch(self: &Arc<Self>, session: &EngineSession, connect_timeout: Option<Duration>) {
        let mut q = self.queues.lock();
        let now = Instant::now();
        let next_ping = now + self.interval;
        let connect_by = connect_timeout.map(|after| now + after);
        let client_ping_due = session
            .protocol
            .is_v3()
            .then(|| now + self.interval + self.timeout);
        // A v4 session's connect check, when due after its first ping, is queued at that ping
        // and only if the session has not joined a namespace by then (see `fire`): most have,
        // so a wave of connections does not hold an entry each until `connect_timeout`.
        let queue_connect =
            client_ping_due.is_some() || connect_timeout.is_some_and(|t| t <= self.interval);
        {
            let mut beat = session.beat.lock();
            beat.next_ping = Some(next_ping);
            beat.pong_due = client_ping_due;
            beat.connect_by = connect_by;
        }
        let mut first = match client_ping_due {
            None => push(&mut q.pings, (next_ping, session.sid.clone())),
            Some(at) => {
                q.client_pings.push(Reverse((at, session.sid.clone())));
                q.client_pings
                    .peek()
                    .is_some_and(|Reverse((t, _))| *t == at)
            }
        };
        if let Some(at) = connect_by.filter(|_| queue_connect) {
            first |= push(&mut q.connects, (at, session.sid.clone()));
        }
        drop(q);
        session.attach_heartbeats(Arc::downgrade(self));
        if first {
            self.wake.notify_one();
        }
    }

    /// A pong arrived for an awaited ping: the next ping goes an `interval` from now.
    pub(super) fn pong(&self, session: &EngineSession) {
        let mut q = self.queues.lock();
        let next_ping = Instant::now() + self.interval;
        {
            let mut beat = session.beat.lock();
            if beat.pong_due.is_none() || session.protocol.is_v3() {
                // Nobody asked for it (v3: the server never pings): it answers nothing.
                return;
            }
            beat.pong_due = None;
            beat.next_ping = Some(next_ping);
        }
        if push(&mut q.pings, (next_ping, session.sid.clone())) {
            drop(q);
            self.wake.notify_one();
        }
    }

    /// A v3 client pinged: its next ping is due an `interval + timeout` from now. Only the
    /// session's [`Beat`] changes (its queued entry moves when due). True when the layer's
    /// tick is due, at most once an `interval` (the v4 heartbeat ticks at each ping it sends).
    pub(super) fn client_ping(&self, session: &EngineSession) -> bool {
        let now = Instant::now();
        let mut beat = session.beat.lock();
        beat.pong_due = Some(now + self.interval + self.timeout);
        let tick = beat.next_ping.is_none_or(|at| now >= at);
        if tick {
            beat.next_ping = Some(now + self.interval);
        }
        tick
    }

    /// The session closed: the task ends it now rather than at its next deadline.
    pub(super) fn closed(&self, sid: Arc<str>) {
        self.queues.lock().closed.push(sid);
        self.wake.notify_one();
    }

    /// The task: runs until the host is gone.
    pub async fn run(self: Arc<Self>, host: Weak<dyn HeartbeatHost>) {
        loop {
            let wake = self.queues.lock().next_wake();
            let notified = self.wake.notified();
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = notified => {}
                    }
                }
                None => notified.await,
            }
            let Some(host) = host.upgrade() else { return };
            self.fire(&*host);
        }
    }

    /// Drops the entries of ended sessions, and those a pong made stale, from a queue that
    /// doubled since its last sweep. Under churn they would otherwise stay until their
    /// deadline (up to `connect_timeout`, 45 s): memory that grows with the churn rate, not
    /// with the sessions alive. Amortized, one look-up per entry queued.
    fn sweep(&self, host: &dyn HeartbeatHost) {
        let mut q = self.queues.lock();
        let Queues {
            pings,
            pongs,
            connects,
            client_pings,
            sweep_at,
            ..
        } = &mut *q;
        if pings.len() > sweep_at[0].max(SWEEP_MIN) {
            let left = retain_current(pings, host, |b, at| b.next_ping == Some(at));
            sweep_at[0] = 2 * left;
        }
        if pongs.len() > sweep_at[1].max(SWEEP_MIN) {
            let left = retain_current(pongs, host, |b, at| b.pong_due == Some(at));
            sweep_at[1] = 2 * left;
        }
        if connects.len() > sweep_at[2].max(SWEEP_MIN) {
            let left = retain_current(connects, host, |b, at| b.connect_by == Some(at));
            sweep_at[2] = 2 * left;
        }
        if client_pings.len() > sweep_at[3].max(SWEEP_MIN) {
            // One entry per session, current while the session lives.
            client_pings.retain(|Reverse((_, sid))| {
                host.live_session(sid).is_some_and(|s| s.closed().is_none())
            });
            sweep_at[3] = 2 * client_pings.len();
        }
    }

    /// Handles everything due now: closes first, then connect checks, pong deadlines (and v3
    /// clients' ping deadlines), pings (the order one session's deadlines at the same instant
    /// were always checked in).
    fn fire(&self, host: &dyn HeartbeatHost) {
        let now = Instant::now();
        let (closed, connects, pongs, client_pings, pings) = {
            let mut q = self.queues.lock();
            (
                std::mem::take(&mut q.closed),
                due(&mut q.connects, now),
                due(&mut q.pongs, now),
                due_in_heap(&mut q.client_pings, now),
                due(&mut q.pings, now),
            )
        };
        let any_closed = !closed.is_empty();
        for sid in closed {
            if let Some(s) = host.live_session(&sid) {
                let reason = s.closed().unwrap_or(DisconnectReason::ServerDisconnect);
                host.end(&s, reason);
            }
        }
        if any_closed {
            self.sweep(host);
        }
        let live = |sid: &str| {
            let s = host.live_session(sid)?;
            if let Some(reason) = s.closed() {
                host.end(&s, reason);
                return None;
            }
            Some(s)
        };
        let close = |s: &Arc<EngineSession>, reason: DisconnectReason| {
            s.close(reason);
            host.end(s, s.closed().unwrap_or(reason));
        };
        for (at, sid) in connects {
            let Some(s) = live(&sid) else { continue };
            let current = {
                let mut beat = s.beat.lock();
                let current = beat.connect_by == Some(at);
                if current {
                    beat.connect_by = None;
                }
                current
            };
            if current && !host.joined(&s) {
                close(&s, DisconnectReason::ServerDisconnect);
            }
        }
        for (at, sid) in pongs {
            let Some(s) = live(&sid) else { continue };
            let overdue = s.beat.lock().pong_due == Some(at);
            if overdue {
                close(&s, DisconnectReason::PingTimeout);
            }
        }
        for (_, sid) in client_pings {
            let Some(s) = live(&sid) else { continue };
            let due = s.beat.lock().pong_due;
            match due {
                // No ping since this deadline was set (or the task woke past a moved one).
                Some(due) if due <= now => close(&s, DisconnectReason::PingTimeout),
                // The client pinged: the session's one entry follows its deadline.
                Some(due) => self.queues.lock().client_pings.push(Reverse((due, sid))),
                None => {}
            }
        }
        for (at, sid) in pings {
            let Some(s) = live(&sid) else { continue };
            let connect_by = {
                let beat = s.beat.lock();
                if beat.next_ping != Some(at) {
                    continue;
                }
                beat.connect_by
            };
            // A connect check not queued at the open (see `watch`). Once queued, a later
            // ping may queue it again: the copy finds it done and is skipped.
            if let Some(by) = connect_by {
                if host.joined(&s) {
                    s.beat.lock().connect_by = None;
                } else {
                    push(&mut self.queues.lock().connects, (by, sid.clone()));
                }
            }
            if !host.tick(&s) {
                close(&s, DisconnectReason::TransportError);
                continue;
            }
            // Deadlines follow the schedule, not the (slightly late) wake-up, so a peer that
            // waits exactly interval + timeout finds the session closed.
            let deadline = at + self.timeout;
            {
                let mut beat = s.beat.lock();
                beat.next_ping = None;
                beat.pong_due = Some(deadline);
            }
            push(&mut self.queues.lock().pongs, (deadline, sid));
            if !s.send(Frame::PING) {
                host.end(&s, s.closed().unwrap_or(DisconnectReason::ServerDisconnect));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::session::{Handshake, TransportKind};
    use crate::engineio::v3::Protocol;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// One session, its checks' answers, and how it ended.
    struct Host {
        session: Arc<EngineSession>,
        joined: AtomicBool,
        tick_ok: AtomicBool,
        ended: Mutex<Vec<(DisconnectReason, Instant)>>,
    }

    impl HeartbeatHost for Host {
        fn live_session(&self, sid: &str) -> Option<Arc<EngineSession>> {
            (sid == &*self.session.sid && self.ended.lock().is_empty())
                .then(|| self.session.clone())
        }
        fn joined(&self, _: &Arc<EngineSession>) -> bool {
            self.joined.load(Ordering::Relaxed)
        }
        fn tick(&self, _: &Arc<EngineSession>) -> bool {
            self.tick_ok.load(Ordering::Relaxed)
        }
        fn end(&self, session: &Arc<EngineSession>, reason: DisconnectReason) {
            session.close(reason);
            self.ended.lock().push((reason, Instant::now()));
        }
    }

    struct Run {
        host: Arc<Host>,
        beats: Arc<Heartbeats>,
        start: Instant,
    }

    /// A session watched with `interval`/`timeout` (ms) and, if given, a connect check.
    fn start(interval: u64, timeout: u64, connect: Option<(u64, bool)>) -> Run {
        start_with(Protocol::V4, interval, timeout, connect)
    }

    /// [`start`] for a client of this Engine.IO revision.
    fn start_with(
        protocol: Protocol,
        interval: u64,
        timeout: u64,
        connect: Option<(u64, bool)>,
    ) -> Run {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/", "", [], addr, addr);
        let session = EngineSession::bounded_with_protocol(
            "s".into(),
            hs,
            TransportKind::Polling,
            usize::MAX,
            protocol,
        );
        let host = Arc::new(Host {
            session: session.clone(),
            joined: AtomicBool::new(connect.is_some_and(|(_, joined)| joined)),
            tick_ok: AtomicBool::new(true),
            ended: Mutex::default(),
        });
        let beats = Heartbeats::new(
            Duration::from_millis(interval),
            Duration::from_millis(timeout),
        );
        let weak: Weak<dyn HeartbeatHost> = Arc::downgrade(&(host.clone() as Arc<_>));
        tokio::spawn(beats.clone().run(weak));
        beats.watch(&session, connect.map(|(ms, _)| Duration::from_millis(ms)));
        Run {
            host,
            beats,
            start: Instant::now(),
        }
    }

    impl Run {
        /// How the session ended, and when (after the start); waits for it (bounded).
        async fn ended(&self) -> (DisconnectReason, Duration) {
            for _ in 0..100_000 {
                if let Some((reason, at)) = self.host.ended.lock().first() {
                    return (*reason, *at - self.start);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("the session never ended");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_without_a_namespace_closes_at_the_connect_deadline() {
        let run = start(300, 1000, Some((450, false)));
        let (reason, after) = run.ended().await;
        assert_eq!(reason, DisconnectReason::ServerDisconnect);
        assert_eq!(after, Duration::from_millis(450));
        assert_eq!(
            run.host.session.take().0,
            vec![Frame::PING],
            "the ping at 300 ms went out first"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connect_check_after_the_first_ping_is_queued_there_only_if_still_needed() {
        let run = start(300, 1000, Some((450, false)));
        let connects = || run.beats.queues.lock().connects.len();
        assert_eq!(connects(), 0, "nothing queued at the open");
        tokio::time::sleep(Duration::from_millis(310)).await;
        assert_eq!(connects(), 1, "queued at the first ping: not joined yet");
        let s = run.host.session.clone();
        assert_eq!(s.take().0, vec![Frame::PING]);
        s.pong_received();
        run.host.joined.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(connects(), 0);
        assert!(
            run.host.ended.lock().is_empty(),
            "joined before the deadline"
        );

        let joined = start(300, 1000, Some((450, true)));
        tokio::time::sleep(Duration::from_millis(310)).await;
        assert!(
            joined.beats.queues.lock().connects.is_empty(),
            "joined: never queued"
        );
        assert_eq!(joined.host.session.beat.lock().connect_by, None, "and done");
    }

    #[tokio::test(start_paused = true)]
    async fn a_joined_session_outlives_the_connect_deadline() {
        let run = start(300, 200, Some((100, true)));
        assert_eq!(
            run.ended().await,
            (DisconnectReason::PingTimeout, Duration::from_millis(500)),
            "closed by the heartbeat, not the check"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_pong_closes_with_ping_timeout_at_interval_plus_timeout() {
        let run = start(300, 200, None);
        assert_eq!(
            run.ended().await,
            (DisconnectReason::PingTimeout, Duration::from_millis(500))
        );
        assert_eq!(run.host.session.take().0, vec![Frame::PING]);
    }

    #[tokio::test(start_paused = true)]
    async fn pongs_keep_the_session_alive_and_set_the_next_ping() {
        let run = start(300, 200, None);
        let s = run.host.session.clone();
        for _ in 0..5 {
            // wait for each ping, then answer it
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if !s.take().0.is_empty() {
                    break;
                }
            }
            s.pong_received();
        }
        // Pings at 300, then 300 after each pong (seen within 10 ms of its ping).
        assert!(run.host.ended.lock().is_empty());
        s.close(DisconnectReason::ClientDisconnect);
        let (reason, _) = run.ended().await;
        assert_eq!(reason, DisconnectReason::ClientDisconnect);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pong_reschedules_even_when_the_timeout_is_longer_than_the_interval() {
        let run = start(300, 1000, None);
        let s = run.host.session.clone();
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(s.take().0, vec![Frame::PING], "the ping at 300 ms");
        s.pong_received(); // at 350: the next ping at 650, not at the old deadline (1300)
        tokio::time::sleep(Duration::from_millis(310)).await;
        assert_eq!(s.take().0, vec![Frame::PING], "the ping at 650 ms");
        assert_eq!(
            run.ended().await,
            (DisconnectReason::PingTimeout, Duration::from_millis(1650))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_tick_closes_as_a_transport_error_before_the_ping() {
        let run = start(300, 200, None);
        run.host.tick_ok.store(false, Ordering::Relaxed);
        assert_eq!(
            run.ended().await,
            (DisconnectReason::TransportError, Duration::from_millis(300))
        );
        assert!(
            run.host.session.take().0.is_empty(),
            "no ping after a failed tick"
        );
    }

    const V3: Protocol = Protocol::V3 { base64: false };

    #[tokio::test(start_paused = true)]
    async fn a_v3_client_that_stops_pinging_times_out_and_no_ping_is_sent() {
        let run = start_with(V3, 300, 200, None);
        let s = run.host.session.clone();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            s.client_pinged();
        }
        assert!(
            run.host.ended.lock().is_empty(),
            "pings within interval + timeout"
        );
        assert_eq!(
            run.ended().await,
            (
                DisconnectReason::PingTimeout,
                Duration::from_millis(1200 + 500)
            ),
            "interval + timeout after the last ping"
        );
        assert!(s.take().0.is_empty(), "the server never pings a v3 client");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pinging_v3_client_stays_alive_with_one_entry_and_a_tick_an_interval() {
        let run = start_with(V3, 300, 200, Some((450, true)));
        let s = run.host.session.clone();
        let mut ticks = 0;
        for _ in 0..50 {
            // 50 pings 250 ms apart: 12.5 s, many times interval + timeout.
            tokio::time::sleep(Duration::from_millis(250)).await;
            ticks += usize::from(s.client_pinged());
            let q = run.beats.queues.lock();
            assert!(q.pings.is_empty() && q.pongs.is_empty(), "no ping, no pong");
            assert!(q.client_pings.len() <= 1, "one deadline entry per session");
        }
        assert!(run.host.ended.lock().is_empty(), "alive while it pings");
        assert!(s.take().0.is_empty(), "the server never pings a v3 client");
        // A tick at the first ping past each interval: every other ping here.
        assert_eq!(ticks, 25);
        assert!(!s.pong_overdue());
        assert_eq!(
            run.ended().await,
            (
                DisconnectReason::PingTimeout,
                Duration::from_millis(50 * 250 + 500)
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_pong_does_not_answer_the_next_ping() {
        let run = start(300, 200, None);
        run.host.session.pong_received(); // unsolicited
        assert_eq!(
            run.ended().await,
            (DisconnectReason::PingTimeout, Duration::from_millis(500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answered_pings_leave_at_most_three_entries_behind() {
        let run = start(300, 200, Some((450, true)));
        let s = run.host.session.clone();
        for _ in 0..50 {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if !s.take().0.is_empty() {
                    break;
                }
            }
            s.pong_received();
            let q = run.beats.queues.lock();
            let entries = q.pings.len() + q.pongs.len() + q.connects.len();
            assert!(entries <= 3, "{entries} entries for one session");
        }
        assert!(run.host.ended.lock().is_empty());
    }

    #[test]
    fn a_sweep_drops_the_entries_of_ended_sessions() {
        let beats = Heartbeats::new(Duration::from_secs(25), Duration::from_secs(20));
        let addr = "127.0.0.1:1".parse().unwrap();
        let host = Host {
            session: EngineSession::new(
                "live".into(),
                Handshake::new("GET", "/", "", [], addr, addr),
                TransportKind::Polling,
            ),
            joined: AtomicBool::new(true),
            tick_ok: AtomicBool::new(true),
            ended: Mutex::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // 200 sessions came and went; one stays. Their connect checks (due before the
            // first ping) are queued at the open.
            for i in 0..200 {
                let gone = EngineSession::new(
                    format!("gone{i}").into(),
                    Handshake::new("GET", "/", "", [], addr, addr),
                    TransportKind::Polling,
                );
                beats.watch(&gone, Some(Duration::from_secs(20)));
            }
            for i in 0..100 {
                let gone = EngineSession::bounded_with_protocol(
                    format!("gone-v3-{i}").into(),
                    Handshake::new("GET", "/", "", [], addr, addr),
                    TransportKind::Polling,
                    usize::MAX,
                    Protocol::V3 { base64: false },
                );
                beats.watch(&gone, None);
            }
            beats.watch(&host.session, Some(Duration::from_secs(20)));
        });
        beats.sweep(&host);
        let q = beats.queues.lock();
        assert_eq!(
            (q.pings.len(), q.connects.len(), q.client_pings.len()),
            (1, 1, 0)
        );
        assert_eq!(q.sweep_at, [2, 0, 2, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_ends_the_session_before_its_next_deadline() {
        let run = start(25_000, 20_000, None);
        tokio::time::sleep(Duration::from_millis(5)).await;
        run.host.session.close(DisconnectReason::ServerDisconnect);
        let (reason, after) = run.ended().await;
        assert_eq!(reason, DisconnectReason::ServerDisconnect);
        assert!(after < Duration::from_millis(10), "ended at {after:?}");
        drop(run.beats);
    }
}
