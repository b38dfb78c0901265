//! shardlog: a Kafka-wire-compatible streaming log broker, thread-per-core on io_uring.
//!
//! Module map (each module's doc states its invariant):
//! - [`log`]: the storage engine (segments, indexes, recovery); knows nothing of Kafka requests.
//! - [`protocol`]: Kafka wire decoding and encoding; knows nothing of shards or files.
//! - [`broker`]: shards, connections, the cross-core router and the topic catalog.
//! - [`group`]: consumer-group coordinator and committed offsets.
//! - [`metrics`]: per-shard counters and their Prometheus rendering.
//! - [`settings`]: layered configuration (defaults, TOML, environment, flags).
//! - [`security`]: listeners, TLS, SASL and the stored credentials; knows nothing of logs.
//! - [`cluster`]: the metadata quorum (control plane); [`replication`]: copies of partitions.
//! - [`admin`]: a small blocking Kafka client used by the CLI's client commands.
//! - [`ui`]: the web console (a page and a JSON API over the same client).

pub mod admin;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod durable;
pub mod group;
pub mod hash;
pub mod internal_log;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod replication;
pub mod runtime;
pub mod schema;
pub mod security;
pub mod settings;
pub mod txn;
pub mod ui;
