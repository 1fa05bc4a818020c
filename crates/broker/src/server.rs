//! The listener and the life of one client connection.
//!
//! A connection reads size-prefixed frames and hands each to
//! [`protocol::dispatch`], which starts the handler as its own task. The
//! tasks' results are written back strictly in request order by a writer
//! task, so a client can pipeline requests (librdkafka does) while slow ones
//! (an acks=all produce waiting for fsync, a long-polling fetch) do not stop
//! the connection from reading. Everything is bounded: connections by
//! `max.connections`, frame size by `socket.request.max.bytes`, requests in
//! flight per connection by `queued.max.requests`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::protocol;
use crate::response::Frame;

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = broker.config.overrides.get_i64("max.connections").max(1) as usize;
    let connections = Arc::new(Semaphore::new(limit));
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    handle_connection(broker, stream, peer, shutdown).await;
                    drop(permit);
                });
            }
            Err(error) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let max_frame = broker
        .config
        .overrides
        .get_i64("socket.request.max.bytes")
        .max(1024) as usize;
    let in_flight = broker
        .config
        .overrides
        .get_i64("queued.max.requests")
        .max(1) as usize;
    let (mut reader, writer) = stream.into_split();
    let (responses, pending) = mpsc::channel::<JoinHandle<Option<Frame>>>(in_flight);
    let writer_task = tokio::spawn(write_responses(writer, pending, peer));
    let mut length = [0u8; 4];
    loop {
        let read = tokio::select! {
            read = reader.read_exact(&mut length) => read,
            _ = shutdown.changed() => break,
        };
        if read.is_err() {
            break; // the client went away
        }
        let size = i32::from_be_bytes(length);
        if size < 0 || size as usize > max_frame {
            tracing::warn!(%peer, size, max_frame, "closing connection: request frame size out of bounds (socket.request.max.bytes)");
            break;
        }
        // Requests in flight share a memory budget, so many clients sending
        // large frames at once wait instead of exhausting memory.
        let Ok(memory) = broker
            .request_memory
            .clone()
            .acquire_many_owned((size as u32).min(broker.request_memory_bytes))
            .await
        else {
            break;
        };
        // Grow the buffer as bytes arrive rather than trusting the prefix.
        let mut frame = Vec::with_capacity((size as usize).min(64 * 1024));
        match (&mut reader)
            .take(size as u64)
            .read_to_end(&mut frame)
            .await
        {
            Ok(read) if read == size as usize => {}
            _ => break,
        }
        match protocol::dispatch(&broker, Bytes::from(frame)) {
            Ok(response) => {
                let task = tokio::spawn(async move {
                    let response = response.await;
                    drop(memory);
                    response
                });
                if responses.send(task).await.is_err() {
                    break; // the writer stopped: the socket is dead
                }
            }
            Err(protocol::CloseConnection(reason)) => {
                tracing::warn!(%peer, %reason, "closing connection");
                break;
            }
        }
    }
    drop(responses);
    let _ = writer_task.await;
}

async fn write_responses(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut pending: mpsc::Receiver<JoinHandle<Option<Frame>>>,
    peer: SocketAddr,
) {
    while let Some(task) = pending.recv().await {
        let response = match task.await {
            Ok(Some(response)) => response,
            Ok(None) => continue, // acks=0 gets no response
            Err(error) => {
                tracing::error!(%peer, %error, "request handler failed; closing connection");
                return;
            }
        };
        if let Err(error) = response.write_to(&mut writer).await {
            tracing::debug!(%peer, %error, "writing a response failed; closing connection");
            return;
        }
    }
    let _ = writer.shutdown().await;
}
