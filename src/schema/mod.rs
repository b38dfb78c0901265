//! The schema registry: Confluent's REST API on the HTTP port, schemas kept in the
//! compacted `_schemas` topic, compatibility checked between versions.
//!
//! Control plane. The registry reads and writes `_schemas` as a Kafka client of the
//! broker's own listener (as the console does, so a logged-in user's ACLs apply), on
//! threads of its own; its state is a function of that log ([`state`]). It must not know
//! shards, logs or glommio.
//!
//! Invariants: a schema id, once answered, names the same schema for good; a registration
//! is answered only after its record is in `_schemas` (acks=all) and read back.

pub mod avro_check;
pub mod compat;
pub mod json_compat;
pub mod parsed;
pub mod rest;
pub mod state;
pub mod store;
pub mod validate;

use thiserror::Error;

use state::Which;

/// An answer of the registry API other than success: the HTTP status, Confluent's error
/// code and a message.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct RegistryError {
    pub http: u16,
    pub code: u32,
    pub message: String,
}

impl RegistryError {
    fn new(http: u16, code: u32, message: impl Into<String>) -> RegistryError {
        RegistryError {
            http,
            code,
            message: message.into(),
        }
    }

    pub fn subject_not_found(subject: &str) -> RegistryError {
        Self::new(404, 40401, format!("Subject '{subject}' not found."))
    }

    pub fn version_not_found(subject: &str, which: Which) -> RegistryError {
        let v = match which {
            Which::Latest => "latest".to_string(),
            Which::Number(n) => n.to_string(),
        };
        Self::new(
            404,
            40402,
            format!("Version {v} not found for subject '{subject}'."),
        )
    }

    pub fn schema_not_found(id: u32) -> RegistryError {
        Self::new(404, 40403, format!("Schema {id} not found"))
    }

    pub fn not_soft_deleted(subject: &str, version: u32) -> RegistryError {
        Self::new(
            404,
            40407,
            format!(
                "Subject '{subject}' Version {version} was not deleted first before being permanently deleted"
            ),
        )
    }

    pub fn no_subject_level(subject: &str) -> RegistryError {
        Self::new(
            404,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    pub fn incompatible(subject: &str, broken: &[String]) -> RegistryError {
        Self::new(
            409,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                broken.join("; ")
            ),
        )
    }

    pub fn invalid_schema(why: impl std::fmt::Display) -> RegistryError {
        Self::new(422, 42201, format!("Invalid schema: {why}"))
    }

    pub fn invalid_version(v: &str) -> RegistryError {
        Self::new(
            422,
            42202,
            format!(
                "The specified version '{}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"",
                v.chars().take(40).collect::<String>()
            ),
        )
    }

    pub fn invalid_level(level: &str) -> RegistryError {
        Self::new(
            422,
            42203,
            format!(
                "Invalid compatibility level {:?}. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE",
                level.chars().take(40).collect::<String>()
            ),
        )
    }

    pub fn bad_request(why: impl Into<String>) -> RegistryError {
        Self::new(400, 400, why)
    }

    pub fn not_found(path: &str) -> RegistryError {
        Self::new(
            404,
            404,
            format!(
                "HTTP 404 Not Found: {}",
                path.chars().take(100).collect::<String>()
            ),
        )
    }

    pub fn store(why: impl std::fmt::Display) -> RegistryError {
        Self::new(
            500,
            50001,
            format!("Error in the backend data store: {why}"),
        )
    }
}
