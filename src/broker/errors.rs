//! Kafka error codes shardlog returns, and the mapping from storage errors.

use crate::log::batch::BatchError;
use crate::log::producer_state::SequenceError;
use crate::log::validate::RecordError;
use crate::log::LogError;

pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const POLICY_VIOLATION: i16 = 44;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
pub const NOT_COORDINATOR: i16 = 16;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const INVALID_RECORD: i16 = 87;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
pub const NOT_CONTROLLER: i16 = 41;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;

/// The Kafka error code for a storage error.
pub fn log_error_code(e: &LogError) -> i16 {
    match e {
        LogError::Corrupt(BatchError::Transactional | BatchError::Control) => INVALID_RECORD,
        LogError::Corrupt(_) => CORRUPT_MESSAGE,
        LogError::MultipleIdempotentBatches => INVALID_RECORD,
        LogError::Records(RecordError::Corrupt(_)) => CORRUPT_MESSAGE,
        LogError::Records(RecordError::Invalid { .. }) => INVALID_RECORD,
        LogError::Sequence(SequenceError::OutOfOrder { .. }) => OUT_OF_ORDER_SEQUENCE_NUMBER,
        LogError::Sequence(SequenceError::Duplicate { .. }) => DUPLICATE_SEQUENCE_NUMBER,
        LogError::Sequence(SequenceError::InvalidEpoch { .. }) => INVALID_PRODUCER_EPOCH,
        LogError::Sequence(SequenceError::InvalidTxnState { .. }) => INVALID_TXN_STATE,
        LogError::TooLarge { .. } => MESSAGE_TOO_LARGE,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        // A follower's fetch that does not continue its log: it fetches again from its end.
        LogError::NotAtEnd { .. } => OFFSET_OUT_OF_RANGE,
        LogError::Io(_) | LogError::Aborted | LogError::Busy => KAFKA_STORAGE_ERROR,
    }
}
