//! A minimal blocking Kafka client for admin commands: one connection, one request at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// Largest response accepted.
const MAX_RESPONSE: usize = 256 << 20;

pub struct Client {
    stream: Stream,
    correlation_id: i32,
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// How the admin commands connect (`--command-config`): set once, before any connection.
static SECURITY: std::sync::OnceLock<super::client_config::ClientSecurity> =
    std::sync::OnceLock::new();

thread_local! {
    /// Settings for this thread's connections only (the web console's calls, each on a
    /// thread of its own, connect as the user who made them).
    static THREAD_SECURITY: std::cell::RefCell<Option<std::sync::Arc<super::client_config::ClientSecurity>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with every connection it opens on this thread using `sec`.
pub fn with_security<T>(sec: super::client_config::ClientSecurity, f: impl FnOnce() -> T) -> T {
    THREAD_SECURITY.with(|t| *t.borrow_mut() = Some(std::sync::Arc::new(sec)));
    let out = f();
    THREAD_SECURITY.with(|t| *t.borrow_mut() = None);
    out
}

/// The client settings `--command-config` gave, if any.
pub fn security() -> Option<&'static super::client_config::ClientSecurity> {
    SECURITY.get()
}

/// Reads a Kafka client properties file (`--command-config`) for every later connection.
pub fn configure(path: &std::path::Path) -> Result<()> {
    let cfg = super::client_config::ClientSecurity::load(path)?;
    SECURITY
        .set(cfg)
        .map_err(|_| anyhow::anyhow!("client settings given twice"))
}

/// A connection to a node's HTTP port: TLS when `--command-config` sets a TLS protocol (its
/// trust store checks the node's certificate), else plain.
pub fn connect_http(addr: &str) -> Result<impl Read + Write> {
    let tcp = TcpStream::connect(addr)
        .with_context(|| format!("cannot connect to the node's HTTP port {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    match SECURITY.get().and_then(|s| s.tls.clone()) {
        None => Ok(Stream::Plain(tcp)),
        Some(tls) => Ok(Stream::Tls(Box::new(tls_client(tls, addr, tcp)?))),
    }
}

fn tls_client(
    tls: std::sync::Arc<rustls::ClientConfig>,
    addr: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is not a host name or address"))?;
    let conn = rustls::ClientConnection::new(tls, name).context("cannot start TLS")?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

impl Client {
    pub fn connect(addr: &str) -> Result<Client> {
        let tcp = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        tcp.set_nodelay(true)?;
        let local = THREAD_SECURITY.with(|t| t.borrow().clone());
        let sec = match (&local, SECURITY.get()) {
            (Some(l), _) => &**l,
            (None, Some(g)) => g,
            (None, None) => return Ok(Client::from_stream(tcp)),
        };
        let stream = match &sec.tls {
            None => Stream::Plain(tcp),
            Some(tls) => Stream::Tls(Box::new(tls_client(tls.clone(), addr, tcp)?)),
        };
        let mut c = Client {
            stream,
            correlation_id: 0,
        };
        if let Some(login) = &sec.sasl {
            login
                .authenticate(&mut c)
                .with_context(|| format!("SASL authentication with {addr}"))?;
        }
        Ok(c)
    }

    /// A client on a stream the caller connected (and set up as it wants).
    pub fn from_stream(stream: TcpStream) -> Client {
        Client {
            stream: Stream::Plain(stream),
            correlation_id: 0,
        }
    }

    /// Sends `req` at `version` and reads its response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let correlation = self.send(req, version)?;
        self.receive::<R>(version, correlation)
    }

    /// Sends `req` at `version` without waiting for its response (pipelining); returns its
    /// correlation id for [`Client::receive`].
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        self.correlation_id += 1;
        let frame = encode_request(req, version, self.correlation_id, "shardlog-admin")?;
        self.stream.write_all(&frame)?;
        self.stream.flush()?;
        Ok(self.correlation_id)
    }

    /// Reads the next response, which must be the one to request `correlation` of type `R`
    /// sent at `version`.
    pub fn receive<R: Request>(&mut self, version: i16, correlation: i32) -> Result<R::Response> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = response_len(len)?;
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf)?;
        decode_response::<R>(Bytes::from(buf), version, correlation)
    }
}

/// A request frame (length prefix, header, body) for `req` at `version`.
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation: i32,
    client_id: &'static str,
) -> Result<BytesMut> {
    let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown api key"))?;
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str(client_id));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, key.request_header_version(version))
        .map_err(|e| anyhow::anyhow!("encode header: {e}"))?;
    req.encode(&mut body, version)
        .map_err(|e| anyhow::anyhow!("encode request: {e}"))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The length a response frame's 4-byte prefix announces, if acceptable.
pub fn response_len(prefix: [u8; 4]) -> Result<usize> {
    let len = i32::from_be_bytes(prefix);
    if len < 4 || len as usize > MAX_RESPONSE {
        bail!("invalid response length {len}");
    }
    Ok(len as usize)
}

/// Decodes a response frame's body (after the length prefix), which must answer request
/// `correlation` of type `R` sent at `version`.
pub fn decode_response<R: Request>(
    mut buf: Bytes,
    version: i16,
    correlation: i32,
) -> Result<R::Response> {
    let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown api key"))?;
    if buf.len() < 4 {
        bail!("response too short");
    }
    let corr = buf.get_i32();
    if corr != correlation {
        bail!("response correlation id {corr}, expected {correlation}");
    }
    if key.response_header_version(version) >= 1 {
        // Tagged fields of the response header: shardlog sends none.
        if buf.is_empty() || buf.get_u8() != 0 {
            bail!("unexpected tagged fields in response header");
        }
    }
    R::Response::decode(&mut buf, version).map_err(|e| anyhow::anyhow!("decode response: {e}"))
}
