//! AlterPartitionReassignments (45) and ListPartitionReassignments (46), v0 (flexible).

use super::wire::{Reader, Result};

#[derive(Debug, Clone)]
pub struct AlterReassignmentsRequest {
    /// (topic, partition, target replicas as broker ids; `None` cancels)
    pub partitions: Vec<(String, i32, Option<Vec<i32>>)>,
}

impl AlterReassignmentsRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let _timeout_ms = r.i32()?;
        let mut partitions = Vec::new();
        r.array(flex, |r| {
            let name = r.string(flex)?;
            r.array(flex, |r| {
                let p = r.i32()?;
                let replicas = r.nullable_array(flex, |r| r.i32())?;
                r.tagged_fields(flex)?;
                partitions.push((name.clone(), p, replicas));
                Ok(())
            })?;
            r.tagged_fields(flex)
        })?;
        r.tagged_fields(flex)?;
        Ok(AlterReassignmentsRequest { partitions })
    }
}

#[derive(Debug, Clone)]
pub struct ListReassignmentsRequest {
    /// `None`: every partition being reassigned.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

impl ListReassignmentsRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let _timeout_ms = r.i32()?;
        let topics = r.nullable_array(flex, |r| super::topic_partition(r, flex))?;
        r.tagged_fields(flex)?;
        Ok(ListReassignmentsRequest { topics })
    }
}
