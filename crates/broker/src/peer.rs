//! A Kafka-protocol connection from this broker to another one (a follower
//! to its leader), with the `kafka-protocol` codecs: one request at a time,
//! each answered before the next is sent. [`PeerPool`] keeps such
//! connections open between the occasional requests a broker sends.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response a peer may send (a fetch's `max_bytes` plus room
/// for its headers).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

pub struct PeerConnection {
    pub address: String,
    stream: TcpStream,
    correlation_id: i32,
    client_id: StrBytes,
}

/// Idle connections to other brokers, reused for the requests a broker
/// sends now and then (KIP-890 verifications, transaction markers). A call
/// takes one (or connects), and gives it back after a good answer; a failed
/// call drops it, and one that failed on a reused connection (the peer may
/// have restarted since) is sent once more on a new one. The requests sent
/// this way may be repeated: a verification asks, a marker a partition
/// already took changes nothing there.
pub struct PeerPool {
    client_id: String,
    idle: Mutex<HashMap<String, Vec<PeerConnection>>>,
}

/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 4;

impl PeerPool {
    pub fn new(client_id: &str) -> PeerPool {
        PeerPool {
            client_id: client_id.to_string(),
            idle: Mutex::default(),
        }
    }

    pub async fn call<Q, R>(
        &self,
        address: &str,
        key: ApiKey,
        version: i16,
        request: &Q,
    ) -> anyhow::Result<R>
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        if let Some(mut reused) = self.take(address) {
            if let Ok(response) = reused.call(key, version, request).await {
                self.give_back(reused);
                return Ok(response);
            }
        }
        let mut connection = PeerConnection::connect(address, self.client_id.clone()).await?;
        let response = connection.call(key, version, request).await?;
        self.give_back(connection);
        Ok(response)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<PeerConnection>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, address: &str) -> Option<PeerConnection> {
        self.idle().get_mut(address)?.pop()
    }

    fn give_back(&self, connection: PeerConnection) {
        let mut idle = self.idle();
        let kept = idle.entry(connection.address.clone()).or_default();
        if kept.len() < IDLE_PER_PEER {
            kept.push(connection);
        }
    }
}

impl PeerConnection {
    pub async fn connect(address: &str, client_id: String) -> std::io::Result<PeerConnection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(PeerConnection {
            address: address.to_string(),
            stream,
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id),
        })
    }

    /// Sends `request` at `version` and reads its response. Any error
    /// leaves the connection unusable: the caller drops it.
    pub async fn call<Q, R>(&mut self, key: ApiKey, version: i16, request: &Q) -> anyhow::Result<R>
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header.encode(&mut frame, Q::header_version(version))?;
        request.encode(&mut frame, version)?;
        let size = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&frame).await?;
        let size = self.stream.read_u32().await? as usize;
        anyhow::ensure!(
            size <= MAX_RESPONSE_BYTES,
            "{} sent a {size}-byte response, more than the {MAX_RESPONSE_BYTES} allowed",
            self.address
        );
        let mut body = vec![0; size];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::header_version(version))?;
        anyhow::ensure!(
            header.correlation_id == self.correlation_id,
            "{} answered request {} for request {}",
            self.address,
            header.correlation_id,
            self.correlation_id
        );
        R::decode(&mut body, version)
    }
}
