//! Speed and heading of tracks in world space.
//!
//! Foot points jitter by tens of centimetres from frame to frame (box edges, the
//! homography, drone telemetry), so a two-point difference turns a person standing still
//! into a walker. The velocity is instead the least-squares slope of x(t) and y(t) over a
//! sliding window: every sample counts, noise averages out as 1/√n, and a constant
//! velocity is recovered exactly.

use std::collections::{HashMap, VecDeque};

/// Positions over this window give the velocity (seconds).
pub const WINDOW_S: f64 = 2.0;
/// No estimate until a track has been placed over at least this long (seconds).
pub const MIN_SPAN_S: f64 = 0.5;
/// …and at least this many times.
pub const MIN_SAMPLES: usize = 3;
/// Below this speed (m/s) the heading is noise, and not reported.
pub const STILL_MPS: f64 = 0.3;

/// Speed (m/s) and heading (degrees clockwise from north, +y; east = 90).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Motion {
    pub speed_mps: Option<f64>,
    pub heading_deg: Option<f64>,
}

/// Per-track position history of one camera.
#[derive(Debug, Clone)]
pub struct MotionEstimator {
    window_s: f64,
    tracks: HashMap<u64, VecDeque<(f64, [f64; 2])>>,
}

impl Default for MotionEstimator {
    fn default() -> Self {
        Self::new(WINDOW_S)
    }
}

/// One track's timed positions: `(t, [x, y])`, oldest first.
type History = Vec<(f64, [f64; 2])>;

/// Every track's timed positions in the window (the window comes from the code), by id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MotionState {
    tracks: Vec<(u64, History)>,
}

impl MotionEstimator {
    pub fn new(window_s: f64) -> Self {
        Self { window_s, tracks: HashMap::new() }
    }

    /// A copy of the position history, ordered by track id.
    pub fn state(&self) -> MotionState {
        let mut tracks: Vec<(u64, History)> = self.tracks.iter().map(|(id, q)| (*id, q.iter().copied().collect())).collect();
        tracks.sort_by_key(|t| t.0);
        MotionState { tracks }
    }

    /// Continues from a saved history.
    pub fn restore(&mut self, s: MotionState) {
        self.tracks = s.tracks.into_iter().map(|(id, q)| (id, q.into_iter().collect())).collect();
    }

    /// Adds track `id` at world position `p` (metres) at time `t` (seconds) and returns
    /// its smoothed motion.
    pub fn update(&mut self, id: u64, t: f64, p: [f64; 2]) -> Motion {
        let q = self.tracks.entry(id).or_default();
        // Time went backwards (a restarted source): the history no longer applies.
        if q.back().is_some_and(|(last, _)| t < *last) {
            q.clear();
        }
        q.push_back((t, p));
        while q.front().is_some_and(|(t0, _)| t - t0 > self.window_s) {
            q.pop_front();
        }
        let span = t - q.front().map_or(t, |(t0, _)| *t0);
        if span < MIN_SPAN_S || q.len() < MIN_SAMPLES {
            return Motion::default();
        }
        let Some([vx, vy]) = velocity(q.iter().copied()) else { return Motion::default() };
        let speed = vx.hypot(vy);
        let heading = (speed >= STILL_MPS).then(|| vx.atan2(vy).to_degrees().rem_euclid(360.0));
        Motion { speed_mps: Some(speed), heading_deg: heading }
    }

    /// Forgets tracks not placed within the window before `now`.
    pub fn prune(&mut self, now: f64) {
        let w = self.window_s;
        self.tracks.retain(|_, q| q.back().is_some_and(|(last, _)| now - last <= w));
    }

    pub fn tracked(&self) -> usize {
        self.tracks.len()
    }
}

/// Least-squares velocity `[vx, vy]` of timed positions; `None` when all share one time.
pub fn velocity(samples: impl Iterator<Item = (f64, [f64; 2])> + Clone) -> Option<[f64; 2]> {
    let (mut n, mut st, mut sx, mut sy) = (0.0, 0.0, 0.0, 0.0);
    for (t, p) in samples.clone() {
        n += 1.0;
        st += t;
        sx += p[0];
        sy += p[1];
    }
    if n < 2.0 {
        return None;
    }
    let (tm, xm, ym) = (st / n, sx / n, sy / n);
    let (mut stt, mut stx, mut sty) = (0.0, 0.0, 0.0);
    for (t, p) in samples {
        let dt = t - tm;
        stt += dt * dt;
        stx += dt * (p[0] - xm);
        sty += dt * (p[1] - ym);
    }
    (stt > 1e-12).then(|| [stx / stt, sty / stt])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic Gaussian noise (Box–Muller over a 64-bit LCG).
    struct Noise(u64);
    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn gauss(&mut self, sigma: f64) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }

    fn angle_diff(a: f64, b: f64) -> f64 {
        ((a - b + 180.0).rem_euclid(360.0) - 180.0).abs()
    }

    #[test]
    fn constant_velocity_gives_speed_and_heading_despite_noise() {
        // 1.4 m/s towards 30° (north-north-east), 10 fps, 5 cm of foot-point jitter.
        let (speed, heading) = (1.4f64, 30.0f64);
        let (vx, vy) = (speed * heading.to_radians().sin(), speed * heading.to_radians().cos());
        let mut noise = Noise(7);
        let mut m = MotionEstimator::default();
        let mut last = Motion::default();
        let mut checked = 0;
        for i in 0..100 {
            let t = 1000.0 + i as f64 * 0.1;
            let p = [5.0 + vx * (t - 1000.0) + noise.gauss(0.05), -3.0 + vy * (t - 1000.0) + noise.gauss(0.05)];
            last = m.update(42, t, p);
            if i >= 20 {
                let s = last.speed_mps.unwrap();
                let h = last.heading_deg.unwrap();
                assert!((s - speed).abs() <= 0.05 * speed, "frame {i}: speed {s}");
                assert!(angle_diff(h, heading) <= 3.0, "frame {i}: heading {h}");
                checked += 1;
            }
        }
        assert_eq!(checked, 80);
        assert!(last.speed_mps.is_some());
    }

    #[test]
    fn exact_constant_velocity_is_recovered_exactly() {
        let mut m = MotionEstimator::default();
        let mut out = Motion::default();
        for i in 0..15 {
            let t = i as f64 * 0.2;
            out = m.update(1, t, [-2.0 * t, 0.0]);
        }
        assert!((out.speed_mps.unwrap() - 2.0).abs() < 1e-9);
        assert!((out.heading_deg.unwrap() - 270.0).abs() < 1e-6, "{out:?}");
    }

    #[test]
    fn stationary_noisy_track_is_nearly_still_without_a_heading() {
        let mut noise = Noise(99);
        let mut m = MotionEstimator::default();
        let mut worst: f64 = 0.0;
        for i in 0..200 {
            let t = i as f64 * 0.1;
            let out = m.update(3, t, [10.0 + noise.gauss(0.15), 20.0 + noise.gauss(0.15)]);
            if i >= 20 {
                let s = out.speed_mps.unwrap();
                worst = worst.max(s);
                if s < STILL_MPS {
                    assert_eq!(out.heading_deg, None);
                }
            }
        }
        // A two-frame difference would read ≈ 0.15·√2·√2 / 0.1 ≈ 3 m/s here.
        assert!(worst < 0.25, "worst speed {worst}");
    }

    #[test]
    fn no_estimate_before_half_a_second_and_history_is_bounded() {
        let mut m = MotionEstimator::default();
        assert_eq!(m.update(5, 0.0, [0.0, 0.0]), Motion::default());
        assert_eq!(m.update(5, 0.2, [0.2, 0.0]), Motion::default());
        assert_eq!(m.update(5, 0.4, [0.4, 0.0]), Motion::default());
        assert!(m.update(5, 0.6, [0.6, 0.0]).speed_mps.is_some());
        for i in 4..200 {
            m.update(5, i as f64 * 0.2, [0.0, 0.0]);
        }
        assert!(m.tracks[&5].len() <= 11);
        m.prune(100.0);
        assert_eq!(m.tracked(), 0);
    }

    #[test]
    fn time_going_backwards_restarts_the_history() {
        let mut m = MotionEstimator::default();
        for i in 0..10 {
            m.update(9, 50.0 + i as f64 * 0.1, [i as f64, 0.0]);
        }
        assert_eq!(m.update(9, 1.0, [0.0, 0.0]), Motion::default());
        assert_eq!(m.tracks[&9].len(), 1);
    }

    #[test]
    fn velocity_needs_two_distinct_times() {
        assert_eq!(velocity([(1.0, [0.0, 0.0])].into_iter()), None);
        assert_eq!(velocity([(1.0, [0.0, 0.0]), (1.0, [1.0, 0.0])].into_iter()), None);
        assert_eq!(velocity([(0.0, [0.0, 0.0]), (2.0, [1.0, -4.0])].into_iter()), Some([0.5, -2.0]));
    }
}
