//! A pipelined Kafka connection on the worker's io_uring executor: requests are encoded with
//! the kafka-protocol crate and written by one task; responses are read, in order, by
//! another.
//!
//! Invariant: Kafka answers a connection's requests in order, so a FIFO of what is in flight
//! matches every response to its request; a response frame larger than
//! [`MAX_RESPONSE`] or with a wrong correlation id ends the connection.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// Largest response frame accepted.
pub const MAX_RESPONSE: usize = 256 << 20;

pub struct Writer {
    half: WriteHalf<Conn>,
    correlation_id: i32,
    buf: BytesMut,
}

pub struct Reader {
    half: ReadHalf<Conn>,
}

/// A plain or TLS stream (`--command-config` with SSL or SASL_SSL).
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl futures::AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl futures::AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_close(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Connects to `addr` as `--command-config` says (TLS, then SASL), or in plain text.
pub async fn connect(addr: &str) -> Result<(Writer, Reader)> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| anyhow!("cannot connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| anyhow!("nodelay: {e}"))?;
    let security = shardlog::admin::client::security();
    let conn = match security.and_then(|s| s.tls.clone()) {
        None => Conn::Plain(stream),
        Some(tls) => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .with_context(|| format!("{host:?} is not a host name or address"))?;
            let s = futures_rustls::TlsConnector::from(tls)
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS with {addr}"))?;
            Conn::Tls(Box::new(s))
        }
    };
    let (r, w) = conn.split();
    let (mut w, mut r) = (
        Writer {
            half: w,
            correlation_id: 0,
            buf: BytesMut::new(),
        },
        Reader { half: r },
    );
    if let Some(login) = security.and_then(|s| s.sasl.as_ref()) {
        authenticate(&mut w, &mut r, login)
            .await
            .with_context(|| format!("SASL authentication with {addr}"))?;
    }
    Ok((w, r))
}

/// SaslHandshake v1, then SaslAuthenticate v2 tokens until the mechanism is done.
async fn authenticate(
    w: &mut Writer,
    r: &mut Reader,
    login: &shardlog::admin::client_config::Login,
) -> Result<()> {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    use shardlog::security::scram::{Mechanism, ScramClient};
    let req = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_string(login.mechanism.clone()));
    let c = w.send(&req, 1).await?;
    let resp = r.recv::<SaslHandshakeRequest>(c, 1).await?;
    if resp.error_code != 0 {
        bail!(
            "the broker does not take {} (error {})",
            login.mechanism,
            resp.error_code
        );
    }
    async fn step(w: &mut Writer, r: &mut Reader, token: Vec<u8>) -> Result<Bytes> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let c = w.send(&req, 2).await?;
        let resp = r.recv::<SaslAuthenticateRequest>(c, 2).await?;
        if resp.error_code != 0 {
            bail!(
                "{} (error {})",
                resp.error_message.as_deref().unwrap_or("refused"),
                resp.error_code
            );
        }
        Ok(resp.auth_bytes)
    }
    match Mechanism::from_name(&login.mechanism) {
        None => {
            step(
                w,
                r,
                format!("\0{}\0{}", login.user, login.password).into_bytes(),
            )
            .await?;
        }
        Some(m) => {
            let (mut client, first) = ScramClient::start(m, &login.user);
            let server_first = step(w, r, first).await?;
            let last = client.finish(&server_first, &login.password)?;
            let server_final = step(w, r, last).await?;
            client.verify(&server_final)?;
        }
    }
    Ok(())
}

impl Writer {
    /// The correlation id the next request will carry.
    pub fn next_correlation_id(&self) -> i32 {
        self.correlation_id.wrapping_add(1)
    }

    /// Encodes and sends `req` at `version`; returns its correlation id.
    pub async fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key"))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("shardlog-loadgen"));
        self.buf.clear();
        self.buf.put_i32(0);
        header
            .encode(&mut self.buf, key.request_header_version(version))
            .map_err(|e| anyhow!("encode header: {e}"))?;
        req.encode(&mut self.buf, version)
            .map_err(|e| anyhow!("encode request: {e}"))?;
        let len = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.half.write_all(&self.buf).await.context("send")?;
        self.half.flush().await.context("send")?;
        Ok(self.correlation_id)
    }
}

impl Reader {
    /// Reads the next response frame and decodes it as `R`'s response at `version`,
    /// checking that it answers `correlation_id`.
    pub async fn recv<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key"))?;
        let mut len = [0u8; 4];
        self.half.read_exact(&mut len).await.context("read")?;
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > MAX_RESPONSE {
            bail!("invalid response length {len}");
        }
        let mut buf = vec![0u8; len as usize];
        self.half.read_exact(&mut buf).await.context("read")?;
        let mut buf = Bytes::from(buf);
        let corr = buf.get_i32();
        if corr != correlation_id {
            bail!("response correlation id {corr}, expected {correlation_id}");
        }
        if key.response_header_version(version) >= 1 {
            // Skip the header's tagged fields (count, then tag/size/data each).
            let n = read_uvarint(&mut buf)?;
            for _ in 0..n.min(64) {
                let _tag = read_uvarint(&mut buf)?;
                let size = read_uvarint(&mut buf)? as usize;
                if size > buf.remaining() {
                    bail!("truncated tagged field");
                }
                buf.advance(size);
            }
        }
        R::Response::decode(&mut buf, version).map_err(|e| anyhow!("decode response: {e}"))
    }
}

fn read_uvarint(b: &mut Bytes) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        if !b.has_remaining() {
            bail!("truncated varint");
        }
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}
