//! The server-side heartbeat of one session, whatever its transport: a ping every
//! `interval`, and the session closes if no pong follows within `timeout`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;

use super::packet::Frame;
use super::session::{CloseReason, EngineSession};

/// Runs until the session closes; returns why it closed.
pub async fn run(
    session: Arc<EngineSession>,
    interval: Duration,
    timeout: Duration,
) -> CloseReason {
    // Deadlines follow the schedule, not the (slightly late) timer wake-ups, so a peer that
    // waits exactly interval + timeout finds the session closed.
    let mut next_ping = Instant::now() + interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_ping) => {}
            () = session.wait_closed() => break,
        }
        // A pong nobody asked for must not answer the ping below.
        let _ = session.wait_pong().now_or_never();
        let deadline = next_ping + timeout;
        session.ping_sent(deadline);
        if !session.send(Frame::PING) {
            break;
        }
        tokio::select! {
            () = session.wait_pong() => next_ping = Instant::now() + interval,
            () = tokio::time::sleep_until(deadline) => {
                session.close(CloseReason::PingTimeout);
                break;
            }
            () = session.wait_closed() => break,
        }
    }
    session.closed().unwrap_or(CloseReason::ServerClose)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::session::{Handshake, TransportKind};

    fn session() -> Arc<EngineSession> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let hs = Handshake {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![],
            remote_addr: addr,
            local_addr: addr,
        };
        EngineSession::new("s".into(), Arc::new(hs), TransportKind::Polling)
    }

    #[tokio::test(start_paused = true)]
    async fn no_pong_closes_with_ping_timeout() {
        let s = session();
        let reason = run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(reason, CloseReason::PingTimeout);
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
        s.close(CloseReason::ClientClose);
        assert_eq!(hb.await.unwrap(), CloseReason::ClientClose);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_pong_does_not_answer_the_next_ping() {
        let s = session();
        s.pong_received(); // unsolicited
        let reason = run(
            s.clone(),
            Duration::from_millis(300),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(reason, CloseReason::PingTimeout);
    }
}
