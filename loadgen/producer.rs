//! A producer worker: one client with its own connections to every partition leader. It
//! generates messages on its schedule into per-partition batches (sticky partitioner for
//! keyless messages, key hash otherwise), closes a batch when it reaches `batch_bytes` or its
//! first message is `linger` old, and keeps up to `max_in_flight` Produce requests in flight
//! per connection, each with at most one batch per partition.
//!
//! Invariants: memory is bounded — generation stops while `pending_cap` bytes wait to be sent
//! (in open loop the schedule keeps running, so the stall shows in latency); each loop
//! iteration generates at most `MAX_PER_ITERATION` messages, then sends and waits.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use shardlog::notify::Notify;

use crate::conn::{self, Reader, Writer};
use crate::gen::{self, BatchBuilder, KeyGen, Rng};
use crate::schedule::Schedule;
use crate::stats::{self, Stats};
use crate::{Clock, LoadSpec, Worker};

const PRODUCE_VERSION: i16 = 7;
const MAX_PER_ITERATION: usize = 10_000;
/// Open-loop generation stops while this many bytes wait to be sent.
const OPEN_LOOP_PENDING: usize = 64 << 20;
/// How long the end of a run waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(30);

/// A closed batch waiting for its connection.
struct Ready {
    partition: i32,
    bytes: Vec<u8>,
    intended: Vec<u64>,
    value_bytes: u64,
}

/// A Produce request in flight: its correlation id and batches.
struct InFlight {
    correlation_id: i32,
    batches: Vec<Ready>,
}

/// What the writer side and the reader task of one connection share.
#[derive(Default)]
struct Shared {
    in_flight: RefCell<VecDeque<InFlight>>,
    dead: Cell<bool>,
}

struct Conn {
    writer: Writer,
    shared: Rc<Shared>,
    ready: VecDeque<Ready>,
}

/// Messages in `batches`.
fn messages<'a>(batches: impl IntoIterator<Item = &'a Ready>) -> u64 {
    batches.into_iter().map(|b| b.intended.len() as u64).sum()
}

/// Fails every message of `batches` (connection lost or request refused).
fn fail(stats: &RefCell<Stats>, batches: &[Ready]) {
    stats.borrow_mut().failed += messages(batches);
}

impl Shared {
    /// Gives the connection up: marks it dead and fails everything in flight on it.
    fn abandon(&self, stats: &RefCell<Stats>) {
        self.dead.set(true);
        for f in self.in_flight.borrow_mut().drain(..) {
            fail(stats, &f.batches);
        }
    }
}

async fn read_acks(
    mut reader: Reader,
    shared: Rc<Shared>,
    stats: Rc<RefCell<Stats>>,
    wake: Rc<Notify>,
    clock: Clock,
) {
    // Bounded by the connection: ends when it fails or the worker marks it dead.
    while !shared.dead.get() {
        let front = shared.in_flight.borrow().front().map(|f| f.correlation_id);
        let Some(corr) = front else {
            wake.notified().await;
            continue;
        };
        let resp = reader.recv::<ProduceRequest>(corr, PRODUCE_VERSION).await;
        let now = clock.now_us();
        let Some(done) = shared.in_flight.borrow_mut().pop_front() else {
            break;
        };
        match resp {
            Ok(resp) => {
                let errors: Vec<(i32, i16)> = resp
                    .responses
                    .iter()
                    .flat_map(|t| {
                        t.partition_responses
                            .iter()
                            .map(|p| (p.index, p.error_code))
                    })
                    .collect();
                let mut st = stats.borrow_mut();
                for b in &done.batches {
                    let code = errors
                        .iter()
                        .find(|(p, _)| *p == b.partition)
                        .map(|(_, c)| *c)
                        .unwrap_or(-1);
                    if code == 0 {
                        st.acked += b.intended.len() as u64;
                        st.acked_bytes += b.value_bytes;
                        for t in &b.intended {
                            stats::record(&mut st.ack, now.saturating_sub(*t));
                        }
                    } else {
                        st.failed += b.intended.len() as u64;
                        tracing::warn!(partition = b.partition, code, "produce failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!("produce connection failed: {e:#}");
                fail(&stats, &done.batches);
                shared.abandon(&stats);
            }
        }
        wake.notify_all();
    }
}

/// Runs one producer worker until the spec's duration ends (or `worker.stop`), then drains.
pub async fn run(spec: &LoadSpec, worker: &Worker, rate: Option<f64>) -> Result<()> {
    let clock = worker.clock;
    let stats = Rc::new(RefCell::new(Stats::default()));
    let wake = Rc::new(Notify::new());
    let t = &spec.target;
    let nparts = t.leaders.len();
    // Connections: `spec.connections` per distinct leader; partition p uses one of its
    // leader's connections.
    let mut addrs: Vec<&str> = t.leaders.iter().map(String::as_str).collect();
    addrs.sort_unstable();
    addrs.dedup();
    let mut conns = Vec::new();
    for a in &addrs {
        for _ in 0..spec.connections {
            let (writer, reader) = conn::connect(a).await?;
            let shared = Rc::new(Shared::default());
            shardlog::runtime::spawn_local(read_acks(
                reader,
                shared.clone(),
                stats.clone(),
                wake.clone(),
                clock,
            ));
            conns.push(Conn {
                writer,
                shared,
                ready: VecDeque::new(),
            });
        }
    }
    let conn_of: Vec<usize> = t
        .leaders
        .iter()
        .enumerate()
        .map(|(p, a)| {
            let i = addrs.iter().position(|x| x == a).unwrap_or(0);
            i * spec.connections + p % spec.connections
        })
        .collect();
    let topic = TopicName(StrBytes::from_string(t.topic.clone()));

    let mut rng = Rng::new(spec.seed ^ (worker.id as u64 + 1));
    let filler = gen::filler(&mut rng, 64 << 10);
    let keys = KeyGen::new(spec.keys);
    let mut acc: Vec<BatchBuilder> = (0..nparts)
        .map(|_| BatchBuilder::new(spec.batch_bytes + spec.sizes.max() + 64))
        .collect();
    let start = clock.now_us();
    let end = start + spec.duration.as_micros() as u64;
    let mut sched = Schedule::new(rate, start);
    let pending_cap = if sched.is_open_loop() {
        OPEN_LOOP_PENDING
    } else {
        (spec.batch_bytes * (nparts + conns.len() * spec.max_in_flight)).min(OPEN_LOOP_PENDING)
    };
    let mut pending = 0usize;
    let mut sticky = worker.id % nparts.max(1);
    let mut seq = 0u64;
    let mut key_buf = Vec::with_capacity(32);
    let mut last_report = start;
    let linger = spec.linger.as_micros() as u64;

    // Bounded by the run's duration; every iteration ends in a send or a wait.
    loop {
        let now = clock.now_us();
        let generating = now < end && !worker.stopped();
        if generating {
            let mut made = 0;
            while pending < pending_cap && made < MAX_PER_ITERATION {
                let Some(intended) = sched.next_due(now) else {
                    break;
                };
                let key = keys.next(&mut rng).map(|k| {
                    key_buf.clear();
                    // Writing into a Vec cannot fail.
                    let _ = write!(key_buf, "key-{k}");
                    key_buf.as_slice()
                });
                let p = match key {
                    Some(k) => gen::partition_for(k, nparts as i32) as usize,
                    None => sticky,
                };
                let size = spec.sizes.draw(&mut rng);
                acc[p].push(key, size, intended, seq, &filler);
                seq += 1;
                made += 1;
                pending += size;
                {
                    let mut st = stats.borrow_mut();
                    st.sent += 1;
                    st.sent_bytes += size as u64;
                }
                if acc[p].bytes() >= spec.batch_bytes {
                    close(&mut acc[p], p, spec, &mut conns[conn_of[p]].ready)?;
                    if key.is_none() {
                        sticky = (sticky + 1) % nparts;
                    }
                }
            }
        }
        // Linger expired, or the run is over: close open batches.
        for (p, b) in acc.iter_mut().enumerate() {
            let due = b
                .first_intended()
                .is_some_and(|t| !generating || now.saturating_sub(t) >= linger);
            if due {
                close(b, p, spec, &mut conns[conn_of[p]].ready)?;
                if p == sticky && spec.keys == gen::Keys::None {
                    sticky = (sticky + 1) % nparts;
                }
            }
        }
        let mut sent_any = false;
        for c in conns.iter_mut() {
            let sent = send_ready(c, spec, &topic, &stats).await;
            sent_any |= sent > 0;
            pending -= sent.min(pending);
        }
        if sent_any {
            // Readers wait for requests to be in flight.
            wake.notify_all();
        }
        if now.saturating_sub(last_report) >= 1_000_000 {
            last_report = now;
            worker.report(stats.borrow_mut().take());
        }
        let idle = conns
            .iter()
            .all(|c| c.ready.is_empty() && c.shared.in_flight.borrow().is_empty());
        if !generating && idle {
            break;
        }
        if !generating && now > end + DRAIN.as_micros() as u64 {
            for c in &conns {
                stats.borrow_mut().failed += messages(&c.ready);
                c.shared.abandon(&stats);
            }
            break;
        }
        // Sleep until the next message is due or a batch's linger ends, or an ack frees room.
        let sendable = conns.iter().any(|c| {
            !c.ready.is_empty()
                && c.shared.in_flight.borrow().len() < spec.max_in_flight
                && !c.shared.dead.get()
        });
        if sendable {
            shardlog::runtime::yield_now().await;
            continue;
        }
        let mut next = now + 100_000;
        if generating && pending < pending_cap {
            match sched.next_time() {
                Some(t) => next = next.min(t),
                None => next = now,
            }
        }
        if let Some(t) = acc.iter().filter_map(|b| b.first_intended()).min() {
            next = next.min(t + linger);
        }
        if next > now {
            let d = Duration::from_micros(next - now);
            shardlog::runtime::timeout(d, wake.notified()).await;
        } else {
            shardlog::runtime::yield_now().await;
        }
    }
    for c in &conns {
        c.shared.dead.set(true);
    }
    wake.notify_all();
    let mut last = stats.borrow_mut().take();
    last.active_us = clock.now_us().saturating_sub(start);
    worker.report(last);
    Ok(())
}

fn close(
    b: &mut BatchBuilder,
    p: usize,
    spec: &LoadSpec,
    ready: &mut VecDeque<Ready>,
) -> Result<()> {
    let (bytes, intended, value_bytes) = b.finish(spec.codec)?;
    ready.push_back(Ready {
        partition: p as i32,
        bytes,
        intended,
        value_bytes,
    });
    Ok(())
}

/// Sends the connection's ready batches while it has room in flight (at most one batch per
/// partition per request). Returns the value bytes sent.
async fn send_ready(
    c: &mut Conn,
    spec: &LoadSpec,
    topic: &TopicName,
    stats: &RefCell<Stats>,
) -> usize {
    let mut sent = 0usize;
    // Bounded: each iteration takes at least one batch off `ready`.
    while !c.ready.is_empty() && c.shared.in_flight.borrow().len() < spec.max_in_flight {
        let mut batches: Vec<Ready> = Vec::new();
        let mut rest = VecDeque::new();
        while let Some(r) = c.ready.pop_front() {
            if batches.iter().any(|b| b.partition == r.partition) {
                rest.push_back(r);
            } else {
                batches.push(r);
            }
        }
        c.ready = rest;
        sent += batches
            .iter()
            .map(|b| b.value_bytes as usize)
            .sum::<usize>();
        if c.shared.dead.get() {
            fail(stats, &batches);
            continue;
        }
        let mut req = ProduceRequest::default();
        req.acks = spec.acks;
        req.timeout_ms = 30_000;
        let mut td = TopicProduceData::default();
        td.name = topic.clone();
        td.partition_data = batches
            .iter_mut()
            .map(|b| {
                let mut pd = PartitionProduceData::default();
                pd.index = b.partition;
                pd.records = Some(Bytes::from(std::mem::take(&mut b.bytes)));
                pd
            })
            .collect();
        req.topic_data = vec![td];
        if spec.acks == 0 {
            // No response comes for acks=0: count them as acknowledged when written.
            let ok = c.writer.send(&req, PRODUCE_VERSION).await.is_ok();
            let mut st = stats.borrow_mut();
            let n = messages(&batches);
            if ok {
                st.acked += n;
                st.acked_bytes += batches.iter().map(|b| b.value_bytes).sum::<u64>();
            } else {
                st.failed += n;
            }
            continue;
        }
        let corr = c.writer.next_correlation_id();
        c.shared.in_flight.borrow_mut().push_back(InFlight {
            correlation_id: corr,
            batches,
        });
        if let Err(e) = c.writer.send(&req, PRODUCE_VERSION).await {
            tracing::warn!("produce send failed: {e:#}");
            c.shared.abandon(stats);
        }
    }
    sent
}
