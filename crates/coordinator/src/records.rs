//! Group state as records of `__consumer_offsets`, in Kafka's own key and
//! value layouts, so the topic reads the same as Kafka's:
//!
//! * offset commit: key v1 `(group, topic, partition)`, value v3
//!   `(offset, leader epoch, metadata, commit timestamp)`;
//! * group metadata: key v2 `(group)`, value v3 (protocol type,
//!   generation, protocol, leader, state timestamp, members).
//!
//! A null value (tombstone) deletes the key. The group's partition is
//! `abs(groupId.hashCode()) % partitions`, Java's string hash, as in Kafka.

use crate::group::{CommittedOffset, Member, RestoredGroup};

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group_id: String,
        topic: String,
        partition: i32,
        /// `None`: the commit was deleted.
        committed: Option<CommittedOffset>,
    },
    Metadata {
        group_id: String,
        /// `None`: the group was deleted.
        group: Option<RestoredGroup>,
    },
}

/// Kafka's partition of `__consumer_offsets` for a group.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(unit as i32);
    }
    // Kafka's Utils.abs: Integer.MIN_VALUE maps to 0.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn i16(&mut self, value: i16) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn i32(&mut self, value: i32) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    pub(crate) fn string(&mut self, value: &str) {
        self.i16(value.len().min(i16::MAX as usize) as i16);
        self.0
            .extend_from_slice(&value.as_bytes()[..value.len().min(i16::MAX as usize)]);
    }
    pub(crate) fn nullable_string(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.string(value),
            None => self.i16(-1),
        }
    }
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.i32(value.len() as i32);
        self.0.extend_from_slice(value);
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, count: usize) -> Option<&[u8]> {
        if self.0.len() < count {
            return None;
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Some(taken)
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(b);
            i64::from_be_bytes(bytes)
        })
    }
    pub(crate) fn nullable_string(&mut self) -> Option<Option<String>> {
        let length = self.i16()?;
        if length < 0 {
            return Some(None);
        }
        let bytes = self.take(length as usize)?;
        Some(Some(String::from_utf8_lossy(bytes).into_owned()))
    }
    pub(crate) fn string(&mut self) -> Option<String> {
        self.nullable_string()?.or(Some(String::new()))
    }
    pub(crate) fn bytes(&mut self) -> Option<Vec<u8>> {
        let length = self.i32()?;
        if length < 0 {
            return Some(Vec::new());
        }
        self.take(length as usize).map(<[u8]>::to_vec)
    }
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

pub fn offset_key(group_id: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut writer = Writer(Vec::new());
    writer.i16(OFFSET_KEY_VERSION);
    writer.string(group_id);
    writer.string(topic);
    writer.i32(partition);
    writer.0
}

pub fn offset_value(committed: &CommittedOffset) -> Vec<u8> {
    let mut writer = Writer(Vec::new());
    writer.i16(OFFSET_VALUE_VERSION);
    writer.i64(committed.offset);
    writer.i32(committed.leader_epoch);
    writer.string(&committed.metadata);
    writer.i64(committed.commit_timestamp_ms);
    writer.0
}

pub fn group_key(group_id: &str) -> Vec<u8> {
    let mut writer = Writer(Vec::new());
    writer.i16(GROUP_KEY_VERSION);
    writer.string(group_id);
    writer.0
}

pub fn group_value(group: &RestoredGroup, now_ms: i64) -> Vec<u8> {
    let mut writer = Writer(Vec::new());
    writer.i16(GROUP_VALUE_VERSION);
    writer.string(group.protocol_type.as_deref().unwrap_or(""));
    writer.i32(group.generation_id);
    writer.nullable_string(group.protocol_name.as_deref());
    writer.nullable_string(group.leader.as_deref());
    writer.i64(now_ms);
    writer.i32(group.members.len() as i32);
    let protocol = group.protocol_name.clone().unwrap_or_default();
    for member in &group.members {
        writer.string(&member.member_id);
        writer.nullable_string(member.group_instance_id.as_deref());
        writer.string(&member.client_id);
        writer.string(&member.client_host);
        writer.i32(member.rebalance_timeout_ms as i32);
        writer.i32(member.session_timeout_ms as i32);
        let subscription = member
            .protocols
            .iter()
            .find(|(name, _)| *name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default();
        writer.bytes(&subscription);
        writer.bytes(&member.assignment);
    }
    writer.0
}

/// Decodes a record of `__consumer_offsets`; `None` for layouts this
/// version does not know (they are skipped, as Kafka skips them).
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<GroupRecord> {
    let mut reader = Reader(key);
    match reader.i16()? {
        0 | 1 => {
            let group_id = reader.string()?;
            let topic = reader.string()?;
            let partition = reader.i32()?;
            let committed = match value {
                None => None,
                Some(value) => Some(decode_offset_value(value)?),
            };
            Some(GroupRecord::Offset {
                group_id,
                topic,
                partition,
                committed,
            })
        }
        2 => {
            let group_id = reader.string()?;
            let group = match value {
                None => None,
                Some(value) => Some(decode_group_value(&group_id, value)?),
            };
            Some(GroupRecord::Metadata { group_id, group })
        }
        _ => None,
    }
}

fn decode_offset_value(value: &[u8]) -> Option<CommittedOffset> {
    let mut reader = Reader(value);
    let version = reader.i16()?;
    let offset = reader.i64()?;
    let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
    let metadata = reader.string()?;
    let commit_timestamp_ms = reader.i64()?;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(group_id: &str, value: &[u8]) -> Option<RestoredGroup> {
    let mut reader = Reader(value);
    let version = reader.i16()?;
    if version != GROUP_VALUE_VERSION {
        return None;
    }
    let protocol_type = reader.string()?;
    let generation_id = reader.i32()?;
    let protocol_name = reader.nullable_string()?;
    let leader = reader.nullable_string()?;
    let _state_timestamp = reader.i64()?;
    let count = reader.i32()?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = reader.string()?;
        let group_instance_id = reader.nullable_string()?;
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let rebalance_timeout_ms = reader.i32()? as i64;
        let session_timeout_ms = reader.i32()? as i64;
        let subscription = reader.bytes()?;
        let assignment = reader.bytes()?;
        let protocols = protocol_name
            .clone()
            .map(|name| vec![(name, subscription)])
            .unwrap_or_default();
        members.push(Member {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocols,
            assignment,
            heartbeat_deadline: 0,
            awaiting_join: None,
            awaiting_sync: None,
        });
    }
    Some(RestoredGroup {
        group_id: group_id.to_string(),
        generation_id,
        protocol_type: (!protocol_type.is_empty()).then_some(protocol_type),
        protocol_name,
        leader,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_javas_string_hash() {
        // "group".hashCode() == 98629247 in Java.
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn offsets_and_groups_round_trip() {
        let committed = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_000,
        };
        let key = offset_key("g", "orders", 7);
        assert_eq!(
            decode(&key, Some(&offset_value(&committed))),
            Some(GroupRecord::Offset {
                group_id: "g".into(),
                topic: "orders".into(),
                partition: 7,
                committed: Some(committed),
            })
        );
        let group = RestoredGroup {
            group_id: "g".into(),
            generation_id: 5,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: Some("m1".into()),
            members: vec![Member {
                member_id: "m1".into(),
                group_instance_id: Some("host-1".into()),
                client_id: "client".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                protocols: vec![("range".into(), b"sub".to_vec())],
                assignment: b"assigned".to_vec(),
                heartbeat_deadline: 0,
                awaiting_join: None,
                awaiting_sync: None,
            }],
        };
        let decoded = decode(&group_key("g"), Some(&group_value(&group, 9)));
        assert_eq!(
            decoded,
            Some(GroupRecord::Metadata {
                group_id: "g".into(),
                group: Some(group)
            })
        );
        assert_eq!(
            decode(&group_key("g"), None),
            Some(GroupRecord::Metadata {
                group_id: "g".into(),
                group: None
            })
        );
    }
}
