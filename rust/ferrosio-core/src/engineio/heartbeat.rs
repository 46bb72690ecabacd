//! The server-side heartbeat of one session, whatever its transport: a ping every
//! `interval`, and the session closes if no pong follows within `timeout`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::packet::Frame;
use super::session::{DisconnectReason, EngineSession};

/// Runs until the session closes; returns why it closed.
///
/// `connect`: a deadline by which `joined()` must hold, else the session closes (Socket.IO's
/// connect timeout). `on_tick` runs at each ping (once per `interval`) for the layer above's
/// own deadlines (e.g. an unfinished binary packet); false closes the session as a protocol
/// error. One loop and one timer serve all of them, as this future lives as long as its
/// session: its size is memory per idle connection.
pub async fn run<F: Fn() -> bool, T: Fn() -> bool>(
    session: Arc<EngineSession>,
    interval: Duration,
    timeout: Duration,
    mut connect: Option<(Instant, F)>,
    on_tick: T,
) -> DisconnectReason {
    // Deadlines follow the schedule, not the (slightly late) timer wake-ups, so a peer that
    // waits exactly interval + timeout finds the session closed.
    let mut next_ping = Instant::now() + interval;
    let mut pong_due: Option<Instant> = None;
    loop {
        let mut wake = pong_due.unwrap_or(next_ping);
        if let Some((at, _)) = &connect {
            wake = wake.min(*at);
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = session.wait_pong(), if pong_due.is_some() => {
                pong_due = None;
                next_ping = Instant::now() + interval;
                continue;
            }
            () = session.wait_closed() => break,
        }
        let now = Instant::now();
        if let Some((at, joined)) = &connect {
            if now >= *at {
                if !joined() {
                    session.close(DisconnectReason::ServerDisconnect);
                    break;
                }
                connect = None;
            }
        }
        match pong_due {
            Some(due) if now >= due => {
                session.close(DisconnectReason::PingTimeout);
                break;
            }
            Some(_) => {}
            None if now >= next_ping => {
                if !on_tick() {
                    session.close(DisconnectReason::TransportError);
                    break;
                }
                // A pong nobody asked for must not answer this ping.
                let _ = session.wait_pong().now_or_never();
                let deadline = next_ping + timeout;
                session.ping_sent(deadline);
                if !session.send(Frame::PING) {
                    break;
                }
                pong_due = Some(deadline);
            }
            None => {}
        }
    }
    session
        .closed()
        .unwrap_or(DisconnectReason::ServerDisconnect)
}

/// The heartbeat of an Engine.IO v3 session, where the client pings and the server answers:
/// the session closes when no ping arrived for `interval + timeout` (since the last one, or
/// the open), as Node's server does. `connect` and `on_tick` as in [`run`].
pub async fn run_client_pings<F: Fn() -> bool, T: Fn() -> bool>(
    session: Arc<EngineSession>,
    interval: Duration,
    timeout: Duration,
    mut connect: Option<(Instant, F)>,
    on_tick: T,
) -> DisconnectReason {
    let mut ping_due = Instant::now() + interval + timeout;
    session.ping_sent(ping_due);
    let mut next_tick = Instant::now() + interval;
    loop {
        let mut wake = ping_due.min(next_tick);
        if let Some((at, _)) = &connect {
            wake = wake.min(*at);
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            // The transport signals each client ping as a pong would be in v4.
            () = session.wait_pong() => {
                ping_due = Instant::now() + interval + timeout;
                session.ping_sent(ping_due);
                continue;
            }
            () = session.wait_closed() => break,
        }
        let now = Instant::now();
        if let Some((at, joined)) = &connect {
            if now >= *at {
                if !joined() {
                    session.close(DisconnectReason::ServerDisconnect);
                    break;
                }
                connect = None;
            }
        }
        if now >= ping_due {
            session.close(DisconnectReason::PingTimeout);
            break;
        }
        if now >= next_tick {
            if !on_tick() {
                session.close(DisconnectReason::TransportError);
                break;
            }
            next_tick = now + interval;
        }
    }
    session
        .closed()
        .unwrap_or(DisconnectReason::ServerDisconnect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::session::{Handshake, TransportKind};

    const NO_CONNECT_CHECK: Option<(Instant, fn() -> bool)> = None;

    #[tokio::test(start_paused = true)]
    async fn a_session_without_a_namespace_closes_at_the_connect_deadline() {
        let s = session();
        let start = Instant::now();
        let check = Some((start + Duration::from_millis(450), || false));
        let reason = run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(1000),
            check,
            || true,
        )
        .await;
        assert_eq!(reason, DisconnectReason::ServerDisconnect);
        assert_eq!(Instant::now() - start, Duration::from_millis(450));
        assert_eq!(
            s.take().0,
            vec![Frame::PING],
            "the ping at 300 ms went out first"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_joined_session_outlives_the_connect_deadline() {
        let s = session();
        let check = Some((Instant::now() + Duration::from_millis(100), || true));
        let reason = run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
            check,
            || true,
        )
        .await;
        assert_eq!(
            reason,
            DisconnectReason::PingTimeout,
            "closed by the heartbeat, not the check"
        );
    }

    fn session() -> Arc<EngineSession> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake::new("GET", "/", "", [], addr, addr);
        EngineSession::new("s".into(), Arc::new(hs), TransportKind::Polling)
    }

    #[tokio::test(start_paused = true)]
    async fn no_pong_closes_with_ping_timeout() {
        let s = session();
        let reason = run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
            NO_CONNECT_CHECK,
            || true,
        )
        .await;
        assert_eq!(reason, DisconnectReason::PingTimeout);
        let (frames, _) = s.take();
        assert_eq!(frames, vec![Frame::PING]);
    }

    #[tokio::test(start_paused = true)]
    async fn pongs_keep_the_session_alive() {
        let s = session();
        let hb = tokio::spawn(run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
            NO_CONNECT_CHECK,
            || true,
        ));
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
        assert!(s.closed().is_none());
        s.close(DisconnectReason::ClientDisconnect);
        assert_eq!(hb.await.unwrap(), DisconnectReason::ClientDisconnect);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_tick_closes_as_a_transport_error_before_the_ping() {
        let s = session();
        let reason = run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
            NO_CONNECT_CHECK,
            || false,
        )
        .await;
        assert_eq!(reason, DisconnectReason::TransportError);
        assert!(s.take().0.is_empty(), "no ping after a failed tick");
    }

    #[tokio::test(start_paused = true)]
    async fn a_v3_client_that_stops_pinging_times_out_and_no_ping_is_sent() {
        let s = session();
        let start = Instant::now();
        let hb = tokio::spawn(run_client_pings(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
            NO_CONNECT_CHECK,
            || true,
        ));
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            s.pong_received(); // the client's ping, as the transport reports it
        }
        assert!(s.closed().is_none(), "pings within interval + timeout");
        assert_eq!(hb.await.unwrap(), DisconnectReason::PingTimeout);
        assert_eq!(
            Instant::now() - start,
            Duration::from_millis(1200 + 500),
            "interval + timeout after the last ping"
        );
        assert!(s.take().0.is_empty(), "the server never pings a v3 client");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_pong_does_not_answer_the_next_ping() {
        let s = session();
        s.pong_received(); // unsolicited
        let reason = run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
            NO_CONNECT_CHECK,
            || true,
        )
        .await;
        assert_eq!(reason, DisconnectReason::PingTimeout);
    }
}
