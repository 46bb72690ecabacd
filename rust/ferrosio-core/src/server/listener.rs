//! The listening socket and the engine thread's main loop: bind, accept connections (each served
//! by hyper in its own task), apply host commands between them, and on shutdown close every
//! session and give them a grace period to flush.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::handoff::{self, Handoff};
use super::FrontDoor;
use crate::bridge::{Command, ControlCommand};

/// Connections the kernel may hold before `accept`: std's 128 overflowed at 400 handshakes in
/// parallel (TcpExtListenOverflows; each drop costs the client a 1 s SYN retransmit).
const LISTEN_BACKLOG: i32 = 2048;
/// How long a client may take over its TLS handshake (as hyper's header deadline: 10 s).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A non-blocking listener on `addr` ("host:port"), with address reuse and a deep backlog;
/// with `reuse_port`, one of several workers' listeners on the same port (`SO_REUSEPORT`).
pub(super) fn bind(addr: &str, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last_err = None;
    for sa in addr.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(sa),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // As every server does: a restart must not wait for TIME_WAIT sockets to expire.
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        match socket
            .bind(&sa.into())
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(()) => {
                socket.set_nonblocking(true)?;
                return Ok(socket.into());
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

/// The next connection; never, without a listener.
async fn accept(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Runs until `Command::Shutdown` (or the host drops its handle), then shuts down gracefully.
pub(super) async fn serve(
    listener: Option<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
    front: Arc<FrontDoor>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    workers: Option<(Arc<Handoff>, UnixDatagram)>,
) {
    // None: the host hands requests over (`external`); only commands come in here.
    let listener = match listener.map(TcpListener::from_std) {
        Some(Ok(l)) => Some(l),
        Some(Err(_)) => return,
        None => None,
    };
    // Bound to one address, every connection's local address is that one: no getsockname.
    let bound = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .filter(|a| !a.ip().is_unspecified());
    // One of several workers: connections come from the others too.
    let (handoff, receiving) = match workers {
        Some((handoff, inbox)) => {
            let receiving = tokio::spawn(handoff::receive(front.clone(), handoff.clone(), inbox));
            (Some(handoff), Some(receiving))
        }
        None => (None, None),
    };

    let grace = loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                // The host dropped its handle: stop without waiting.
                None => break Duration::ZERO,
                Some(Command::Control(ControlCommand::Shutdown { timeout_ms })) => break Duration::from_millis(timeout_ms),
                Some(cmd) => {
                    front.execute(cmd);
                    // Apply whatever else is queued before going back to the sockets.
                    let mut stop = None;
                    while let Ok(cmd) = commands.try_recv() {
                        if let Command::Control(ControlCommand::Shutdown { timeout_ms }) = cmd {
                            stop = Some(Duration::from_millis(timeout_ms));
                            break;
                        }
                        front.execute(cmd);
                    }
                    if let Some(grace) = stop {
                        break grace;
                    }
                }
            },
            accepted = accept(listener.as_ref()) => {
                let Ok((stream, remote)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let local = match bound {
                    Some(addr) => addr,
                    None => stream.local_addr().unwrap_or(remote),
                };
                match (&tls, &handoff) {
                    (None, None) => {
                        tokio::spawn(serve_connection(front.clone(), stream, remote, local));
                    }
                    (None, Some(handoff)) => {
                        tokio::spawn(handoff::route(front.clone(), handoff.clone(), stream, remote, local));
                    }
                    (Some(acceptor), _) => {
                        tokio::spawn(serve_tls_connection(front.clone(), acceptor.clone(), stream, remote, local));
                    }
                }
            }
        }
    };
    drop(listener);
    if let Some(receiving) = receiving {
        receiving.abort();
    }
    // Graceful: every session flushes what is queued, then closes.
    front.close_all_sessions();
    let deadline = tokio::time::Instant::now() + grace;
    while front.has_sessions() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The TLS handshake, then HTTP as on a plain connection. A client that fails the handshake
/// (or does not finish it within [`TLS_HANDSHAKE_TIMEOUT`]) is dropped; nobody else notices.
async fn serve_tls_connection(
    front: Arc<FrontDoor>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) {
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    if let Ok(Ok(tls)) = handshake.await {
        serve_connection(front, tls, remote, local).await;
    }
}

/// Serves one HTTP/1.1 connection until it ends (or is upgraded to a WebSocket).
pub(super) async fn serve_connection<IO>(
    front: Arc<FrontDoor>,
    io: IO,
    remote: SocketAddr,
    local: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Among workers, a connection carries one request: the next is routed by its own sid.
    let keep_alive = front.config.worker.is_none();
    let service =
        hyper::service::service_fn(move |req| front.clone().serve_request(req, remote, local));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(keep_alive)
        // Bounded headers (exactly: see `http::head_too_large`), and a deadline for them:
        // slowloris costs little.
        .max_buf_size(super::http::MAX_REQUEST_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let _ = conn.await;
}
