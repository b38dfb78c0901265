//! The control plane's wire: Raft RPCs between the quorum's voters, and the requests nodes
//! send the controller (proposals, heartbeats), over TCP on each node's controller listener.
//!
//! Invariants: one request at a time per connection, each a length-prefixed JSON frame of at
//! most [`MAX_FRAME`] bytes answered by one frame; every call has a deadline, and a failed or
//! timed-out connection is dropped and dialled again on the next call, so an unreachable
//! peer never holds up Raft. The listener serves at most [`MAX_CONNECTIONS`] connections and
//! closes one silent for [`IDLE`], so whoever reaches the port cannot pin more than
//! `MAX_CONNECTIONS × MAX_FRAME` bytes or starve the voters of connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::state::{Command, NodeId, Outcome};
use super::{Raft, TypeConfig};

/// Largest frame read (snapshots travel in 1 MiB chunks, appends in batches of small
/// commands).
pub const MAX_FRAME: usize = 4 << 20;
/// Connections the controller listener serves at once (voters and proposing nodes need a
/// handful each).
pub const MAX_CONNECTIONS: usize = 64;
/// A connection with no request for this long is closed (voters send heartbeats every
/// 100 ms).
const IDLE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A command for the leader to commit (a voter that does not lead passes it on, once).
    Propose(Command),
    /// A node is alive in incarnation `epoch`.
    Heartbeat {
        id: NodeId,
        epoch: u64,
    },
    /// A command passed on by a node that does not lead: committed here or refused, never
    /// passed on again (two nodes that disagree on the leader cannot bounce it).
    Forwarded(Command),
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The outcome and the log index it was committed at, or why not (this node is not
    /// the leader: the caller asks the leader).
    Proposed(Result<(Outcome, u64), String>),
    /// Whether the heartbeat was taken (by the leader).
    HeartbeatTaken(bool),
}

async fn write_frame(s: &mut TcpStream, v: &impl Serialize) -> std::io::Result<()> {
    let body = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    s.write_all(&buf).await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(s: &mut TcpStream) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

/// Since when each node's controller listener has refused every connection (no process
/// listens there: it died or is restarting), as the Raft leader's replication finds it;
/// cleared by the next call that is answered.
#[derive(Default)]
pub struct Refusals(std::sync::Mutex<HashMap<NodeId, std::time::Instant>>);

impl Refusals {
    fn note(&self, node: NodeId, refused: bool) {
        if let Ok(mut m) = self.0.lock() {
            if refused {
                m.entry(node).or_insert_with(std::time::Instant::now);
            } else {
                m.remove(&node);
            }
        }
    }

    /// Forgets `node`'s refusals: it showed signs of life (registered, heartbeated).
    pub fn forget(&self, node: NodeId) {
        self.note(node, false);
    }

    /// How long `node` has refused connections, if it does.
    pub fn refused_for(&self, node: NodeId) -> Option<Duration> {
        let m = self.0.lock().ok()?;
        m.get(&node).map(|t| t.elapsed())
    }
}

/// A connection to one peer, dialled on demand.
pub struct Peer {
    addr: String,
    conn: Option<TcpStream>,
    /// The node it reaches and where refusals are noted (Raft's peers only).
    watch: Option<(NodeId, Arc<Refusals>)>,
}

impl Peer {
    pub fn new(addr: String) -> Peer {
        Peer {
            addr,
            conn: None,
            watch: None,
        }
    }

    /// One request and its reply within `deadline`; the connection is dropped on failure.
    pub async fn call(&mut self, req: &Request, deadline: Duration) -> std::io::Result<Reply> {
        let r = tokio::time::timeout(deadline, self.call_inner(req)).await;
        let r = r.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {} within {deadline:?}", self.addr),
            ))
        });
        if r.is_err() {
            self.conn = None;
        }
        if let Some((node, refusals)) = &self.watch {
            let refused = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            if refused || r.is_ok() {
                refusals.note(*node, refused);
            }
        }
        r
    }

    async fn call_inner(&mut self, req: &Request) -> std::io::Result<Reply> {
        if self.conn.is_none() {
            let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            s.set_nodelay(true)?;
            self.conn = Some(s);
        }
        let Some(s) = self.conn.as_mut() else {
            return Err(std::io::Error::other("no connection"));
        };
        write_frame(s, req).await?;
        read_frame(s).await
    }
}

/// Hands out a [`Peer`] per voter and learner for openraft, noting refused connections.
pub struct Network(pub Arc<Refusals>);

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let mut p = Peer::new(node.addr.clone());
        p.watch = Some((target, self.0.clone()));
        p
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn unreachable<E: std::error::Error>(e: std::io::Error) -> RPCError<NodeId, BasicNode, E> {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::InvalidData => {
            RPCError::Network(NetworkError::new(&e))
        }
        _ => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(
        "unexpected reply type",
    )))
}

impl Peer {
    /// One Raft RPC: `pick` takes the reply of the expected kind apart.
    async fn rpc<T, E: std::error::Error>(
        &mut self,
        req: Request,
        option: RPCOption,
        pick: impl FnOnce(Reply) -> Option<Result<T, RaftError<NodeId, E>>>,
    ) -> Result<T, RpcErr<E>> {
        let reply = self
            .call(&req, option.hard_ttl())
            .await
            .map_err(unreachable)?;
        match pick(reply) {
            Some(r) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(0, e)))
            }
            None => Err(unexpected()),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.rpc(Request::Append(rpc), option, |r| match r {
            Reply::Append(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.rpc(Request::Snapshot(rpc), option, |r| match r {
            Reply::Snapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.rpc(Request::Vote(rpc), option, |r| match r {
            Reply::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}

/// What the listener hands to the node for requests that are not Raft's own.
pub trait Controller: Send + Sync + 'static {
    /// Commits `cmd` if this node leads; passes it on to the leader if `forward`.
    fn propose(
        &self,
        cmd: Command,
        forward: bool,
    ) -> impl std::future::Future<Output = Result<(Outcome, u64), String>> + Send;
    fn heartbeat(&self, id: NodeId, epoch: u64) -> impl std::future::Future<Output = bool> + Send;
}

/// Serves the controller listener until the runtime stops: one task per connection.
pub async fn serve<C: Controller>(listener: TcpListener, raft: Raft, ctl: Arc<C>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused = 0u64;
    // Bounded by the runtime's life; each accepted connection gets its own task.
    loop {
        let (mut s, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("controller listener accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                warn!(%peer, refused, "controller listener full ({MAX_CONNECTIONS} connections); closing new ones");
            }
            continue;
        };
        let _ = s.set_nodelay(true);
        let raft = raft.clone();
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // Each iteration answers one request; ends when the peer goes away or idles.
            loop {
                let req: Request = match tokio::time::timeout(IDLE, read_frame(&mut s)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        debug!(%peer, "controller connection closed: {e}");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "controller connection idle; closing it");
                        return;
                    }
                };
                let reply = match req {
                    Request::Append(r) => Reply::Append(raft.append_entries(r).await),
                    Request::Vote(r) => Reply::Vote(raft.vote(r).await),
                    Request::Snapshot(r) => Reply::Snapshot(raft.install_snapshot(r).await),
                    Request::Propose(c) => Reply::Proposed(ctl.propose(c, true).await),
                    Request::Forwarded(c) => Reply::Proposed(ctl.propose(c, false).await),
                    Request::Heartbeat { id, epoch } => {
                        Reply::HeartbeatTaken(ctl.heartbeat(id, epoch).await)
                    }
                };
                if let Err(e) = write_frame(&mut s, &reply).await {
                    debug!(%peer, "controller reply failed: {e}");
                    return;
                }
            }
        });
    }
}
