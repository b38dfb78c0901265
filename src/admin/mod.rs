//! Client commands (`shardlog produce|consume|topic|group|records|txn ...`): a small blocking Kafka client that
//! talks to a running broker over the wire, like any other client; and `shardlog log check`,
//! which reads a data directory offline.

pub mod acls;
pub mod batch;
pub mod cli;
pub mod client;
pub mod client_config;
pub mod cluster;
pub mod configs;
pub mod consume;
pub mod format;
pub mod group;
pub mod leaders;
pub mod log_check;
pub mod member;
pub mod produce;
pub mod reassign;
pub mod records;
pub mod reset;
pub mod topic;
pub mod txn;
pub mod users;
