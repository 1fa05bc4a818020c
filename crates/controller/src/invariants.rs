//! What every image the controller produces must satisfy. Checked by the
//! controller's tests after every decision and by the simulation after
//! every step.

use strom_metadata::{MetadataImage, NO_LEADER};

/// The rules a metadata image breaks, one line each (empty when it keeps
/// them all).
pub fn violations(image: &MetadataImage) -> Vec<String> {
    let mut broken = Vec::new();
    for topic in image.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let at = format!("{}-{index}", topic.name);
            if let Some(outside) = partition
                .isr
                .iter()
                .chain(&partition.eligible_leader_replicas)
                .find(|member| !partition.replicas.contains(member))
            {
                broken.push(format!(
                    "{at}: broker {outside} is in the ISR or eligible but not a replica"
                ));
            }
            if let Some(unusable) = partition.isr.iter().find(|m| !image.is_usable(**m)) {
                broken.push(format!(
                    "{at}: broker {unusable} is in the ISR but fenced or shutting down"
                ));
            }
            if partition.leader != NO_LEADER && !partition.isr.contains(&partition.leader) {
                broken.push(format!(
                    "{at}: leader {} is not in the ISR",
                    partition.leader
                ));
            }
            if !partition.isr.is_empty() && !partition.eligible_leader_replicas.is_empty() {
                broken.push(format!(
                    "{at}: the ISR {:?} and the eligible leaders {:?} are both set",
                    partition.isr, partition.eligible_leader_replicas
                ));
            }
            for (name, members) in [
                ("ISR", &partition.isr),
                ("eligible leaders", &partition.eligible_leader_replicas),
            ] {
                let mut distinct = members.clone();
                distinct.sort_unstable();
                distinct.dedup();
                if distinct.len() != members.len() {
                    broken.push(format!("{at}: the {name} {members:?} repeat a broker"));
                }
            }
            let mut replicas = partition.replicas.clone();
            replicas.sort_unstable();
            replicas.dedup();
            if replicas.len() != partition.replicas.len() || replicas.is_empty() {
                broken.push(format!(
                    "{at}: replicas {:?} are empty or repeat a broker",
                    partition.replicas
                ));
            }
        }
    }
    broken
}
