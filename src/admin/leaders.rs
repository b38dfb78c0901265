//! A topic's partitions and a connection to each partition's leader, as `produce` and
//! `consume` use them: from Metadata, refreshed when a leader moves.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

use super::client::Client;
use super::topic::metadata;

/// Metadata refreshes one command may make before it gives up (a leader that keeps moving).
pub const MAX_REFRESHES: u32 = 20;

pub struct Leaders {
    bootstrap: String,
    pub topic: String,
    /// (partition, leader broker id), by partition.
    pub partitions: Vec<(i32, i32)>,
    addrs: HashMap<i32, String>,
    conns: HashMap<i32, Client>,
    refreshes: u32,
}

impl Leaders {
    pub fn new(bootstrap: &str, topic: &str) -> Result<Leaders> {
        let mut l = Leaders {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            partitions: Vec::new(),
            addrs: HashMap::new(),
            conns: HashMap::new(),
            refreshes: 0,
        };
        l.load()?;
        Ok(l)
    }

    fn load(&mut self) -> Result<()> {
        let mut c = Client::connect(&self.bootstrap)?;
        let md = metadata(&mut c, Some(vec![self.topic.clone()]))?;
        let t = md
            .topics
            .first()
            .with_context(|| format!("no metadata for {}", self.topic))?;
        match t.error_code {
            0 => {}
            3 => bail!("topic {} does not exist", self.topic),
            29 => bail!("not authorized to access topic {}", self.topic),
            code => bail!("topic {}: error {code}", self.topic),
        }
        let mut parts: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        parts.sort();
        self.partitions = parts;
        self.addrs = md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        self.conns.clear();
        Ok(())
    }

    /// Reads Metadata again (a leader moved); an error after [`MAX_REFRESHES`].
    pub fn refresh(&mut self) -> Result<()> {
        self.refreshes += 1;
        if self.refreshes > MAX_REFRESHES {
            bail!("the leaders of {} keep moving; giving up", self.topic);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.load()
    }

    pub fn count(&self) -> i32 {
        self.partitions.len() as i32
    }

    /// The leader of `partition`, if it has one.
    pub fn leader(&self, partition: i32) -> Option<i32> {
        self.partitions
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, l)| *l)
            .filter(|l| *l >= 0)
    }

    /// A connection to broker `id`, opened on first use.
    pub fn client(&mut self, id: i32) -> Result<&mut Client> {
        if !self.conns.contains_key(&id) {
            let addr = self
                .addrs
                .get(&id)
                .with_context(|| format!("broker {id} is not in Metadata"))?;
            let c = Client::connect(addr)?;
            self.conns.insert(id, c);
        }
        self.conns.get_mut(&id).context("connection")
    }

    /// Drops the connection to broker `id` (after an I/O error).
    pub fn forget(&mut self, id: i32) {
        self.conns.remove(&id);
    }
}
