//! Where a new partition's replicas go: spread over the usable brokers so
//! that each holds about as many replicas, and leads about as many
//! partitions, as any other; replicas of one partition on different racks
//! where the brokers say their rack. Deterministic (ties go to the lower
//! broker id), so a simulation replays the same placements.

use std::collections::{BTreeMap, BTreeSet};

use strom_metadata::MetadataImage;

use crate::error::{ControllerError, ErrorKind};

#[derive(Debug, Default, Clone, Copy)]
struct Load {
    replicas: usize,
    leaders: usize,
}

/// Replica lists (preferred leader first) for `partitions` new partitions
/// of `replication_factor` replicas each.
pub fn place(
    image: &MetadataImage,
    partitions: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let mut load: BTreeMap<i32, Load> = image
        .brokers
        .values()
        .filter(|broker| broker.is_usable())
        .map(|broker| (broker.node_id, Load::default()))
        .collect();
    if replication_factor == 0 || replication_factor > load.len() {
        return Err(ControllerError::new(
            ErrorKind::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} cannot be reached: {} broker(s) are available; \
                 lower the replication factor or start more brokers",
                load.len()
            ),
        ));
    }
    for topic in image.topics.values() {
        for partition in &topic.partitions {
            for (position, replica) in partition.replicas.iter().enumerate() {
                if let Some(entry) = load.get_mut(replica) {
                    entry.replicas += 1;
                    entry.leaders += usize::from(position == 0);
                }
            }
        }
    }
    let rack = |node_id: i32| image.broker(node_id).and_then(|b| b.rack.clone());
    let mut placed = Vec::with_capacity(partitions);
    for _ in 0..partitions {
        let leader = *load
            .iter()
            .min_by_key(|(id, load)| (load.leaders, load.replicas, **id))
            .expect("at least replication_factor brokers")
            .0;
        let mut replicas = vec![leader];
        let mut racks: BTreeSet<Option<String>> = BTreeSet::from([rack(leader)]);
        while replicas.len() < replication_factor {
            let next = *load
                .iter()
                .filter(|(id, _)| !replicas.contains(id))
                .min_by_key(|(id, load)| {
                    let rack = rack(**id);
                    let same_rack = rack.is_some() && racks.contains(&rack);
                    (same_rack, load.replicas, **id)
                })
                .expect("enough brokers")
                .0;
            racks.insert(rack(next));
            replicas.push(next);
        }
        for (position, replica) in replicas.iter().enumerate() {
            let entry = load.get_mut(replica).expect("placed on a known broker");
            entry.replicas += 1;
            entry.leaders += usize::from(position == 0);
        }
        placed.push(replicas);
    }
    Ok(placed)
}
