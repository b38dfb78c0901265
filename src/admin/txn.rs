//! `shardlog txn list|describe|producers`: transactions as their coordinators and the
//! partitions see them, like Kafka's `kafka-transactions.sh` (ListTransactions on every
//! broker, DescribeTransactions on the id's coordinator, DescribeProducers on a partition's
//! leader).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kafka_protocol::messages::describe_producers_request::{
    DescribeProducersRequest, TopicRequest,
};
use kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_transactions_request::ListTransactionsRequest;
use kafka_protocol::messages::{MetadataResponse, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::client::Client;
use super::topic::{metadata, name};

#[derive(Subcommand)]
pub enum TxnCmd {
    /// Every transactional id the brokers coordinate: its coordinator, producer id and
    /// state (optionally only those in the given states).
    List {
        /// Only ids in this state (Empty, Ongoing, PrepareCommit, PrepareAbort,
        /// CompleteCommit, CompleteAbort, PrepareEpochFence, Dead); repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// One transactional id as its coordinator sees it: producer id and epoch, state,
    /// timeout, when the open transaction started and the partitions it wrote to.
    Describe {
        /// The transactional id.
        id: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// The producers a partition's leader knows: last sequence and timestamp, and where the
    /// transaction each has open started (what holds read_committed readers back).
    Producers {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 0)]
        partition: i32,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

pub fn run(cmd: TxnCmd) -> Result<()> {
    match cmd {
        TxnCmd::List { states, bootstrap } => list(&bootstrap, &states),
        TxnCmd::Describe { id, bootstrap } => describe(&bootstrap, &id),
        TxnCmd::Producers {
            topic,
            partition,
            bootstrap,
        } => producers(&bootstrap, &topic, partition),
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The address of broker `id` in a Metadata answer.
fn broker_addr(md: &MetadataResponse, id: i32) -> Option<String> {
    md.brokers
        .iter()
        .find(|b| b.node_id.0 == id)
        .map(|b| format!("{}:{}", b.host, b.port))
}

pub fn list(bootstrap: &str, states: &[String]) -> Result<()> {
    let mut rows: BTreeMap<String, (i32, i64, String)> = BTreeMap::new();
    for (id, mut bc) in super::topic::every_broker(bootstrap)? {
        let mut req = ListTransactionsRequest::default();
        req.state_filters = states.iter().map(|x| s(x)).collect();
        let resp = bc.call(&req, 0)?;
        if resp.error_code != 0 {
            bail!(
                "ListTransactions on broker {}: error {}",
                id,
                resp.error_code
            );
        }
        if !resp.unknown_state_filters.is_empty() {
            bail!(
                "unknown state(s): {}",
                resp.unknown_state_filters
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for t in resp.transaction_states {
            rows.insert(
                t.transactional_id.0.to_string(),
                (id, t.producer_id.0, t.transaction_state.to_string()),
            );
        }
    }
    println!("TRANSACTIONAL-ID\tCOORDINATOR\tPRODUCER-ID\tSTATE");
    for (id, (coordinator, pid, state)) in rows {
        println!("{id}\t{coordinator}\t{pid}\t{state}");
    }
    Ok(())
}

pub fn describe(bootstrap: &str, id: &str) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let mut req = FindCoordinatorRequest::default();
    req.key = s(id);
    req.key_type = 1;
    let found = c.call(&req, 2)?;
    if found.error_code != 0 {
        bail!(
            "no coordinator for transactional id {id}: error {} {}",
            found.error_code,
            found.error_message.as_deref().unwrap_or("")
        );
    }
    let mut coordinator = Client::connect(&format!("{}:{}", found.host, found.port))?;
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = vec![TransactionalId(s(id))];
    let resp = coordinator.call(&req, 0)?;
    let t = resp
        .transaction_states
        .into_iter()
        .next()
        .context("empty DescribeTransactions answer")?;
    match t.error_code {
        0 => {}
        105 => bail!("transactional id {id} is not known to its coordinator"),
        code => bail!("describe {id}: error {code}"),
    }
    let started = if t.transaction_start_time_ms < 0 {
        "-".to_string()
    } else {
        let ago = crate::log::now_ms() - t.transaction_start_time_ms;
        format!("{} ({} ms ago)", t.transaction_start_time_ms, ago.max(0))
    };
    let mut parts: Vec<String> = t
        .topics
        .iter()
        .flat_map(|x| {
            x.partitions
                .iter()
                .map(move |p| format!("{}-{p}", x.topic.0))
        })
        .collect();
    parts.sort();
    println!("transactional id:  {id}");
    println!("coordinator:       {}", found.node_id.0);
    println!(
        "producer id/epoch: {}/{}",
        t.producer_id.0, t.producer_epoch
    );
    println!("state:             {}", t.transaction_state);
    println!("timeout:           {} ms", t.transaction_timeout_ms);
    println!("started:           {started}");
    println!(
        "partitions:        {}",
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(", ")
        }
    );
    Ok(())
}

pub fn producers(bootstrap: &str, topic: &str, partition: i32) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let md = metadata(&mut c, Some(vec![topic.to_string()]))?;
    let leader = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
        .map(|p| p.leader_id.0)
        .filter(|l| *l >= 0)
        .with_context(|| format!("no leader for {topic}-{partition}"))?;
    let addr = broker_addr(&md, leader).context("the leader is not in Metadata")?;
    let mut lc = Client::connect(&addr)?;
    let mut t = TopicRequest::default();
    t.name = name(topic);
    t.partition_indexes = vec![partition];
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t];
    let resp = lc.call(&req, 0)?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("empty DescribeProducers answer")?;
    if p.error_code != 0 {
        bail!(
            "describe producers of {topic}-{partition}: error {} {}",
            p.error_code,
            p.error_message.as_deref().unwrap_or("")
        );
    }
    println!("PRODUCER-ID\tEPOCH\tLAST-SEQUENCE\tLAST-TIMESTAMP\tCURRENT-TXN-START-OFFSET");
    for a in &p.active_producers {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            a.producer_id.0,
            a.producer_epoch,
            a.last_sequence,
            a.last_timestamp,
            a.current_txn_start_offset
        );
    }
    Ok(())
}
