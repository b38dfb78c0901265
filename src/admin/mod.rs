//! Admin commands (`shardlog topic ...`): a small blocking Kafka client that talks to a
//! running broker over the wire, like any other client.

pub mod client;
pub mod group;
pub mod topic;
