//! Several worker processes on one port without sticky sessions (`ferrosio.run(workers=N)`).
//!
//! Every worker listens on the port with `SO_REUSEPORT`: the kernel spreads new connections
//! over them. A session's sid names the worker that owns it (see [`crate::sid`]). Before a
//! worker serves a connection it peeks at the first request line: a request for a session of
//! another worker has its connection handed to that worker, the socket itself passed with
//! `SCM_RIGHTS` over a Unix datagram socket (`<dir>/<index>.sock`). Nothing was consumed (a
//! peek), so the owner serves the connection exactly as one it accepted itself: polling GET
//! and POST, and WebSocket upgrades, with no byte copied through the first worker. Keep-alive
//! is off in this mode: a connection carries one request, so the next request (maybe for a
//! session of another worker) is routed afresh.
//!
//! Bounds: the peek looks at most at [`MAX_REQUEST_LINE`] bytes for at most [`PEEK_TIMEOUT`];
//! a longer or slower request line is served here (and gets the usual HTTP answer). The
//! owner's inbox is the kernel's datagram queue (`net.unix.max_dgram_qlen` messages of one
//! byte and one fd); while it is full the sender retries for up to [`HANDOFF_PATIENCE`], then
//! serves the connection itself: the session is unknown here, the client is answered 400 and
//! reconnects, as when the owner is gone (a dead worker's sessions are lost with it).

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::SockAddr;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{listener, FrontDoor};
use crate::config::WorkerConfig;
use crate::sid;

/// The longest request line looked at for a sid; longer ones are served where they landed.
pub(super) const MAX_REQUEST_LINE: usize = 8 * 1024;
/// The first peek's size: a polling request line is ~100 bytes.
const FIRST_PEEK: usize = 512;
/// How long a new connection may take to send its request line before it is served here.
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between peeks at a request line that has not fully arrived (rare: it comes in
/// the first segment).
const PEEK_RETRY: Duration = Duration::from_millis(2);
/// How long a handoff waits for room in a busy owner's inbox.
const HANDOFF_PATIENCE: Duration = Duration::from_millis(500);
const HANDOFF_RETRY: Duration = Duration::from_millis(1);

/// This worker's place among the workers, and its way to reach the others.
pub(super) struct Handoff {
    index: u8,
    count: u8,
    dir: PathBuf,
    /// Unbound: sends to any worker's inbox.
    outbox: UnixDatagram,
    /// Connections handed to other workers, and taken from them.
    handed_out: AtomicU64,
    taken_in: AtomicU64,
}

/// A worker's place and its handoff counters (`ServerHandle::worker_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    pub index: u8,
    pub count: u8,
    /// Connections this worker accepted for another worker's session and handed to it.
    pub handed_out: u64,
    /// Connections other workers handed to this one.
    pub taken_in: u64,
}

impl Handoff {
    pub(super) fn stats(&self) -> WorkerStats {
        WorkerStats {
            index: self.index,
            count: self.count,
            handed_out: self.handed_out.load(Ordering::Relaxed),
            taken_in: self.taken_in.load(Ordering::Relaxed),
        }
    }
}

/// The inbox of worker `index`.
fn inbox_path(dir: &Path, index: u8) -> PathBuf {
    dir.join(format!("{index}.sock"))
}

/// Binds this worker's inbox (replacing the one a dead predecessor left) and tags the sids
/// this process makes with its number.
pub(super) fn bind(cfg: &WorkerConfig) -> io::Result<(Arc<Handoff>, UnixDatagram)> {
    if cfg.count == 0 || cfg.index >= cfg.count || cfg.count > sid::MAX_OWNERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "worker {} of {}: at most {} workers, numbered from 0",
                cfg.index,
                cfg.count,
                sid::MAX_OWNERS
            ),
        ));
    }
    let path = inbox_path(&cfg.dir, cfg.index);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let inbox = UnixDatagram::bind(&path)?;
    inbox.set_nonblocking(true)?;
    let outbox = UnixDatagram::unbound()?;
    outbox.set_nonblocking(true)?;
    sid::set_owner(cfg.index);
    let handoff = Handoff {
        index: cfg.index,
        count: cfg.count,
        dir: cfg.dir.clone(),
        outbox,
        handed_out: AtomicU64::new(0),
        taken_in: AtomicU64::new(0),
    };
    Ok((Arc::new(handoff), inbox))
}

/// The worker named by the sid of a request line (`GET /socket.io/?EIO=4&sid=… HTTP/1.1`).
fn owner_in(line: &[u8], count: u8) -> Option<u8> {
    let target = line.split(|&b| b == b' ').nth(1)?;
    let query = &target[memchr::memchr(b'?', target)? + 1..];
    let sid = query
        .split(|&b| b == b'&')
        .find_map(|pair| pair.strip_prefix(b"sid="))?;
    sid::owner_of(sid, count)
}

/// The worker named by the first request line of `stream`, read without consuming it.
async fn first_line_owner(stream: &TcpStream, count: u8) -> Option<u8> {
    // Most request lines fit the first size; a longer one grows the buffer up to the bound.
    let mut buf = vec![0u8; FIRST_PEEK];
    let deadline = Instant::now() + PEEK_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = memchr::memchr(b'\n', &buf[..n]) {
            return owner_in(&buf[..end], count);
        }
        if n == buf.len() {
            if buf.len() >= MAX_REQUEST_LINE {
                return None;
            }
            buf.resize((buf.len() * 4).min(MAX_REQUEST_LINE), 0);
            continue;
        }
        if Instant::now() >= deadline {
            return None;
        }
        // The peek sees the same bytes until more arrive: wait a little rather than spin.
        tokio::time::sleep(PEEK_RETRY).await;
    }
}

/// A connection accepted by this worker: served here, or handed to the worker its first
/// request names.
pub(super) async fn route(
    front: Arc<FrontDoor>,
    handoff: Arc<Handoff>,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) {
    let stream = match first_line_owner(&stream, handoff.count).await {
        Some(owner) if owner != handoff.index => match handoff.hand_over(owner, stream).await {
            Some(stream) => stream,
            None => return,
        },
        _ => stream,
    };
    listener::serve_connection(front, stream, remote, local).await;
}

impl Handoff {
    /// Passes `stream` to worker `owner`; gives it back if the owner cannot take it.
    async fn hand_over(&self, owner: u8, stream: TcpStream) -> Option<TcpStream> {
        // Out of this process's reactor first: the owner's takes it over.
        let stream = stream.into_std().ok()?;
        let to = SockAddr::unix(inbox_path(&self.dir, owner)).ok()?;
        let deadline = Instant::now() + HANDOFF_PATIENCE;
        loop {
            match send_fd(&self.outbox, &to, stream.as_raw_fd()) {
                // Our copy closes here; the owner holds its own.
                Ok(()) => {
                    self.handed_out.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    tokio::time::sleep(HANDOFF_RETRY).await;
                }
                // The owner is gone (or being replaced), or stayed busy: served here.
                Err(_) => return TcpStream::from_std(stream).ok(),
            }
        }
    }
}

/// Serves the connections other workers hand to this one, until the serve loop ends.
pub(super) async fn receive(front: Arc<FrontDoor>, handoff: Arc<Handoff>, inbox: UnixDatagram) {
    let Ok(inbox) = tokio::net::UnixDatagram::from_std(inbox) else {
        return;
    };
    loop {
        match inbox
            .async_io(Interest::READABLE, || recv_fd(inbox.as_raw_fd()))
            .await
        {
            Ok(Some(fd)) => {
                handoff.taken_in.fetch_add(1, Ordering::Relaxed);
                adopt(&front, fd);
            }
            Ok(None) => {}
            // Out of fds, for instance: the sender's retry or the client's will do.
            Err(_) => tokio::time::sleep(HANDOFF_RETRY).await,
        }
    }
}

/// Serves a handed-over connection as if this worker had accepted it.
fn adopt(front: &Arc<FrontDoor>, fd: OwnedFd) {
    let stream = std::net::TcpStream::from(fd);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    // Not a connected TCP socket: nothing to serve.
    let (Ok(remote), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    if let Ok(stream) = TcpStream::from_std(stream) {
        tokio::spawn(listener::serve_connection(
            front.clone(),
            stream,
            remote,
            local,
        ));
    }
}

/// Room for one control message carrying one fd, aligned for `cmsghdr`.
#[repr(C)]
union Control {
    _align: libc::cmsghdr,
    buf: [u8; 64],
}

/// Sends one byte with `fd` attached to the datagram socket at `to`.
fn send_fd(sock: &UnixDatagram, to: &SockAddr, fd: RawFd) -> io::Result<()> {
    let mut control = Control { buf: [0; 64] };
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; zero is a valid value for every field.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = to.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = to.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the union's buffer outlives the call; CMSG_* compute within it (24 of 64 bytes
    // for one fd), CMSG_FIRSTHDR is non-null as msg_controllen covers a header.
    unsafe {
        msg.msg_control = control.buf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    // SAFETY: every pointer in msg is valid for the duration of the call.
    let sent = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Receives one datagram and the first fd attached to it (any other is closed).
fn recv_fd(sock: RawFd) -> io::Result<Option<OwnedFd>> {
    let mut control = Control { buf: [0; 64] };
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: as in send_fd.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the buffer outlives the call.
    msg.msg_control = unsafe { control.buf.as_mut_ptr().cast() };
    msg.msg_controllen = 64;
    // SAFETY: every pointer in msg is valid for the duration of the call.
    let got = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut received = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed control
    // messages; the CMSG_* walk stays within them. Each fd of an SCM_RIGHTS message was just
    // installed in this process for us: owning it (and so closing it) is ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = data as usize - cmsg as usize;
                let fds = ((*cmsg).cmsg_len as usize).saturating_sub(header) / size_of::<RawFd>();
                for i in 0..fds {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    let fd = OwnedFd::from_raw_fd(fd);
                    if received.is_none() {
                        received = Some(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sid_of_a_request_line_names_its_worker() {
        let line =
            |sid: &str| format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1");
        assert_eq!(
            owner_in(line("Dxxxxxxxxxxxxxxxxxxx").as_bytes(), 4),
            Some(3)
        );
        assert_eq!(
            owner_in(line("Axxxxxxxxxxxxxxxxxxx").as_bytes(), 4),
            Some(0)
        );
        assert_eq!(
            owner_in(line("Exxxxxxxxxxxxxxxxxxx").as_bytes(), 4),
            None,
            "no worker 4"
        );
        assert_eq!(
            owner_in(b"GET /socket.io/?sid=Bxx&EIO=4 HTTP/1.1", 4),
            Some(1)
        );
        assert_eq!(
            owner_in(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1", 4),
            None
        );
        assert_eq!(owner_in(b"GET /index.html HTTP/1.1", 4), None);
        assert_eq!(owner_in(b"garbage", 4), None);
        assert_eq!(owner_in(b"GET /?xsid=Bxx HTTP/1.1", 4), None);
    }

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ferrosio-handoff-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn an_fd_sent_arrives_as_an_fd() {
        let dir = dir();
        let inbox = UnixDatagram::bind(inbox_path(&dir, 0)).unwrap();
        let outbox = UnixDatagram::unbound().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = SockAddr::unix(inbox_path(&dir, 0)).unwrap();
        send_fd(&outbox, &to, listener.as_raw_fd()).unwrap();
        let fd = recv_fd(inbox.as_raw_fd()).unwrap().expect("an fd");
        let same = std::net::TcpListener::from(fd);
        assert_eq!(same.local_addr().unwrap(), listener.local_addr().unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_inbox_refuses_more_and_a_missing_one_refuses_at_once() {
        let dir = dir();
        let inbox = UnixDatagram::bind(inbox_path(&dir, 0)).unwrap();
        let outbox = UnixDatagram::unbound().unwrap();
        outbox.set_nonblocking(true).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = SockAddr::unix(inbox_path(&dir, 0)).unwrap();
        // Nobody reads the inbox: the kernel's queue bound (max_dgram_qlen) is reached.
        let mut sent = 0;
        let err = loop {
            match send_fd(&outbox, &to, listener.as_raw_fd()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 100_000, "the queue is bounded");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(sent > 0);
        // Every queued fd is still delivered.
        inbox.set_nonblocking(true).unwrap();
        for _ in 0..sent {
            assert!(recv_fd(inbox.as_raw_fd()).unwrap().is_some());
        }
        let gone = SockAddr::unix(inbox_path(&dir, 1)).unwrap();
        let err = send_fd(&outbox, &gone, listener.as_raw_fd()).unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::WouldBlock);
        std::fs::remove_dir_all(dir).unwrap();
    }

    async fn connected() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn the_peek_waits_for_a_split_request_line_and_stops_at_its_bound() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = connected().await;
        client
            .write_all(b"GET /socket.io/?EIO=4&sid=Cxxx")
            .await
            .unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client
                .write_all(b"x HTTP/1.1\r\nHost: h\r\n\r\n")
                .await
                .unwrap();
            client
        });
        assert_eq!(first_line_owner(&server, 4).await, Some(2));
        let _client = writer.await.unwrap();
        // Nothing was consumed: the request is still there for hyper.
        let mut buf = [0u8; 4];
        server.peek(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET ");

        // A request line longer than the bound is not looked into further.
        let (mut client, server) = connected().await;
        let long = vec![b'a'; MAX_REQUEST_LINE + 100];
        client.write_all(b"GET /?sid=B").await.unwrap();
        client.write_all(&long).await.unwrap();
        let mut seen = 0;
        while seen < MAX_REQUEST_LINE {
            let mut buf = vec![0u8; MAX_REQUEST_LINE];
            seen = server.peek(&mut buf).await.unwrap();
        }
        assert_eq!(first_line_owner(&server, 4).await, None);
    }

    #[tokio::test]
    async fn an_owner_that_stays_busy_leaves_the_connection_here() {
        let dir = dir();
        let inbox = UnixDatagram::bind(inbox_path(&dir, 1)).unwrap();
        let outbox = UnixDatagram::unbound().unwrap();
        outbox.set_nonblocking(true).unwrap();
        let handoff = Handoff {
            index: 0,
            count: 2,
            dir: dir.clone(),
            outbox,
            handed_out: AtomicU64::new(0),
            taken_in: AtomicU64::new(0),
        };
        // Worker 1 reads nothing: its inbox fills to the kernel's bound.
        let to = SockAddr::unix(inbox_path(&dir, 1)).unwrap();
        let filler = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        while send_fd(&handoff.outbox, &to, filler.as_raw_fd()).is_ok() {}
        let (_client, server) = connected().await;
        let local = server.local_addr().unwrap();
        let back = handoff.hand_over(1, server).await.expect("given back");
        assert_eq!(back.local_addr().unwrap(), local);
        // A worker that is gone (no inbox): given back at once.
        let (_client, server) = connected().await;
        assert!(handoff.hand_over(7, server).await.is_some());
        assert_eq!(handoff.stats().handed_out, 0, "nothing was handed over");
        drop(inbox);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
