//! The replication simulation's seeds: a fixed set in every run, and any
//! one replayed with `STROM_SIM_SEED=<seed> cargo test -p strom-sim --test
//! replication_seeds` (`STROM_SIM_TRACE=1` prints every step).

use strom_sim::replication::ReplicationSimulation;

const SEEDS: u64 = 300;
const STEPS: usize = 2_000;

#[test]
fn every_seed_keeps_the_committed_prefix_on_every_replica_and_heals() {
    let outcomes = strom_sim::run_seeds(SEEDS, "replication_seeds", |seed| {
        ReplicationSimulation::new(seed).run(STEPS)
    });
    if outcomes.is_empty() {
        return; // one seed replayed
    }
    let sum = |field: fn(&strom_sim::replication::ReplicationOutcome) -> usize| -> usize {
        outcomes.iter().map(field).sum()
    };
    let (acknowledged, elections, truncations, crashes) = (
        sum(|o| o.acknowledged),
        sum(|o| o.elections),
        sum(|o| o.truncations),
        sum(|o| o.crashes),
    );
    eprintln!("{SEEDS} seeds x {STEPS} steps: {acknowledged} records acknowledged, {elections} elections, {truncations} truncations, {crashes} crashes");
    // The faults and the traffic must actually happen, or the run proves nothing.
    let seeds = SEEDS as usize;
    assert!(
        acknowledged > seeds * 20,
        "only {acknowledged} records acknowledged"
    );
    assert!(elections > seeds * 3, "only {elections} elections");
    assert!(truncations > seeds / 2, "only {truncations} truncations");
    assert!(crashes > seeds * 2, "only {crashes} crashes");
}
