//! When a live stream that ended is tried again: the decision, apart from GStreamer.
//!
//! After a failed run the source probes the server ([`super::probe`]):
//! - **The server does not answer** (refused, unreachable, frozen, not serving the
//!   path): no rebuild at all. The source probes every [`PROBE_INTERVAL`] and rebuilds
//!   the moment the server answers, however long the outage was. The backoff is reset:
//!   the server that came back is a new situation.
//! - **The server answers** (or the scheme has no probe) and the stream stalled or
//!   ended: rebuild after a backoff of 0.5 s, then 1 s ([`SHORT_CAP`]), so a server
//!   that answers but sends no media gets one session per `stall_timeout + 1 s`, and
//!   its media is picked up within ~1 s (plus a keyframe) of coming back.
//! - **The server answers but the pipeline fails** (wrong credentials, no decoder for
//!   the codec, a refused transport): a persistent fault. The backoff doubles up to
//!   [`LONG_CAP`], so a misconfigured camera costs one attempt per 30 s, not a flood.
//!
//! Frames flowing in a run reset the backoff.

use std::time::Duration;

use super::probe::ProbeOutcome;

pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before rebuilding a stream whose server answers but that stalled
/// or ended: bounds how late media that resumes is picked up.
pub const SHORT_CAP: Duration = Duration::from_secs(1);
/// The longest wait before rebuilding after pipeline errors against a server that
/// answers (a persistent fault), or without a probe after an error.
pub const LONG_CAP: Duration = Duration::from_secs(30);
/// Between probes of a server that does not answer: the most a returning camera waits
/// to be noticed, and one TCP connection attempt per camera on a dead host.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnded {
    Error,
    Stall,
    Eos,
}

impl RunEnded {
    /// `argus_source_restarts_total{reason}`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Stall => "stall",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Rebuild the pipeline after this long.
    Rebuild { after: Duration },
    /// Probe every [`PROBE_INTERVAL`]; rebuild as soon as the server answers.
    WaitForServer,
}

#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self { backoff: MIN_BACKOFF }
    }
}

impl Reconnect {
    /// What to do after a run that ended as `ended`; `probe` is what the probe right
    /// after it found (`None`: this scheme has no probe).
    pub fn after_run(&mut self, ended: RunEnded, frames_flowed: bool, probe: Option<&ProbeOutcome>) -> Next {
        if frames_flowed {
            self.backoff = MIN_BACKOFF;
        }
        if probe.is_some_and(|p| !p.is_ready()) {
            self.backoff = MIN_BACKOFF;
            return Next::WaitForServer;
        }
        // The server answers (or cannot be asked), yet the pipeline failed: persistent.
        let cap = if ended == RunEnded::Error { LONG_CAP } else { SHORT_CAP };
        let after = self.backoff.min(cap);
        self.backoff = (after * 2).min(cap);
        Next::Rebuild { after }
    }

    /// The server answered after [`Next::WaitForServer`]: rebuild now, and start the
    /// backoff afresh.
    pub fn server_back(&mut self) {
        self.backoff = MIN_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn afters(r: &mut Reconnect, ended: RunEnded, probe: Option<&ProbeOutcome>, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| match r.after_run(ended, false, probe) {
                Next::Rebuild { after } => after.as_secs_f64(),
                Next::WaitForServer => -1.0,
            })
            .collect()
    }

    #[test]
    fn a_server_that_does_not_answer_is_probed_not_rebuilt_however_long_it_is_gone() {
        let mut r = Reconnect::default();
        for _ in 0..1000 {
            assert_eq!(r.after_run(RunEnded::Error, false, Some(&ProbeOutcome::Refused)), Next::WaitForServer);
        }
        r.server_back();
        // The first rebuild against the returned server fails: retried quickly.
        assert_eq!(r.after_run(RunEnded::Error, false, Some(&ProbeOutcome::Ready)), Next::Rebuild { after: MIN_BACKOFF });
    }

    #[test]
    fn a_stream_that_stalls_against_a_server_that_answers_is_retried_within_the_short_cap() {
        let mut r = Reconnect::default();
        assert_eq!(afters(&mut r, RunEnded::Stall, Some(&ProbeOutcome::Ready), 6), [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(afters(&mut r, RunEnded::Eos, None, 2), [1.0, 1.0]);
    }

    #[test]
    fn pipeline_errors_against_a_server_that_answers_back_off_to_the_long_cap() {
        let mut r = Reconnect::default();
        assert_eq!(afters(&mut r, RunEnded::Error, Some(&ProbeOutcome::Ready), 8), [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]);
        // A stall after a long error chain does not wait longer than the short cap.
        assert_eq!(afters(&mut r, RunEnded::Stall, Some(&ProbeOutcome::Ready), 1), [1.0]);
    }

    #[test]
    fn frames_reset_the_backoff() {
        let mut r = Reconnect::default();
        afters(&mut r, RunEnded::Error, Some(&ProbeOutcome::Ready), 5);
        assert_eq!(r.after_run(RunEnded::Error, true, Some(&ProbeOutcome::Ready)), Next::Rebuild { after: MIN_BACKOFF });
    }
}
