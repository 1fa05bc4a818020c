//! Incremental fetch sessions (KIP-227).
//!
//! A client that fetches many partitions opens a session with a full fetch
//! (session id 0, epoch 0). The broker remembers the partitions and their
//! fetch positions; later requests (same id, next epoch) carry only the
//! partitions whose position changed and the ones to forget, and responses
//! carry only partitions with news: records, a moved high watermark or log
//! start offset, or an error. The Java client uses sessions by default.
//!
//! The cache is bounded (`max.incremental.fetch.session.cache.slots`); when
//! it is full the least recently used session is evicted and its client gets
//! FETCH_SESSION_ID_NOT_FOUND, after which it starts a new full fetch.

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

/// Identifies a partition in a session: topic ids from Fetch v13, names before.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionPartition {
    pub topic_id: Uuid,
    pub topic: String,
    pub partition: i32,
}

/// What the client asked for one partition, and what it was last told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub last_high_watermark: i64,
    pub last_log_start_offset: i64,
}

impl PartitionState {
    pub fn new(fetch_offset: i64, max_bytes: i32) -> PartitionState {
        PartitionState {
            fetch_offset,
            max_bytes,
            last_high_watermark: -1,
            last_log_start_offset: -1,
        }
    }
}

struct Session {
    /// Epoch the next request must carry.
    next_epoch: i32,
    partitions: Vec<(SessionPartition, PartitionState)>,
    last_used: u64,
}

/// How a request relates to sessions, decided by [`FetchSessionCache::begin`].
#[derive(Debug)]
pub enum SessionPlan {
    /// No session: answer every requested partition (`session_id` 0).
    Sessionless,
    /// A new session was created for this full request.
    Full { session_id: i32 },
    /// An existing session: these are all its partitions, after applying the
    /// request's changes; answer only the ones with news.
    Incremental {
        session_id: i32,
        partitions: Vec<(SessionPartition, PartitionState)>,
    },
}

pub struct FetchSessionCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    sessions: HashMap<i32, Session>,
    next_id: i32,
    tick: u64,
}

const FINAL_EPOCH: i32 = -1;

impl FetchSessionCache {
    pub fn new(capacity: usize) -> FetchSessionCache {
        FetchSessionCache {
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                next_id: 1,
                tick: 0,
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a request's session fields. `requested` are the partitions in
    /// the request with their positions; `forgotten` the ones to drop.
    pub fn begin(
        &self,
        session_id: i32,
        epoch: i32,
        requested: &[(SessionPartition, PartitionState)],
        forgotten: &[SessionPartition],
    ) -> Result<SessionPlan, ResponseError> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if session_id != 0 && epoch <= 0 {
            // The client closes its session (epoch -1) or replaces it (epoch 0).
            inner.sessions.remove(&session_id);
        }
        if epoch == FINAL_EPOCH || self.capacity == 0 {
            return Ok(SessionPlan::Sessionless);
        }
        if epoch == 0 {
            if inner.sessions.len() >= self.capacity {
                let oldest = inner
                    .sessions
                    .iter()
                    .min_by_key(|(_, session)| session.last_used)
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    inner.sessions.remove(&oldest);
                }
            }
            let id = loop {
                let candidate = inner.next_id;
                inner.next_id = inner.next_id.checked_add(1).filter(|n| *n > 0).unwrap_or(1);
                if !inner.sessions.contains_key(&candidate) {
                    break candidate;
                }
            };
            inner.sessions.insert(
                id,
                Session {
                    next_epoch: 1,
                    partitions: requested.to_vec(),
                    last_used: tick,
                },
            );
            return Ok(SessionPlan::Full { session_id: id });
        }
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            return Err(ResponseError::FetchSessionIdNotFound);
        };
        if session.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.next_epoch = session
            .next_epoch
            .checked_add(1)
            .filter(|n| *n > 0)
            .unwrap_or(1);
        session.last_used = tick;
        session
            .partitions
            .retain(|(key, _)| !forgotten.contains(key));
        for (key, state) in requested {
            match session
                .partitions
                .iter_mut()
                .find(|(existing, _)| existing == key)
            {
                Some((_, existing)) => {
                    existing.fetch_offset = state.fetch_offset;
                    existing.max_bytes = state.max_bytes;
                }
                None => session.partitions.push((key.clone(), *state)),
            }
        }
        Ok(SessionPlan::Incremental {
            session_id,
            partitions: session.partitions.clone(),
        })
    }

    /// Records what the response told the client about each partition.
    pub fn record_sent(&self, session_id: i32, sent: &[(SessionPartition, i64, i64)]) {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&session_id) else {
            return;
        };
        for (key, high_watermark, log_start_offset) in sent {
            if let Some((_, state)) = session.partitions.iter_mut().find(|(k, _)| k == key) {
                state.last_high_watermark = *high_watermark;
                state.last_log_start_offset = *log_start_offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: i32) -> SessionPartition {
        SessionPartition {
            topic_id: Uuid::nil(),
            topic: "t".into(),
            partition,
        }
    }

    #[test]
    fn a_session_is_created_updated_and_closed() {
        let cache = FetchSessionCache::new(10);
        let requested = vec![
            (key(0), PartitionState::new(0, 100)),
            (key(1), PartitionState::new(5, 100)),
        ];
        let SessionPlan::Full { session_id } = cache.begin(0, 0, &requested, &[]).unwrap() else {
            panic!("expected a new session");
        };
        let update = vec![(key(0), PartitionState::new(7, 100))];
        let SessionPlan::Incremental { partitions, .. } =
            cache.begin(session_id, 1, &update, &[key(1)]).unwrap()
        else {
            panic!("expected an incremental fetch");
        };
        assert_eq!(partitions.len(), 1);
        assert_eq!(partitions[0].1.fetch_offset, 7);
        assert_eq!(
            cache.begin(session_id, 1, &[], &[]).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        assert!(matches!(
            cache.begin(session_id, -1, &[], &[]).unwrap(),
            SessionPlan::Sessionless
        ));
        assert_eq!(
            cache.begin(session_id, 3, &[], &[]).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used_session() {
        let cache = FetchSessionCache::new(1);
        let SessionPlan::Full { session_id: first } = cache.begin(0, 0, &[], &[]).unwrap() else {
            panic!()
        };
        let SessionPlan::Full { .. } = cache.begin(0, 0, &[], &[]).unwrap() else {
            panic!()
        };
        assert_eq!(
            cache.begin(first, 1, &[], &[]).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
    }
}
