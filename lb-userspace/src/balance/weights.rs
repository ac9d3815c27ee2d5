//! Telemetry-driven ring weights: what each policy aims a backend's weight factor at, how a
//! factor moves toward its target (damped, step-limited), and slow-start. Pure functions; the
//! controller feeds them data-path and agent telemetry and owns the resulting state.
use std::time::Duration;

use crate::model::config::{Policy, WeightsConfig};

/// Smallest and largest weight factor a policy may set (factor 1 = the configured weight).
pub const FACTOR_RANGE: (f64, f64) = (0.05, 4.0);

/// Share of its weight a backend starts slow-start with.
pub const SLOW_START_FLOOR: f64 = 0.1;

/// Telemetry of one backend.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Telemetry {
    /// Configured weight.
    pub weight: u32,
    /// Open flows in the connection table.
    pub active_flows: u64,
    /// Agent-reported CPU use, as a share of the VM's limit (None: no report).
    pub cpu: Option<f64>,
    /// Agent-reported capacity in cores (None: no report).
    pub capacity: Option<f64>,
}

fn clamp(f: f64) -> f64 {
    f.clamp(FACTOR_RANGE.0, FACTOR_RANGE.1)
}

/// The factor `policy` aims each backend's configured weight at.
pub fn targets(policy: Policy, backends: &[Telemetry]) -> Vec<f64> {
    match policy {
        Policy::Static => vec![1.0; backends.len()],
        // Weight w × 1/w = 1 for everyone.
        Policy::RoundRobin => backends
            .iter()
            .map(|b| 1.0 / f64::from(b.weight.max(1)))
            .collect(),
        Policy::LeastConn => {
            let mean = backends.iter().map(|b| b.active_flows as f64).sum::<f64>()
                / backends.len().max(1) as f64;
            backends
                .iter()
                .map(|b| clamp((mean + 1.0) / (b.active_flows as f64 + 1.0)))
                .collect()
        }
        Policy::Resource => {
            // Spare cores per unit of configured weight; backends without a report count as
            // average.
            let spare: Vec<Option<f64>> = backends
                .iter()
                .map(|b| {
                    let (cpu, cap) = (b.cpu?, b.capacity?);
                    Some(cap * (1.0 - cpu).max(FACTOR_RANGE.0))
                })
                .collect();
            let known: Vec<f64> = spare.iter().flatten().copied().collect();
            if known.is_empty() {
                return vec![1.0; backends.len()];
            }
            let mean = known.iter().sum::<f64>() / known.len() as f64;
            spare
                .iter()
                .map(|s| s.map_or(1.0, |s| clamp(s / mean.max(1e-9))))
                .collect()
        }
    }
}

/// Weight of a new measurement in a backend's smoothed target (an exponential moving average
/// over telemetry rounds): noise shrinks to 0.42 of its spread, a real shift is half seen in
/// two rounds.
pub const SMOOTHING: f64 = 0.3;

/// Folds a backend's `measured` target into its `smoothed` one (none: its first round) and
/// returns the new smoothed target and what its `factor` should move toward: the smoothed
/// target, or the factor itself while the two are within `dead_band` of it (noise).
pub fn settle(smoothed: Option<f64>, measured: f64, factor: f64, dead_band: f64) -> (f64, f64) {
    let s = smoothed.map_or(measured, |s| s + SMOOTHING * (measured - s));
    let aim = if (s - factor).abs() <= dead_band * factor {
        factor
    } else {
        s
    };
    (s, aim)
}

/// One update of a factor toward its target: `damping` of the gap, at most `max_step`.
pub fn step(current: f64, target: f64, cfg: &WeightsConfig) -> f64 {
    let delta = ((target - current) * cfg.damping).clamp(-cfg.max_step, cfg.max_step);
    clamp(current + delta)
}

/// Slow-start share of the weight a backend has `since` coming up: from
/// [`SLOW_START_FLOOR`] to 1 over `ramp` (1 at once without a ramp).
pub fn slow_start(since: Duration, ramp: Duration) -> f64 {
    if ramp.is_zero() || since >= ramp {
        return 1.0;
    }
    SLOW_START_FLOOR + (1.0 - SLOW_START_FLOOR) * since.as_secs_f64() / ramp.as_secs_f64()
}

/// Resolution of ring weights: factors are applied to `weight × SCALE`, so a uniform scale
/// leaves Maglev's table unchanged while fractions of a weight still count.
pub const SCALE: f64 = 100.0;

/// The ring weight of a backend: configured weight × agent percentage × factor × slow-start,
/// at [`SCALE`]; at least 1 while all of them are above zero.
pub fn ring_weight(weight: u32, percent: u32, factor: f64, slow: f64) -> u32 {
    if weight == 0 || percent == 0 {
        return 0;
    }
    let w = f64::from(weight) * f64::from(percent) / 100.0 * factor * slow * SCALE;
    (w.round() as u32).max(1)
}

/// Whether a move from `old` to `new` ring weights is worth a rebuild: some weight changed
/// by at least `min_change` of its old value, or went to or from zero.
pub fn worth_rebuild(old: &[u32], new: &[u32], min_change: f64) -> bool {
    old.len() != new.len()
        || old.iter().zip(new).any(|(&o, &n)| {
            o != n
                && ((o == 0) != (n == 0)
                    || (f64::from(o) - f64::from(n)).abs() >= min_change * f64::from(o))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(active: u64) -> Telemetry {
        Telemetry {
            weight: 1,
            active_flows: active,
            ..Default::default()
        }
    }

    #[test]
    fn round_robin_evens_out_configured_weights() {
        let b = [Telemetry { weight: 4, ..t(0) }, t(0)];
        let f = targets(Policy::RoundRobin, &b);
        assert_eq!(
            ring_weight(4, 100, f[0], 1.0),
            ring_weight(1, 100, f[1], 1.0)
        );
        assert_eq!(targets(Policy::Static, &b), vec![1.0, 1.0]);
    }

    #[test]
    fn least_conn_favours_the_backend_with_fewer_active_flows() {
        let f = targets(Policy::LeastConn, &[t(100), t(0), t(50)]);
        assert!(f[1] > f[2] && f[2] > f[0], "{f:?}");
        assert_eq!(targets(Policy::LeastConn, &[t(7), t(7)]), vec![1.0, 1.0]);
    }

    #[test]
    fn resource_follows_spare_capacity() {
        let vm = |cpu, cap| Telemetry {
            cpu: Some(cpu),
            capacity: Some(cap),
            ..t(0)
        };
        // Same load, half the cores: half the spare capacity per unit of weight, or less.
        let f = targets(Policy::Resource, &[vm(0.2, 1.0), vm(0.4, 0.5)]);
        assert!(f[1] < 0.5 * f[0], "{f:?}");
        // Without reports nothing moves.
        assert_eq!(targets(Policy::Resource, &[t(0), t(0)]), vec![1.0, 1.0]);
        // Spare cores 0.5 and 0.25 (mean 0.375); a backend without a report counts as average.
        let f = targets(Policy::Resource, &[vm(0.5, 1.0), vm(0.75, 1.0), t(0)]);
        for (got, want) in f.iter().zip([4.0 / 3.0, 2.0 / 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{f:?}");
        }
    }

    #[test]
    fn settling_smooths_and_holds_a_factor_inside_its_dead_band() {
        // 0.3 of the way from the smoothed target to the measurement; outside the band the
        // factor aims at it.
        let (s, aim) = settle(Some(1.0), 2.0, 1.0, 0.2);
        assert!(
            (s - 1.3).abs() < 1e-9 && (aim - 1.3).abs() < 1e-9,
            "{s} {aim}"
        );
        // The band is relative to the factor: 1.7 is within 20% of 2.0, so 2.0 stays.
        assert_eq!(settle(None, 1.7, 2.0, 0.2), (1.7, 2.0));
        assert_eq!(settle(None, 1.5, 2.0, 0.2), (1.5, 1.5));
    }

    #[test]
    fn steps_are_damped_and_bounded() {
        let cfg = WeightsConfig {
            damping: 0.5,
            max_step: 0.3,
            ..Default::default()
        };
        assert!((step(1.0, 1.4, &cfg) - 1.2).abs() < 1e-9, "half the gap");
        assert!(
            (step(1.0, 3.0, &cfg) - 1.3).abs() < 1e-9,
            "at most max_step"
        );
        assert!(
            (step(0.06, 0.0, &cfg) - FACTOR_RANGE.0).abs() < 1e-9,
            "floored"
        );
        let mut f = 1.0;
        for _ in 0..40 {
            f = step(f, 2.0, &cfg);
        }
        assert!((f - 2.0).abs() < 1e-6, "converges: {f}");
    }

    /// Four backends whose measured targets wander ±20% around 1 (a steady load read through
    /// agents' one-second CPU windows) for 60 rounds of 1 s: at most one rebuild per 10 s
    /// (without the dead band, 18); then one backend's target doubles (a real shift) and its
    /// factor covers 40% of the way within 5 rounds.
    #[test]
    fn noise_at_steady_load_stays_in_the_dead_band_and_a_shift_does_not() {
        let cfg = WeightsConfig::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut noise = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 4001) as f64 / 10_000.0 - 0.2
        };
        let mut factor = [1.0f64; 4];
        let mut smoothed = [None::<f64>; 4];
        let ring = |f: &[f64; 4]| f.map(|f| ring_weight(1, 100, f, 1.0)).to_vec();
        let mut live = ring(&factor);
        let mut round = |shift: f64, factor: &mut [f64; 4], live: &mut Vec<u32>| {
            for i in 0..4 {
                let measured = if i == 0 { shift } else { 1.0 } + noise();
                let (s, aim) = settle(smoothed[i], measured, factor[i], cfg.dead_band);
                smoothed[i] = Some(s);
                factor[i] = step(factor[i], aim, &cfg);
            }
            let next = ring(factor);
            let rebuilt = worth_rebuild(live, &next, cfg.min_change);
            if rebuilt {
                *live = next;
            }
            rebuilt
        };
        let rebuilds = (0..60)
            .filter(|_| round(1.0, &mut factor, &mut live))
            .count();
        assert!(rebuilds <= 6, "{rebuilds} rebuilds in 60 s of steady load");
        for _ in 0..5 {
            round(2.0, &mut factor, &mut live);
        }
        assert!(
            factor[0] >= 1.5,
            "a doubled target is half met in 5 s: {}",
            factor[0]
        );
    }

    #[test]
    fn slow_start_ramps_from_the_floor_to_full() {
        let ramp = Duration::from_secs(10);
        assert_eq!(slow_start(Duration::ZERO, ramp), SLOW_START_FLOOR);
        let mid = slow_start(Duration::from_secs(5), ramp);
        assert!((mid - 0.55).abs() < 1e-9, "{mid}");
        assert_eq!(slow_start(Duration::from_secs(11), ramp), 1.0);
        assert_eq!(slow_start(Duration::ZERO, Duration::ZERO), 1.0);
    }

    #[test]
    fn ring_weights_and_rebuild_threshold() {
        assert_eq!(ring_weight(2, 100, 1.0, 1.0), 200);
        assert_eq!(ring_weight(2, 50, 1.0, 0.5), 50);
        assert_eq!(ring_weight(0, 100, 1.0, 1.0), 0, "drained stays drained");
        assert_eq!(
            ring_weight(1, 100, 0.001, 0.1),
            1,
            "never rounds to a drain"
        );
        assert!(!worth_rebuild(&[100, 100], &[103, 98], 0.05));
        assert!(worth_rebuild(&[100, 100], &[106, 100], 0.05));
        assert!(worth_rebuild(&[100, 0], &[100, 1], 0.5));
        assert!(!worth_rebuild(&[100, 0], &[100, 0], 0.0), "nothing moved");
    }
}
