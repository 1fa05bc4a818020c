//! The quorum's wire: length-prefixed JSON frames over TCP between the
//! controller listeners. Raft's three RPCs travel on it, and two of
//! Strom's own: a broker-only node following the metadata ([`Rpc::Tail`]),
//! and a request for the active controller ([`Rpc::App`]).

use std::io;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::shared::TailBatch;
use crate::types::TypeConfig;

/// The largest frame either side accepts (a metadata image with very many
/// partitions still fits).
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A broker-only node at metadata offset `from` asks for what it lacks,
    /// waiting up to `wait_ms` for news when it has everything.
    Tail {
        node_id: i32,
        from: u64,
        raft_index: u64,
        wait_ms: u64,
    },
    /// For the application on the quorum leader (the active controller).
    App(serde_json::Value),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TailReply {
    /// The quorum leader as the answering voter knows it.
    pub leader: Option<i32>,
    pub term: u64,
    pub missing: TailMissing,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum TailMissing {
    Batches(Vec<TailBatch>),
    /// The image's JSON ([`strom_metadata::MetadataImage::to_snapshot`]).
    Image {
        image: String,
        raft_index: u64,
    },
}

pub async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// One frame, or `None` at a clean end of stream.
pub async fn read_frame(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    match stream.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a quorum frame of {length} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    let mut bytes = vec![0u8; length];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

/// A connection to one node's controller listener, reopened after a failure.
pub struct Connection {
    address: String,
    stream: Option<TcpStream>,
}

/// Why a call failed: no connection at all, or a failure after connecting.
#[derive(Debug)]
pub enum CallError {
    Unreachable(io::Error),
    Failed(io::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(error) => write!(f, "unreachable: {error}"),
            CallError::Failed(error) => write!(f, "{error}"),
        }
    }
}

impl Connection {
    pub fn new(address: String) -> Connection {
        Connection {
            address,
            stream: None,
        }
    }

    /// Sends `rpc` and reads the answer, within `timeout`.
    pub async fn call(&mut self, rpc: &Rpc, timeout: Duration) -> Result<Vec<u8>, CallError> {
        let request = serde_json::to_vec(rpc).expect("quorum requests serialize");
        let result = tokio::time::timeout(timeout, self.exchange(&request)).await;
        let result = result.unwrap_or_else(|_| {
            Err(CallError::Failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {} within {timeout:?}", self.address),
            )))
        });
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, CallError> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.address)
                .await
                .map_err(CallError::Unreachable)?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        write_frame(stream, request)
            .await
            .map_err(CallError::Failed)?;
        match read_frame(stream).await.map_err(CallError::Failed)? {
            Some(answer) => Ok(answer),
            None => Err(CallError::Failed(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            ))),
        }
    }
}

/// Makes openraft's connections to the other voters.
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            connection: Connection::new(node.addr.clone()),
        }
    }
}

/// openraft's connection to one voter.
pub struct Peer {
    target: u64,
    connection: Connection,
}

impl Peer {
    async fn send<R, E>(
        &mut self,
        rpc: Rpc,
        option: RPCOption,
    ) -> Result<R, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer = match self.connection.call(&rpc, option.hard_ttl()).await {
            Ok(answer) => answer,
            Err(CallError::Unreachable(error)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(CallError::Failed(error)) => {
                return Err(RPCError::Network(NetworkError::new(&error)))
            }
        };
        let answer: Result<R, RaftError<u64, E>> = serde_json::from_slice(&answer)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.send(Rpc::Append(rpc), option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.send(Rpc::Snapshot(rpc), option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.send(Rpc::Vote(rpc), option).await
    }

    fn backoff(&self) -> Backoff {
        // A voter that is down is retried often enough to notice its return
        // within a heartbeat or two.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
