//! What the history benchmarks share: their knobs and the synthetic plant's values.

/// A knob from the environment, or its default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value of `metric` at `step`: distinct per metric, moving every step.
pub fn value_of(metric: u64, step: u64) -> f64 {
    (metric * 31 + step) as f64 * 0.25
}
