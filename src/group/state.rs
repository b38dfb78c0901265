//! The state of one group and its rebalance state machine
//! (Empty → PreparingRebalance → CompletingRebalance → Stable, and back).
//!
//! Invariant: pure state and time arithmetic — no I/O; callers pass `now` and await the
//! oneshot receivers this hands out.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;

use super::GroupConfig;

pub const NONE: i16 = 0;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: (member id, instance id, metadata of the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// Answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: i16,
    pub assignment: Bytes,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
}

pub enum Step<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_seen: Instant,
    join_tx: Option<oneshot::Sender<JoinOutcome>>,
    sync_tx: Option<oneshot::Sender<SyncOutcome>>,
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: i64,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used (KIP-394).
    pending: HashMap<String, Instant>,
    /// Static membership: instance id → current member id (KIP-345).
    pub instances: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// End of the initial rebalance delay of a group that was empty.
    delay_deadline: Option<Instant>,
    pub offsets: HashMap<(String, i32), Committed>,
    /// Wall-clock ms since which the group has had no members.
    pub empty_since_ms: i64,
}

pub struct JoinArgs<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub client_id: &'a str,
    pub client_host: &'a str,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: &'a str,
    pub protocols: &'a [(String, Bytes)],
    /// JoinGroup v4+: a first join without a member id gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            rebalance_deadline: None,
            delay_deadline: None,
            offsets: HashMap::new(),
            empty_since_ms: now_ms,
        }
    }

    fn fail_join(error: i16, member_id: &str) -> Step<JoinOutcome> {
        Step::Now(JoinOutcome {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        })
    }

    /// Checks that `member_id` (with its instance id) is a current member.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> i16 {
        if let Some(inst) = instance_id {
            match self.instances.get(inst) {
                Some(m) if m != member_id => return FENCED_INSTANCE_ID,
                None if !self.members.contains_key(member_id) => return UNKNOWN_MEMBER_ID,
                _ => {}
            }
        }
        if self.members.contains_key(member_id) {
            NONE
        } else {
            UNKNOWN_MEMBER_ID
        }
    }

    pub fn join(&mut self, a: JoinArgs<'_>, cfg: &GroupConfig, now: Instant) -> Step<JoinOutcome> {
        let session = Duration::from_millis(a.session_timeout_ms.max(0) as u64);
        if session < cfg.min_session_timeout || session > cfg.max_session_timeout {
            return Self::fail_join(INVALID_SESSION_TIMEOUT, a.member_id);
        }
        if a.protocols.is_empty()
            || self
                .protocol_type
                .as_deref()
                .is_some_and(|t| !self.members.is_empty() && t != a.protocol_type)
            || (!self.members.is_empty() && self.common_protocol(Some(a.protocols)).is_none())
        {
            return Self::fail_join(INCONSISTENT_GROUP_PROTOCOL, a.member_id);
        }
        let mut member_id = a.member_id.to_string();
        if member_id.is_empty() {
            if let Some(inst) = a.instance_id {
                // A static member restarting: it takes over its old slot under a new id.
                member_id = new_member_id(a.client_id);
                if let Some(old) = self.instances.insert(inst.to_string(), member_id.clone()) {
                    if let Some(mut m) = self.members.remove(&old) {
                        m.id = member_id.clone();
                        if let Some(tx) = m.join_tx.take() {
                            let _ = tx.send(JoinOutcome {
                                error: FENCED_INSTANCE_ID,
                                ..JoinOutcome::default()
                            });
                        }
                        if self.leader.as_deref() == Some(old.as_str()) {
                            self.leader = Some(member_id.clone());
                        }
                        self.members.insert(member_id.clone(), m);
                        if self.state == GroupState::Stable
                            && self.protocols_unchanged(&member_id, a.protocols)
                        {
                            let m = self.members.get_mut(&member_id);
                            if let Some(m) = m {
                                m.last_seen = now;
                            }
                            return Step::Now(self.outcome_for(&member_id));
                        }
                    }
                }
            } else if a.require_known_member_id {
                let id = new_member_id(a.client_id);
                self.pending.insert(id.clone(), now + session);
                return Self::fail_join(MEMBER_ID_REQUIRED, &id);
            } else {
                member_id = new_member_id(a.client_id);
            }
        } else if !self.members.contains_key(&member_id)
            && self.pending.remove(&member_id).is_none()
        {
            return Self::fail_join(UNKNOWN_MEMBER_ID, &member_id);
        } else if let Some(inst) = a.instance_id {
            if self.instances.get(inst).is_some_and(|m| *m != member_id) {
                return Self::fail_join(FENCED_INSTANCE_ID, &member_id);
            }
        }
        if !self.members.contains_key(&member_id) && self.members.len() >= cfg.max_size {
            return Self::fail_join(GROUP_MAX_SIZE_REACHED, &member_id);
        }
        let (tx, rx) = oneshot::channel();
        let rebalance = Duration::from_millis(a.rebalance_timeout_ms.max(0) as u64).max(session);
        let is_new = !self.members.contains_key(&member_id);
        let m = self
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: a.instance_id.map(str::to_string),
                client_id: a.client_id.to_string(),
                client_host: a.client_host.to_string(),
                session_timeout: session,
                rebalance_timeout: rebalance,
                protocol_type: a.protocol_type.to_string(),
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                join_tx: None,
                sync_tx: None,
            });
        m.session_timeout = session;
        m.rebalance_timeout = rebalance;
        m.protocols = a.protocols.to_vec();
        m.last_seen = now;
        if let Some(old) = m.join_tx.replace(tx) {
            let _ = old.send(JoinOutcome {
                error: UNKNOWN_MEMBER_ID,
                ..JoinOutcome::default()
            });
        }
        if let Some(inst) = a.instance_id {
            self.instances.insert(inst.to_string(), member_id.clone());
        }
        self.protocol_type = Some(a.protocol_type.to_string());
        match self.state {
            GroupState::PreparingRebalance => {
                if is_new {
                    if let Some(d) = self.delay_deadline {
                        let limit = self.rebalance_deadline.unwrap_or(d);
                        self.delay_deadline = Some((now + cfg.initial_rebalance_delay).min(limit));
                    }
                }
            }
            _ => self.prepare_rebalance(cfg, now),
        }
        self.maybe_complete_join(now);
        Step::Wait(rx)
    }

    fn protocols_unchanged(&self, member_id: &str, protocols: &[(String, Bytes)]) -> bool {
        self.members
            .get(member_id)
            .is_some_and(|m| m.protocols == protocols)
    }

    /// The first protocol (in the first member's order of preference) every member supports.
    fn common_protocol(&self, extra: Option<&[(String, Bytes)]>) -> Option<String> {
        let first = self
            .members
            .values()
            .next()
            .map(|m| m.protocols.as_slice())
            .or(extra)?;
        first
            .iter()
            .map(|(n, _)| n)
            .find(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
                    && extra.is_none_or(|e| e.iter().any(|(p, _)| p == *n))
            })
            .cloned()
    }

    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: Instant) {
        let was_empty = self.state == GroupState::Empty;
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync_tx.take() {
                let _ = tx.send(SyncOutcome {
                    error: REBALANCE_IN_PROGRESS,
                    ..SyncOutcome::default()
                });
            }
        }
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        let deadline = now + timeout;
        self.rebalance_deadline = Some(deadline);
        self.delay_deadline = was_empty.then(|| (now + cfg.initial_rebalance_delay).min(deadline));
    }

    /// Completes the join phase when every member has rejoined (and any initial delay is
    /// over), or when the rebalance timeout passes (dropping members that did not rejoin).
    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        let all_joined = self.members.values().all(|m| m.join_tx.is_some());
        let delayed = self.delay_deadline.is_some_and(|d| now < d);
        if !(timed_out || (all_joined && !delayed)) {
            return;
        }
        let stragglers: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_tx.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in stragglers {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.delay_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.common_protocol(None);
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let out = self.outcome_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_seen = now;
                m.assignment = Bytes::new();
                if let Some(tx) = m.join_tx.take() {
                    let _ = tx.send(out);
                }
            }
        }
    }

    fn outcome_for(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == protocol.as_ref())
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    (m.id.clone(), m.instance_id.clone(), meta)
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: protocol,
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: &[(String, Bytes)],
        now: Instant,
    ) -> Step<SyncOutcome> {
        let fail = |error| {
            Step::Now(SyncOutcome {
                error,
                ..SyncOutcome::default()
            })
        };
        let err = self.check_member(member_id, instance_id);
        if err != NONE {
            return fail(err);
        }
        if generation != self.generation {
            return fail(ILLEGAL_GENERATION);
        }
        let ok = |assignment: Bytes, g: &Group| SyncOutcome {
            error: NONE,
            assignment,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
        };
        match self.state {
            GroupState::Empty | GroupState::PreparingRebalance => fail(REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                let a = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Step::Now(ok(a, self))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.last_seen = now;
                    m.sync_tx = Some(tx);
                }
                if self.leader.as_deref() == Some(member_id) {
                    for (id, a) in assignments {
                        if let Some(m) = self.members.get_mut(id) {
                            m.assignment = a.clone();
                        }
                    }
                    self.state = GroupState::Stable;
                    let outs: Vec<(String, SyncOutcome)> = self
                        .members
                        .values()
                        .map(|m| (m.id.clone(), ok(m.assignment.clone(), self)))
                        .collect();
                    for (id, out) in outs {
                        if let Some(tx) = self.members.get_mut(&id).and_then(|m| m.sync_tx.take()) {
                            let _ = tx.send(out);
                        }
                    }
                }
                Step::Wait(rx)
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let err = self.check_member(member_id, instance_id);
        if err != NONE {
            return err;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
        if self.state == GroupState::PreparingRebalance {
            return REBALANCE_IN_PROGRESS;
        }
        if generation != self.generation {
            return ILLEGAL_GENERATION;
        }
        NONE
    }

    /// Checks a commit from a member (or a simple commit with generation -1 and no member).
    pub fn check_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                NONE
            } else {
                UNKNOWN_MEMBER_ID
            };
        }
        // As Kafka's coordinator: refused only while the new assignment is being handed out
        // (CompletingRebalance). While the group prepares a rebalance, members still commit
        // what they processed under the current generation (the Java client does so before
        // it rejoins); refusing those commits redelivers every record since the last one.
        if self.state == GroupState::CompletingRebalance {
            return REBALANCE_IN_PROGRESS;
        }
        let err = self.check_member(member_id, instance_id);
        if err != NONE {
            return err;
        }
        if generation != self.generation {
            return ILLEGAL_GENERATION;
        }
        NONE
    }

    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        cfg: &GroupConfig,
        now: Instant,
    ) -> i16 {
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(inst)) => match self.instances.get(inst) {
                Some(m) => m.clone(),
                None => return UNKNOWN_MEMBER_ID,
            },
            _ => member_id.to_string(),
        };
        let err = self.check_member(&id, instance_id);
        if err != NONE {
            return err;
        }
        self.remove_member(&id);
        self.after_removal(cfg, now);
        NONE
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.instances.get(inst).is_some_and(|x| x == id) {
                    self.instances.remove(inst);
                }
            }
            if let Some(tx) = m.join_tx.take() {
                let _ = tx.send(JoinOutcome {
                    error: UNKNOWN_MEMBER_ID,
                    ..JoinOutcome::default()
                });
            }
            if let Some(tx) = m.sync_tx.take() {
                let _ = tx.send(SyncOutcome {
                    error: UNKNOWN_MEMBER_ID,
                    ..SyncOutcome::default()
                });
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn after_removal(&mut self, cfg: &GroupConfig, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = GroupState::Empty;
                    self.generation += 1;
                    self.leader = None;
                    self.protocol = None;
                } else {
                    self.prepare_rebalance(cfg, now);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty => {}
        }
    }

    /// Expires silent members and pending ids, and completes a due rebalance. Returns true
    /// when the group just became empty.
    pub fn tick(&mut self, cfg: &GroupConfig, now: Instant, now_ms: i64) -> bool {
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_tx.is_none() && now.duration_since(m.last_seen) > m.session_timeout)
            .map(|m| m.id.clone())
            .collect();
        let had_members = !self.members.is_empty();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_removal(cfg, now);
        }
        self.maybe_complete_join(now);
        if had_members && self.members.is_empty() {
            self.empty_since_ms = now_ms;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(member: &'a str, protocols: &'a [(String, Bytes)]) -> JoinArgs<'a> {
        JoinArgs {
            member_id: member,
            instance_id: None,
            client_id: "c",
            client_host: "/127.0.0.1",
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer",
            protocols,
            require_known_member_id: true,
        }
    }

    fn now_outcome<T>(s: Step<T>) -> T {
        match s {
            Step::Now(t) => t,
            Step::Wait(_) => panic!("expected an immediate answer"),
        }
    }

    #[test]
    fn two_members_join_sync_and_one_expires() {
        let cfg = GroupConfig {
            initial_rebalance_delay: Duration::from_millis(0),
            ..GroupConfig::default()
        };
        let protos = vec![("range".to_string(), Bytes::from_static(b"m"))];
        let mut g = Group::new("g", 0);
        let t0 = Instant::now();
        let first = now_outcome(g.join(args("", &protos), &cfg, t0));
        assert_eq!(first.error, MEMBER_ID_REQUIRED);
        let a = first.member_id;
        let Step::Wait(mut rx_a) = g.join(args(&a, &protos), &cfg, t0) else {
            panic!()
        };
        let out_a = rx_a.try_recv().expect("open").expect("completed at once");
        assert_eq!((out_a.generation, out_a.leader.as_str()), (1, a.as_str()));
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let Step::Wait(mut sync_a) =
            g.sync(&a, None, 1, &[(a.clone(), Bytes::from_static(b"A"))], t0)
        else {
            panic!()
        };
        assert_eq!(
            sync_a.try_recv().expect("open").expect("done").assignment,
            Bytes::from_static(b"A")
        );
        assert_eq!(g.state, GroupState::Stable);

        // A second member triggers a rebalance; the first learns it from its heartbeat.
        let b = now_outcome(g.join(args("", &protos), &cfg, t0)).member_id;
        let Step::Wait(mut rx_b) = g.join(args(&b, &protos), &cfg, t0) else {
            panic!()
        };
        assert_eq!(g.heartbeat(&a, None, 1, t0), REBALANCE_IN_PROGRESS);
        // While the group prepares the rebalance, a commits what it processed under
        // generation 1 (Kafka accepts it); a stale generation or a stranger is refused.
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.check_commit(&a, None, 1), NONE);
        assert_eq!(g.check_commit(&a, None, 0), ILLEGAL_GENERATION);
        assert_eq!(g.check_commit("nobody", None, 1), UNKNOWN_MEMBER_ID);
        let Step::Wait(mut rx_a) = g.join(args(&a, &protos), &cfg, t0) else {
            panic!()
        };
        let out_a = rx_a.try_recv().expect("open").expect("done");
        let out_b = rx_b.try_recv().expect("open").expect("done");
        assert_eq!(out_a.generation, 2);
        // Until the leader's SyncGroup hands out the new assignment, commits wait.
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert_eq!(g.check_commit(&a, None, 2), REBALANCE_IN_PROGRESS);
        assert_eq!(out_a.members.len(), 2, "leader sees both members");
        assert!(out_b.members.is_empty());

        // b stops heartbeating: after its session timeout it is expelled.
        let later = t0 + Duration::from_secs(11);
        g.heartbeat(&a, None, 2, later - Duration::from_secs(1));
        g.tick(&cfg, later, 0);
        assert!(!g.members.contains_key(&b));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(&b, None, 2, later), UNKNOWN_MEMBER_ID);
    }
}
