//! A Kafka-protocol connection from this broker to another one (a follower
//! to its leader), with the `kafka-protocol` codecs: one request at a time,
//! each answered before the next is sent.

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
