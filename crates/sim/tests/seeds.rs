//! The simulation's seeds: a fixed set in every run, and any one replayed
//! with `STROM_SIM_SEED=<seed> cargo test -p strom-sim`.

use strom_sim::Simulation;

const SEEDS: u64 = 300;
const STEPS: usize = 1_500;

#[test]
fn every_seed_keeps_the_invariants_and_heals() {
    let outcomes = strom_sim::run_seeds(SEEDS, "seeds", |seed| Simulation::new(seed).run(STEPS));
    if outcomes.is_empty() {
        return; // one seed replayed
    }
    let elections: usize = outcomes.iter().map(|o| o.elections).sum();
    let fencings: usize = outcomes.iter().map(|o| o.fencings).sum();
    eprintln!("{SEEDS} seeds x {STEPS} steps: {elections} elections, {fencings} fencings");
    // The faults must actually happen, or the run proves nothing.
    assert!(elections > SEEDS as usize * 5, "only {elections} elections");
    assert!(fencings > SEEDS as usize * 2, "only {fencings} fencings");
}
