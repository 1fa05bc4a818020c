//! The simulation's seeds: a fixed set in every run, and any one replayed
//! with `STROM_SIM_SEED=<seed> cargo test -p strom-sim`.

use strom_sim::Simulation;

const SEEDS: u64 = 300;
const STEPS: usize = 1_500;

fn run(seed: u64) -> strom_sim::Outcome {
    let result = std::panic::catch_unwind(|| Simulation::new(seed).run(STEPS));
    match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            eprintln!("simulation seed {seed} failed; replay it with STROM_SIM_SEED={seed} cargo test -p strom-sim");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn every_seed_keeps_the_invariants_and_heals() {
    if let Ok(seed) = std::env::var("STROM_SIM_SEED") {
        let outcome = run(seed.parse().expect("STROM_SIM_SEED is a number"));
        eprintln!("{outcome:?}");
        return;
    }
    let (mut elections, mut fencings) = (0, 0);
    for seed in 0..SEEDS {
        let outcome = run(seed);
        elections += outcome.elections;
        fencings += outcome.fencings;
    }
    eprintln!("{SEEDS} seeds x {STEPS} steps: {elections} elections, {fencings} fencings");
    // The faults must actually happen, or the run proves nothing.
    assert!(elections > SEEDS as usize * 5, "only {elections} elections");
    assert!(fencings > SEEDS as usize * 2, "only {fencings} fencings");
}
