//! The HTTP endpoint on shard 0: `GET /metrics` (Prometheus text, every shard's snapshot
//! merged), `GET /health`, `GET /v1/cluster` (this node's view of the cluster), the
//! node membership operations of [`super::node_admin`], and the applications of
//! [`super::http_apps`]: the web console (`/ui`, `/api/`) and the schema registry
//! (`/subjects`, `/schemas`, `/config`, ...); over TLS with `http.ssl.enabled`.
//!
//! Invariant: one request per connection, read up to a bounded size; a scrape costs one
//! message to each other shard, never a lock.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::limits::AcceptBackoff;
use super::router::{Call, Reply};
use super::shard::Shard;

/// Largest request head read.
const MAX_REQUEST: usize = 8192;

/// Time a client has to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `stop` is set; each connection on its own task, within the HTTP port's
/// connection limits.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener, stop: Arc<AtomicBool>) {
    let backoff = AcceptBackoff::default();
    // One accept stays in flight across the checks of the stop flag (see broker::shard_main).
    let mut accepting = None;
    while !stop.load(Ordering::Relaxed) {
        let accept = accepting.get_or_insert_with(|| Box::pin(listener.accept()));
        let done = crate::runtime::timeout(Duration::from_millis(100), accept.as_mut()).await;
        if done.is_some() {
            accepting = None;
        }
        match done {
            None => {}
            Some(Ok(stream)) => {
                backoff.succeeded();
                let Some(slot) = stream
                    .peer_addr()
                    .ok()
                    .and_then(|p| shard.http_conns.admit(p.ip()))
                else {
                    continue;
                };
                let shard = shard.clone();
                crate::runtime::spawn_local(async move {
                    serve_one(shard, stream).await;
                    drop(slot);
                });
            }
            Some(Err(e)) => crate::runtime::sleep(backoff.failed("http", &e)).await,
        }
    }
}

async fn gather(shard: &Rc<Shard>) -> String {
    let mut snaps = vec![shard.snapshot()];
    for j in 0..shard.nshards {
        if j != shard.id {
            if let Some(Reply::Metrics(s)) = shard.call(j, Call::Metrics).await {
                snaps.push(*s);
            }
        }
    }
    let mut out = crate::metrics::render(&snaps);
    out.push_str(&crate::cluster::metrics::render(&shard.cluster.get()));
    out
}

/// One connection: over TLS when `http.ssl.enabled` (the Kafka listeners' certificate).
async fn serve_one(shard: Rc<Shard>, stream: TcpStream) {
    let timeout = REQUEST_TIMEOUT.min(shard.cfg.connections_max_idle);
    if stream.set_read_timeout(Some(timeout)).is_err() {
        return;
    }
    match shard.security.http_tls.clone() {
        None => handle(shard, stream).await,
        Some(tls) => {
            let acceptor = futures_rustls::TlsAcceptor::from(tls.config());
            match crate::runtime::timeout(timeout, acceptor.accept(stream)).await {
                Some(Ok(s)) => handle(shard, s).await,
                Some(Err(e)) => debug!("HTTP TLS handshake failed: {e}"),
                None => debug!("HTTP TLS handshake timed out"),
            }
        }
    }
}

async fn handle<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    mut stream: S,
) {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    // Bounded: each read adds at least one byte, up to MAX_REQUEST.
    while len < MAX_REQUEST {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head_end = buf[..len]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(len, |at| at + 4);
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let read = &buf[head_end..len];
    let answered = if crate::schema::rest::owns(path.split('?').next().unwrap_or("")) {
        Some(super::http_apps::registry(&shard, &mut stream, method, path, &head, read).await)
    } else if path == "/ui" || path.starts_with("/ui/") || path.starts_with("/api/") {
        Some(super::http_apps::console(&shard, &mut stream, method, path, &head, read).await)
    } else {
        None
    };
    if let Some((status, ctype, body)) = answered {
        respond(&mut stream, status, ctype, &body).await;
        return;
    }
    let (status, ctype, body) = match (method, path) {
        (_, p) if p.starts_with("/v1/cluster/nodes/") => {
            match super::node_admin::handle(&shard, method, path).await {
                Some((status, body)) => (status, "application/json", body),
                None => ("404 Not Found", "text/plain", "not found\n".to_string()),
            }
        }
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            gather(&shard).await,
        ),
        ("GET", "/v1/cluster") => match serde_json::to_string_pretty(&*shard.cluster.get()) {
            Ok(json) => ("200 OK", "application/json", json + "\n"),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        },
        ("GET", "/health") => {
            if shard.stopping.get() {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    "stopping\n".to_string(),
                )
            } else {
                ("200 OK", "text/plain", "ok\n".to_string())
            }
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    respond(&mut stream, status, ctype, &body).await;
}

async fn respond<S: futures::AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    ctype: &str,
    body: &str,
) {
    // The console asks for a login on 401 (HTTP Basic, checked as SASL by the broker).
    let challenge = if status.starts_with("401") {
        "WWW-Authenticate: Basic realm=\"shardlog\", charset=\"UTF-8\"\r\n"
    } else {
        ""
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{challenge}Connection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(resp.as_bytes()).await {
        debug!("HTTP response not sent: {e}");
    }
    let _ = stream.flush().await;
    let _ = stream.close().await;
}
