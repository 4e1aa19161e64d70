//! Capture times of a live camera that stay monotonic and paced like real time when
//! the camera's clock (RTCP/NTP) or this machine's wall clock steps.
//!
//! Before this, a frame stamped earlier than the previous one got previous + 1 µs, so
//! after a backward step every frame was 1 µs apart until a restart: dwell never grew
//! and speeds came out at ~10⁵ m/s. Here each candidate time is compared with the time
//! projected from the previous frame and the monotonic clock (`Instant`, which does not
//! step):
//! - within `threshold` of the projection: taken as it is (jitter, drift);
//! - ahead by more (a forward step): taken, so the stamps follow the new time (the
//!   tracker sees a gap, as after a stall);
//! - behind by more (a backward step): the projection is used, and the offset is kept
//!   for the following frames, so stamps go on at real pace and never repeat or go
//!   back (a repeated time would give a repeated event id, which the stores drop as a
//!   duplicate). When the clock later steps back into line, the offset is dropped.
//!
//! Every step is reported once, with its size, for the metrics and `/v1/cameras`.

use std::time::Duration;

use time::OffsetDateTime;

/// A step of more than this between the source's clock and the projection is a jump.
pub const JUMP_THRESHOLD: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpDirection {
    Forward,
    Backward,
}

impl JumpDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Backward => "backward",
        }
    }
}

/// A step the clock made, as seen at one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jump {
    pub direction: JumpDirection,
    /// How far the source's time was from the projection (seconds, positive).
    pub by_s: f64,
}

#[derive(Debug, Clone)]
pub struct CaptureClock {
    threshold: time::Duration,
    /// The previous stamp and the monotonic time it was made at.
    last: Option<(OffsetDateTime, Duration)>,
    /// Added to the source's times after a backward step.
    offset: time::Duration,
    /// Where the previous candidate came from (`ntp`, `arrival`): a change of source is
    /// a re-anchor, not a step of either clock.
    source: &'static str,
}

impl Default for CaptureClock {
    fn default() -> Self {
        Self::new(JUMP_THRESHOLD)
    }
}

impl CaptureClock {
    pub fn new(threshold: Duration) -> Self {
        Self { threshold: time::Duration::try_from(threshold).unwrap_or(time::Duration::SECOND * 2), last: None, offset: time::Duration::ZERO, source: "" }
    }

    /// The stamp for a frame whose source (`source`: `ntp`, `arrival`) says `candidate`,
    /// received at monotonic time `mono` (any fixed origin, e.g. the source's start),
    /// and the jump it showed if any.
    pub fn stamp(&mut self, candidate: OffsetDateTime, mono: Duration, source: &'static str) -> (OffsetDateTime, Option<Jump>) {
        let switched = std::mem::replace(&mut self.source, source) != source;
        let Some((last_at, last_mono)) = self.last else {
            self.last = Some((candidate, mono));
            return (candidate, None);
        };
        let elapsed = time::Duration::try_from(mono.saturating_sub(last_mono)).unwrap_or(time::Duration::ZERO);
        let projected = last_at + elapsed;
        let near = |t: OffsetDateTime| (t - projected).abs() <= self.threshold;
        let adjusted = candidate + self.offset;
        let (at, jump) = if near(adjusted) {
            (adjusted, None)
        } else if near(candidate) {
            // Back in line after an earlier backward step.
            let by = self.offset;
            self.offset = time::Duration::ZERO;
            (candidate, Some(Jump { direction: JumpDirection::Forward, by_s: by.as_seconds_f64().abs() }))
        } else if candidate > projected {
            // A forward step past real time: followed.
            let by = adjusted - projected;
            self.offset = time::Duration::ZERO;
            (candidate, Some(Jump { direction: JumpDirection::Forward, by_s: by.as_seconds_f64() }))
        } else if adjusted > projected {
            // Part of an earlier backward step undone: still behind, a smaller offset.
            let by = adjusted - projected;
            self.offset = projected - candidate;
            (projected, Some(Jump { direction: JumpDirection::Forward, by_s: by.as_seconds_f64() }))
        } else if adjusted >= last_at - self.threshold {
            // Not a step: frames delivered late (a stall, then a burst) carry their own
            // earlier times, which are right.
            (adjusted, None)
        } else {
            let by = projected - adjusted;
            self.offset = projected - candidate;
            (projected, Some(Jump { direction: JumpDirection::Backward, by_s: by.as_seconds_f64() }))
        };
        // Never the same time twice, never backwards (jitter within the threshold).
        let at = at.max(last_at + time::Duration::MICROSECOND);
        self.last = Some((at, mono));
        (at, jump.filter(|_| !switched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1_700_000_000.0 + s)
    }

    fn secs(a: OffsetDateTime) -> f64 {
        (a - t(0.0)).as_seconds_f64()
    }

    #[test]
    fn a_backward_step_keeps_real_pace_and_a_later_correction_is_taken() {
        let mut c = CaptureClock::default();
        let mono = |s: f64| Duration::from_secs_f64(s);
        // 10 fps for 1 s, then the camera's clock steps back one hour.
        for i in 0..10 {
            assert_eq!(c.stamp(t(i as f64 * 0.1), mono(i as f64 * 0.1), "ntp"), (t(i as f64 * 0.1), None));
        }
        let (at, jump) = c.stamp(t(1.0 - 3600.0), mono(1.0), "ntp");
        assert_eq!(jump.map(|j| j.direction), Some(JumpDirection::Backward));
        assert!((jump.unwrap().by_s - 3600.0).abs() < 1e-6);
        assert!((secs(at) - 1.0).abs() < 1e-6, "{}", secs(at));
        // The next frames: 100 ms apart, as they really are (not 1 µs).
        let mut prev = at;
        for i in 11..40 {
            let (at, jump) = c.stamp(t(i as f64 * 0.1 - 3600.0), mono(i as f64 * 0.1), "ntp");
            assert_eq!(jump, None);
            assert!(((at - prev).as_seconds_f64() - 0.1).abs() < 1e-6);
            prev = at;
        }
        // The camera's clock is corrected: taken, reported as a forward step.
        let (at, jump) = c.stamp(t(4.0), mono(4.0), "ntp");
        assert_eq!(jump.map(|j| j.direction), Some(JumpDirection::Forward));
        assert!((secs(at) - 4.0).abs() < 1e-6);
        assert_eq!(c.stamp(t(4.1), mono(4.1), "ntp"), (t(4.1), None));
    }

    #[test]
    fn a_forward_step_is_followed_and_jitter_is_no_jump() {
        let mut c = CaptureClock::default();
        let mono = |s: f64| Duration::from_secs_f64(s);
        c.stamp(t(0.0), mono(0.0), "ntp");
        // Network jitter: 300 ms early, then late; monotonic, not a jump.
        let (a, j) = c.stamp(t(0.1 - 0.3), mono(0.1), "ntp");
        assert_eq!(j, None);
        assert!(a > t(0.0));
        assert_eq!(c.stamp(t(0.9), mono(0.5), "ntp").1, None);
        let (at, j) = c.stamp(t(600.0), mono(0.6), "ntp");
        assert_eq!(j.map(|j| j.direction), Some(JumpDirection::Forward));
        assert_eq!(at, t(600.0));
        assert_eq!(c.stamp(t(600.1), mono(0.7), "ntp"), (t(600.1), None));
        // A stall: no frames for 30 s of monotonic time, the source's time moved with it.
        assert_eq!(c.stamp(t(630.1), mono(30.7), "ntp"), (t(630.1), None));
    }

    #[test]
    fn frames_delivered_late_keep_their_own_times_and_leave_no_offset() {
        let mut c = CaptureClock::default();
        let mono = |s: f64| Duration::from_secs_f64(s);
        for i in 0..10 {
            c.stamp(t(i as f64 * 0.1), mono(i as f64 * 0.1), "ntp");
        }
        // Delivery stalls 2.9 s, then the held frames arrive at once with their times.
        for i in 10..40 {
            let (at, j) = c.stamp(t(i as f64 * 0.1), mono(0.9 + 2.9 + (i - 10) as f64 * 0.001), "ntp");
            assert_eq!((at, j), (t(i as f64 * 0.1), None), "frame {i}");
        }
        // Afterwards the camera's times are taken as they are: no stamp in the future.
        assert_eq!(c.stamp(t(4.0), mono(4.0), "ntp"), (t(4.0), None));
    }

    #[test]
    fn a_partial_correction_is_one_step_and_a_source_switch_none() {
        let mut c = CaptureClock::default();
        let mono = |s: f64| Duration::from_secs_f64(s);
        c.stamp(t(0.0), mono(0.0), "ntp");
        assert_eq!(c.stamp(t(0.1 - 3600.0), mono(0.1), "ntp").1.map(|j| j.direction), Some(JumpDirection::Backward));
        // Half of the hour is corrected: one forward step of 1800 s, still at real pace.
        let (at, j) = c.stamp(t(0.2 - 1800.0), mono(0.2), "ntp");
        assert!(j.is_some_and(|j| j.direction == JumpDirection::Forward && (j.by_s - 1800.0).abs() < 1e-3), "{j:?}");
        assert!((secs(at) - 0.2).abs() < 1e-6);
        let (at, j) = c.stamp(t(0.3 - 1800.0), mono(0.3), "ntp");
        assert_eq!(j, None, "not counted a second time");
        assert!((secs(at) - 0.3).abs() < 1e-6);

        // Arrival time until RTCP sender reports come, then a camera clock 3 s behind.
        let mut c = CaptureClock::default();
        c.stamp(t(0.0), mono(0.0), "arrival");
        let (at, j) = c.stamp(t(0.1 - 3.0), mono(0.1), "ntp");
        assert_eq!(j, None, "a switch of time source is no jump");
        assert!((secs(at) - 0.1).abs() < 1e-6);
        assert_eq!(c.stamp(t(0.2 - 3.0), mono(0.2), "ntp").1, None);
        // A real step later is still reported.
        assert!(c.stamp(t(0.3 - 3.0 - 60.0), mono(0.3), "ntp").1.is_some());
    }

    #[test]
    fn stamps_never_repeat_or_go_back() {
        let mut c = CaptureClock::default();
        let mut prev = None;
        for i in 0..200u64 {
            // A source that sends the same time over and over, and steps back now and then.
            let cand = t(if i % 50 == 49 { -100.0 } else { 5.0 });
            let (at, _) = c.stamp(cand, Duration::from_millis(i * 40), "ntp");
            if let Some(p) = prev {
                assert!(at > p, "frame {i}");
            }
            prev = Some(at);
        }
    }
}
