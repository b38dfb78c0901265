//! One client connection: read length-prefixed request frames, decode, dispatch, and write
//! responses back in request order.
//!
//! Invariants: responses leave in request order. Produce requests are pipelined: a request's
//! appends are queued (after every earlier request's) before the next request is read, and
//! while up to `PIPELINE_DEPTH` of them wait for their writes the next frames are read and
//! started; any other request waits for those before it and runs alone (as Kafka runs every
//! request). A frame is never read past `max_frame_bytes`; any malformed or unsupported
//! request closes this connection only, with a log line, after the responses before it.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::future::{select, Either, LocalBoxFuture};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use tracing::{debug, warn};

use super::authn::{self, Gate, Session};
use super::limits::Reservation;
use super::shard::Shard;
use super::splice::{self, Piece};
use super::{dispatch, produce};
use crate::protocol::{self, encode_response, ProtocolError, Request};
use crate::security::listeners::Listener;

/// Smallest valid request: api key, version, correlation id, client id length.
const MIN_FRAME: usize = 10;
/// Largest frame read before a SASL connection is authenticated (Kafka's
/// `sasl.server.max.receive.size` default).
const UNAUTHENTICATED_MAX_FRAME: usize = 512 << 10;
/// Produce requests of one connection queued and waiting for their writes at once (a
/// producer's `max.in.flight`, 5 by default, fits).
const PIPELINE_DEPTH: usize = 8;

fn api_name(key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("api {key}"))
}

/// Bytes added to a frame's buffer per read at first; the step doubles with the bytes
/// received, so a buffer is never much larger than what the client actually sent.
const FIRST_READ: usize = 64 << 10;
/// Capacity a connection keeps between requests (reused for the next frame).
const RETAINED_BUFFER: usize = 1 << 20;
/// Capacity all connections of a shard keep between requests, together.
const RETAINED_PER_SHARD: usize = 64 << 20;

/// Longest a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, listener: Arc<Listener>) {
    let mut rbuf = BytesMut::new();
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.set_read_timeout(Some(shard.cfg.connections_max_idle)) {
        warn!(%peer, "cannot set the idle timeout: {e}; closing connection");
        return;
    }
    // Non-blocking, so a splice to a full socket returns instead of stalling the shard (the
    // runtime's own reads and writes never block either way).
    let sock = stream.as_raw_fd();
    if let Err(e) = set_nonblocking(sock) {
        warn!(%peer, "cannot make the socket non-blocking: {e}; closing connection");
        return;
    }
    match (listener.protocol.tls(), shard.security.tls.as_ref()) {
        (true, Some(tls)) => {
            let acceptor = futures_rustls::TlsAcceptor::from(tls.config());
            let accepted =
                crate::runtime::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            let stream = match accepted {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    let m = &shard.metrics.tls_failures;
                    m.set(m.get() + 1);
                    warn!(%peer, listener = %listener.name, "TLS handshake failed: {e}; closing connection");
                    return;
                }
                None => {
                    let m = &shard.metrics.tls_failures;
                    m.set(m.get() + 1);
                    warn!(%peer, listener = %listener.name, "TLS handshake took longer than {TLS_HANDSHAKE_TIMEOUT:?}; closing connection");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::security::tls::principal_of);
            let session = Session::new(listener, peer, cert);
            // Record bytes are encrypted in user space: no splice from the log's files.
            serve_with(&shard, stream, None, session, &mut rbuf).await;
        }
        (true, None) => {
            warn!(%peer, "TLS listener without a TLS configuration; closing connection")
        }
        (false, _) => {
            let session = Session::new(listener, peer, None);
            serve_with(&shard, stream, Some(sock), session, &mut rbuf).await;
        }
    }
    let held = shard.read_buffer_bytes.get();
    shard
        .read_buffer_bytes
        .set(held.saturating_sub(rbuf.capacity()));
}

/// Why reading a frame stopped.
enum ReadEnd {
    Closed(std::io::Error),
    Idle,
}

fn read_failed(e: std::io::Error) -> ReadEnd {
    if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
        ReadEnd::Idle
    } else {
        ReadEnd::Closed(e)
    }
}

/// Reads `size` bytes into `rbuf` (empty), growing it with the bytes that arrive, never
/// to more than twice what was received (and at least [`FIRST_READ`]).
async fn read_frame<R: futures::AsyncRead + Unpin>(
    shard: &Shard,
    stream: &mut R,
    rbuf: &mut BytesMut,
    size: usize,
) -> Result<(), ReadEnd> {
    let before = rbuf.capacity();
    // Bounded: each iteration reads at least one byte or returns.
    while rbuf.len() < size {
        let have = rbuf.len();
        let step = have.max(FIRST_READ).min(size - have);
        rbuf.resize(have + step, 0);
        let n = match stream.read(&mut rbuf[have..]).await {
            Ok(0) => {
                let e = std::io::Error::new(ErrorKind::UnexpectedEof, "end of stream");
                return Err(ReadEnd::Closed(e));
            }
            Ok(n) => n,
            Err(e) => return Err(read_failed(e)),
        };
        rbuf.truncate(have + n);
    }
    let held = shard.read_buffer_bytes.get() + rbuf.capacity();
    shard.read_buffer_bytes.set(held.saturating_sub(before));
    Ok(())
}

/// A frame read whole, with its share of the request budget.
type Frame<'a> = (Bytes, Reservation<'a>);

/// Reads the next request frame: size prefix (checked), the budget reservation, the bytes.
/// `None` once the connection is done (each reason logged).
async fn read_request<'a, R: futures::AsyncRead + Unpin>(
    shard: &'a Shard,
    rd: &mut R,
    rbuf: &mut BytesMut,
    peer: SocketAddr,
    (min, max): (usize, usize),
) -> Option<Frame<'a>> {
    let mut len = [0u8; 4];
    if let Err(e) = rd.read_exact(&mut len).await {
        match read_failed(e) {
            ReadEnd::Idle => {
                let m = &shard.metrics.idle_closed;
                m.set(m.get() + 1);
                debug!(%peer, "idle connection closed (connections.max.idle.ms)");
            }
            ReadEnd::Closed(e) => debug!(%peer, "connection closed: {e}"),
        }
        return None;
    }
    let size = i32::from_be_bytes(len);
    if size < min as i32 || size as usize > max {
        warn!(
            %peer, size, max,
            "request frame size out of bounds; closing connection"
        );
        return None;
    }
    let size = size as usize;
    // The whole frame's bytes are reserved before any is read: back-pressure on this
    // socket while the shard holds `queued.max.request.bytes` of requests.
    let (reserved, waited) = shard.request_budget.reserve(size).await;
    if waited {
        let m = &shard.metrics.request_budget_waits;
        m.set(m.get() + 1);
    }
    // Reuses the connection's buffer once the previous request's bytes are released.
    if rbuf.capacity() > RETAINED_BUFFER || shard.read_buffer_bytes.get() > RETAINED_PER_SHARD {
        let held = shard.read_buffer_bytes.get();
        shard
            .read_buffer_bytes
            .set(held.saturating_sub(rbuf.capacity()));
        *rbuf = BytesMut::new();
    }
    rbuf.clear();
    match read_frame(shard, rd, rbuf, size).await {
        Ok(()) => Some((rbuf.split().freeze(), reserved)),
        Err(ReadEnd::Idle) => {
            warn!(%peer, size, got = rbuf.len(), "no bytes of a request frame for connections.max.idle.ms; closing connection");
            None
        }
        Err(ReadEnd::Closed(e)) => {
            warn!(%peer, size, got = rbuf.len(), "connection closed mid-frame: {e}");
            None
        }
    }
}

/// A request counted in the shard's `in_flight` (shutdown waits for them) until dropped,
/// whether its response was written or the connection closed first.
struct InFlight<'a>(&'a Shard);

impl<'a> InFlight<'a> {
    fn new(shard: &'a Shard) -> Self {
        shard.in_flight.set(shard.in_flight.get() + 1);
        InFlight(shard)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let n = &self.0.in_flight;
        n.set(n.get().saturating_sub(1));
    }
}

/// A request handled, its response not yet written.
struct Done<'a> {
    key: i16,
    version: i16,
    started: Instant,
    response: Result<Option<Vec<Piece>>, ProtocolError>,
    _reserved: Reservation<'a>,
    _counted: InFlight<'a>,
}

/// Writes a handled request's response (its bytes return to the budget after); false if the
/// connection must close.
async fn write_done<W: futures::AsyncWrite + Unpin>(
    shard: &Shard,
    wr: &mut W,
    sock: Option<RawFd>,
    done: Done<'_>,
    peer: SocketAddr,
) -> bool {
    shard
        .metrics
        .record_request(done.key, done.started.elapsed(), done.response.is_err());
    match done.response {
        Ok(Some(pieces)) => {
            // Large record sets are their own pieces: written from the log's buffers, or
            // spliced from its files.
            if let Err(e) = splice::write_pieces(wr, sock, pieces).await {
                debug!(%peer, "write failed: {e}");
                return false;
            }
            true
        }
        Ok(None) => true,
        Err(e) => {
            warn!(%peer, api = %api_name(done.key), version = done.version, "{e}; closing connection");
            false
        }
    }
}

/// Writes the responses of Produce requests in flight, oldest first, until at most `keep`
/// remain; false if the connection must close.
async fn drain<'a, W: futures::AsyncWrite + Unpin>(
    shard: &Shard,
    wr: &mut W,
    sock: Option<RawFd>,
    inflight: &mut FuturesOrdered<LocalBoxFuture<'a, Done<'a>>>,
    keep: usize,
    peer: SocketAddr,
) -> bool {
    // Each iteration writes one response.
    while inflight.len() > keep {
        let Some(done) = inflight.next().await else {
            break;
        };
        if !write_done(shard, wr, sock, done, peer).await {
            return false;
        }
    }
    true
}

async fn serve_with<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    shard: &Rc<Shard>,
    stream: S,
    sock: Option<RawFd>,
    mut session: Session,
    rbuf: &mut BytesMut,
) {
    let peer = session.peer;
    let (mut rd, mut wr) = stream.split();
    // Produce requests whose appends are queued, oldest first; their responses are written
    // in this order, before any later request's.
    let mut inflight: FuturesOrdered<LocalBoxFuture<'_, Done<'_>>> = FuturesOrdered::new();
    // Bounded by the connection's lifetime; each iteration reads and starts one request.
    loop {
        // Read the next request while finishing the ones in flight.
        let frame = {
            // Before authentication a frame is small (Kafka's `sasl.server.max.receive.size`);
            // a raw SASL token (after a v0 handshake) has no request header.
            let bounds = match (session.principal.is_some(), session.expects_raw_token()) {
                (true, _) => (MIN_FRAME, shard.cfg.max_frame_bytes),
                (false, raw) => (if raw { 0 } else { MIN_FRAME }, UNAUTHENTICATED_MAX_FRAME),
            };
            let mut next = std::pin::pin!(read_request(shard, &mut rd, rbuf, peer, bounds));
            // Each iteration writes one finished response or ends with the frame.
            loop {
                if inflight.is_empty() {
                    break next.await;
                }
                match select(next.as_mut(), inflight.next()).await {
                    Either::Left((frame, _)) => break frame,
                    Either::Right((Some(done), _)) => {
                        if !write_done(shard, &mut wr, sock, done, peer).await {
                            return;
                        }
                    }
                    Either::Right((None, _)) => {}
                }
            }
        };
        let Some((frame, reserved)) = frame else {
            // Answer what was already read and started, then close.
            drain(shard, &mut wr, sock, &mut inflight, 0, peer).await;
            return;
        };
        if session.expects_raw_token() {
            // After a v0 SaslHandshake: a bare SASL token, answered bare.
            let reply = match session.authenticate(shard, &frame) {
                Ok(r) => r.auth_bytes,
                Err(_) => {
                    failed_authentication(shard).await;
                    return;
                }
            };
            drop(reserved);
            if wr.write_all(&authn::raw_token(&reply)).await.is_err() {
                return;
            }
            continue;
        }
        let Some((key, version, correlation_id)) = protocol::peek_header(&frame) else {
            warn!(%peer, "request too short for a header; closing connection");
            drain(shard, &mut wr, sock, &mut inflight, 0, peer).await;
            return;
        };
        if let Gate::Close(why) = session.gate(key) {
            warn!(%peer, api = %api_name(key), listener = %session.listener.name, "{why}; closing connection");
            drain(shard, &mut wr, sock, &mut inflight, 0, peer).await;
            return;
        }
        let started = Instant::now();
        let counted = InFlight::new(shard);
        let decoded = protocol::decode_request(frame);
        if let Ok((h, Request::Produce(req))) = decoded {
            // Pipelined: queue this request's appends now (after every earlier one's), let
            // it finish while the next request is read.
            if !drain(
                shard,
                &mut wr,
                sock,
                &mut inflight,
                PIPELINE_DEPTH - 1,
                peer,
            )
            .await
            {
                return;
            }
            let (req, denied) = dispatch::authorize_produce(shard, &session, req);
            let queued = produce::start(shard, req).await;
            let listener = session.listener.clone();
            let (v, c) = (h.api_version, h.correlation_id);
            inflight.push_back(Box::pin(async move {
                let response = match produce::finish(shard, queued, &listener.name).await {
                    Some(mut resp) => {
                        dispatch::deny_produce(&mut resp, denied);
                        encode_response(key, v, c, &resp).map(|b| Some(vec![Piece::Bytes(b)]))
                    }
                    None => Ok(None),
                };
                Done {
                    key,
                    version,
                    started,
                    response,
                    _reserved: reserved,
                    _counted: counted,
                }
            }));
            continue;
        }
        // Any other request waits for the Produce requests before it, and runs alone.
        if !drain(shard, &mut wr, sock, &mut inflight, 0, peer).await {
            return;
        }
        let mut close_after = false;
        let response = match decoded {
            Ok((h, Request::SaslHandshake(r))) => {
                let (resp, open) = session.handshake(&shard.security, r, h.api_version);
                close_after = !open;
                encode_response(key, h.api_version, h.correlation_id, &resp)
                    .map(|b| Some(vec![Piece::Bytes(b)]))
            }
            Ok((h, Request::SaslAuthenticate(r))) => {
                let resp = match session.authenticate(shard, &r.auth_bytes) {
                    Ok(resp) => resp,
                    Err(f) => {
                        close_after = true;
                        f.response
                    }
                };
                encode_response(key, h.api_version, h.correlation_id, &resp)
                    .map(|b| Some(vec![Piece::Bytes(b)]))
            }
            Ok((header, req)) => dispatch::dispatch(shard, header, req, &session).await,
            Err(ProtocolError::Unsupported { .. }) if key == protocol::API_VERSIONS => {
                protocol::api_versions_response(version, correlation_id)
                    .map(|b| Some(vec![Piece::Bytes(b)]))
            }
            Err(e) => Err(e),
        };
        let done = Done {
            key,
            version,
            started,
            response,
            _reserved: reserved,
            _counted: counted,
        };
        if !write_done(shard, &mut wr, sock, done, peer).await {
            return;
        }
        if close_after {
            failed_authentication(shard).await;
            return;
        }
    }
}

/// Waits `connection.failed.authentication.delay.ms` before a failed connection closes.
async fn failed_authentication(shard: &Shard) {
    let delay = std::time::Duration::from_millis(shard.security.failed_auth_delay_ms);
    crate::runtime::sleep(delay).await;
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on the connection's own open descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
