//! `shardlog records delete`: DeleteRecords, moving a partition's log start offset forward
//! (Kafka's `kafka-delete-records.sh`, rpk's `topic trim-prefix`). Also the operator's way
//! past an unreadable range of a damaged log (docs/durability.md).

use anyhow::{bail, Result};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};

use super::client::Client;
use super::topic::name;

/// Deletes the records of `topic`/`partition` below `before` (-1: all up to the high
/// watermark); prints and returns the new log start offset.
pub fn delete(bootstrap: &str, topic: &str, partition: i32, before: i64) -> Result<i64> {
    let mut c = Client::connect(bootstrap)?;
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = partition;
    p.offset = before;
    let mut t = DeleteRecordsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let resp = c.call(&req, 1)?;
    let Some(r) = resp.topics.first().and_then(|t| t.partitions.first()) else {
        bail!("empty DeleteRecords response");
    };
    match r.error_code {
        0 => {
            println!(
                "{topic}/{partition}: log start offset now {}",
                r.low_watermark
            );
            Ok(r.low_watermark)
        }
        1 => bail!("{topic}/{partition}: offset {before} is beyond the end of the log"),
        3 => bail!("{topic}/{partition}: no such topic or partition"),
        e => bail!("{topic}/{partition}: DeleteRecords failed with error {e}"),
    }
}
