//! Thread supervision: a stage, sink or source thread that panics is reported (an error
//! log, `argus_thread_panics_total{thread}`, a reason in `/readyz`) and Argus stops
//! cleanly, instead of running on with a dead thread (a frozen durability mark, a queue
//! nobody reads). Restarting a thread in place is not safe in general (its state may be
//! half-updated); a supervisor outside (systemd, Kubernetes) restarts the process, which
//! resumes from the spools, checkpoints and committed offsets.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::health::Health;
use super::metrics::Metrics;

/// Who hears about a panic.
#[derive(Clone)]
pub struct Supervisor {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

impl Supervisor {
    /// Spawns a named thread running `f`; a panic inside is caught and reported.
    pub fn spawn<F: FnOnce() + Send + 'static>(&self, name: impl Into<String>, f: F) -> std::io::Result<JoinHandle<()>> {
        let name = name.into();
        let this = self.clone();
        std::thread::Builder::new().name(name.clone()).spawn(move || this.run(&name, f))
    }

    /// Runs `f` on this thread; a panic inside is caught and reported.
    pub fn run<F: FnOnce()>(&self, name: &str, f: F) {
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
            let message = panic_message(&*payload);
            tracing::error!(thread = name, panic = %message, "thread panicked; Argus stops (the spools, checkpoints and uncommitted offsets keep what was in flight)");
            self.metrics.thread_panics.with_label_values(&[name]).inc();
            self.health.thread_panicked(name, &message);
        }
    }
}

/// The text of a panic (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_thread_is_reported_in_readiness_and_metrics() {
        let sup = Supervisor { health: Arc::new(Health::default()), metrics: Arc::new(Metrics::new()) };
        sup.spawn("stage-test", || panic!("index out of bounds")).unwrap().join().unwrap();
        let r = sup.health.readiness();
        assert!(!r.ready);
        assert!(r.reasons.iter().any(|x| x.contains("stage-test") && x.contains("index out of bounds")), "{:?}", r.reasons);
        assert_eq!(sup.metrics.thread_panics.with_label_values(&["stage-test"]).get(), 1);
        assert_eq!(sup.health.panicked().as_deref(), Some("thread stage-test panicked: index out of bounds"));
        sup.spawn("fine", || {}).unwrap().join().unwrap();
        assert_eq!(sup.metrics.thread_panics.with_label_values(&["fine"]).get(), 0);
    }
}
