//! Settings shared by the benches.

use std::time::Duration;

use criterion::Criterion;

/// Criterion settings kept modest: the benchmark machine has two cores and
/// is shared, so each benchmark warms up for 1 s and measures for 3 s.
/// Command-line options (`--measurement-time`, `--sample-size`, …) still
/// override these, since `criterion_group!` applies them afterwards.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}
