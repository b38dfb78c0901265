//! Responses at request versions older than the `kafka-protocol` crate encodes (it starts
//! at Kafka 4.0's baselines), for clients still in use that send them (Debian's sarama
//! 1.22): OffsetCommit v0–1, CreateTopics v0–1, DescribeConfigs v0. Each is built from the
//! same response message the newer versions use, so the handlers stay version-blind.

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::{
    CreateTopicsResponse, DescribeConfigsResponse, OffsetCommitResponse,
};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use super::{encode_response, ProtocolError};

/// OffsetCommit v0 and v1 answer exactly what v2 does (no throttle time before v3).
struct OffsetCommitOld<'a>(&'a OffsetCommitResponse);

impl Encodable for OffsetCommitOld<'_> {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, _version: i16) -> anyhow::Result<()> {
        self.0.encode(buf, 2)
    }
    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        self.0.compute_size(2)
    }
}

/// Bytes already laid out for one response body.
struct Raw(Vec<u8>);

impl Encodable for Raw {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, _version: i16) -> anyhow::Result<()> {
        buf.put_slice(&self.0);
        Ok(())
    }
    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        Ok(self.0.len())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.put_i16(b.len() as i16);
    out.put_slice(b);
}

fn put_nullable(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

pub fn offset_commit(
    key: i16,
    version: i16,
    correlation: i32,
    resp: &OffsetCommitResponse,
) -> Result<Bytes, ProtocolError> {
    if version >= 2 {
        return encode_response(key, version, correlation, resp);
    }
    encode_response(key, version, correlation, &OffsetCommitOld(resp))
}

pub fn create_topics(
    key: i16,
    version: i16,
    correlation: i32,
    resp: &CreateTopicsResponse,
) -> Result<Bytes, ProtocolError> {
    if version >= 2 {
        return encode_response(key, version, correlation, resp);
    }
    // v0: [name, error code]; v1 adds each topic's error message.
    let mut out = Vec::new();
    out.put_i32(resp.topics.len() as i32);
    for t in &resp.topics {
        put_str(&mut out, t.name.0.as_str());
        out.put_i16(t.error_code);
        if version == 1 {
            put_nullable(&mut out, t.error_message.as_deref());
        }
    }
    encode_response(key, version, correlation, &Raw(out))
}

pub fn describe_configs(
    key: i16,
    version: i16,
    correlation: i32,
    resp: &DescribeConfigsResponse,
) -> Result<Bytes, ProtocolError> {
    if version >= 1 {
        return encode_response(key, version, correlation, resp);
    }
    // v0: no config source or synonyms; `is_default` instead (source 5: the default).
    let mut out = Vec::new();
    out.put_i32(resp.throttle_time_ms);
    out.put_i32(resp.results.len() as i32);
    for r in &resp.results {
        out.put_i16(r.error_code);
        // Success carries no message (null), as Kafka answers.
        let message = r.error_message.as_deref().filter(|_| r.error_code != 0);
        put_nullable(&mut out, message);
        out.put_i8(r.resource_type);
        put_str(&mut out, r.resource_name.as_str());
        out.put_i32(r.configs.len() as i32);
        for c in &r.configs {
            put_str(&mut out, c.name.as_str());
            put_nullable(&mut out, c.value.as_deref());
            out.put_u8(u8::from(c.read_only));
            out.put_u8(u8::from(c.config_source == 5));
            out.put_u8(u8::from(c.is_sensitive));
        }
    }
    encode_response(key, version, correlation, &Raw(out))
}
