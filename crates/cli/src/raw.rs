//! A few admin requests librdkafka's API does not offer (DescribeCluster,
//! DescribeLogDirs, IncrementalAlterConfigs), sent over a plain socket with
//! the `kafka-protocol` codecs. They are standard Kafka APIs, so these work
//! against any Kafka-compatible broker too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::client::{CliError, CliResult, ClientArgs};

pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    pub fn connect(args: &ClientArgs) -> CliResult<RawClient> {
        use std::net::ToSocketAddrs;
        let address = args
            .bootstrap
            .split(',')
            .next()
            .unwrap_or_default()
            .to_socket_addrs()
            .map_err(|e| args.unreachable(e))?
            .next()
            .ok_or_else(|| args.unreachable("no address"))?;
        let stream =
            TcpStream::connect_timeout(&address, args.timeout).map_err(|e| args.unreachable(e))?;
        stream.set_read_timeout(Some(args.timeout.max(Duration::from_secs(1))))?;
        Ok(RawClient {
            stream,
            correlation_id: 0,
        })
    }

    pub fn call<Q, R>(&mut self, key: ApiKey, version: i16, request: &Q) -> CliResult<R>
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strom-cli")));
        let mut frame = BytesMut::new();
        let failed = |e: anyhow::Error| CliError::Failed(format!("encoding {key:?}: {e}"));
        header
            .encode(&mut frame, Q::header_version(version))
            .map_err(failed)?;
        request.encode(&mut frame, version).map_err(failed)?;
        self.stream.write_all(&(frame.len() as i32).to_be_bytes())?;
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let decode_failed =
            |e: anyhow::Error| CliError::Failed(format!("decoding the {key:?} response: {e}"));
        ResponseHeader::decode(&mut body, R::header_version(version)).map_err(decode_failed)?;
        R::decode(&mut body, version).map_err(decode_failed)
    }
}
