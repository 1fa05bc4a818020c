//! The replication simulation's seeds: a fixed set in every run, and any
//! one replayed with `STROM_SIM_SEED=<seed> cargo test -p strom-sim`.

use strom_sim::replication::{ReplicationOutcome, ReplicationSimulation};

const SEEDS: u64 = 300;
const STEPS: usize = 2_000;

fn run(seed: u64) -> ReplicationOutcome {
    let result = std::panic::catch_unwind(|| ReplicationSimulation::new(seed).run(STEPS));
    match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            eprintln!("replication simulation seed {seed} failed; replay it with STROM_SIM_SEED={seed} cargo test -p strom-sim --test replication_seeds");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn every_seed_keeps_the_committed_prefix_on_every_replica_and_heals() {
    if let Ok(seed) = std::env::var("STROM_SIM_SEED") {
        let outcome = run(seed.parse().expect("STROM_SIM_SEED is a number"));
        eprintln!("{outcome:?}");
        return;
    }
    let mut total = ReplicationOutcome::default();
    for seed in 0..SEEDS {
        let outcome = run(seed);
        total.acknowledged += outcome.acknowledged;
        total.elections += outcome.elections;
        total.truncations += outcome.truncations;
        total.crashes += outcome.crashes;
    }
    eprintln!("{SEEDS} seeds x {STEPS} steps: {total:?}");
    // The faults and the traffic must actually happen, or the run proves nothing.
    let seeds = SEEDS as usize;
    assert!(
        total.acknowledged > seeds * 20,
        "only {} records acknowledged",
        total.acknowledged
    );
    assert!(
        total.elections > seeds * 3,
        "only {} elections",
        total.elections
    );
    assert!(
        total.truncations > seeds / 2,
        "only {} truncations",
        total.truncations
    );
    assert!(total.crashes > seeds * 2, "only {} crashes", total.crashes);
}
