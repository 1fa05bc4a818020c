//! KIP-430 authorized operations: what a client may do with a resource, as
//! the bit field Kafka puts in Metadata, DescribeCluster, DescribeGroups,
//! ConsumerGroupDescribe and DescribeTopicPartitions.
//!
//! Strom has no authorizer, and Kafka without one allows every operation:
//! the field holds every operation Kafka supports for the resource type (its
//! `AclEntry.supportedOperations`), bit `n` standing for the ACL operation
//! with code `n`. When a response carries no answer because the client did
//! not ask, the field keeps the schema's default, `i32::MIN`.

/// Kafka's ACL operation codes (`AclOperation`).
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// The resources whose operations responses report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Topic,
    Group,
    Cluster,
}

impl Resource {
    /// The operations Kafka supports on this resource type.
    fn operations(self) -> &'static [u8] {
        match self {
            Resource::Topic => &[
                READ,
                WRITE,
                CREATE,
                DESCRIBE,
                DELETE,
                ALTER,
                DESCRIBE_CONFIGS,
                ALTER_CONFIGS,
            ],
            Resource::Group => &[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS],
            Resource::Cluster => &[
                CREATE,
                CLUSTER_ACTION,
                DESCRIBE_CONFIGS,
                ALTER_CONFIGS,
                IDEMPOTENT_WRITE,
                ALTER,
                DESCRIBE,
            ],
        }
    }
}

/// The operations the client may perform on `resource`, as Kafka's bit
/// field. With no authorizer: all that the resource type supports.
pub fn authorized_operations(resource: Resource) -> i32 {
    resource
        .operations()
        .iter()
        .fold(0, |bits, operation| bits | 1 << operation)
}

/// The field's value when the client did not ask for it.
pub const NOT_REQUESTED: i32 = i32::MIN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_are_kafkas_for_a_broker_without_an_authorizer() {
        // The values a Kafka broker without an authorizer reports.
        assert_eq!(authorized_operations(Resource::Topic), 3576);
        assert_eq!(authorized_operations(Resource::Group), 3400);
        assert_eq!(authorized_operations(Resource::Cluster), 8096);
    }
}
