//! The courier: the thread that talks to the server for a spooled sink. The sink's own
//! thread hands it one batch at a time and waits for the answer only a bounded time, so a
//! server that accepts connections and never answers (or a broker that is frozen) costs
//! the pipeline at most that hand-off time per batch: meanwhile batches go to the spool.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use super::Delivery;
use crate::model::Event;

/// What the server made of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Confirmed durable by the server.
    Delivered,
    /// Not reached, not answering, or failing for reasons of its own: retry later.
    Unavailable(String),
    /// The server answered and refused this batch; retrying the same batch will not
    /// help (the sink isolates the events it refuses and dead-letters them).
    Rejected(String),
}

/// The sink thread's handle on the courier thread.
pub struct Courier {
    jobs: Option<Sender<Vec<Arc<Event>>>>,
    results: Receiver<Outcome>,
    busy: bool,
    thread: Option<JoinHandle<()>>,
}

/// The courier thread ended without answering: it panicked inside the delivery.
#[derive(Debug)]
pub struct CourierGone;

impl Courier {
    /// Starts the thread; `prepared` says whether `delivery.prepare()` already succeeded.
    pub fn start<D: Delivery + 'static>(mut delivery: D, mut prepared: bool) -> std::io::Result<Self> {
        let (jobs, job_rx) = bounded::<Vec<Arc<Event>>>(1);
        let (result_tx, results) = bounded(1);
        let thread = std::thread::Builder::new().name(format!("sink-{}-courier", delivery.name())).spawn(move || {
            for batch in job_rx {
                let outcome = deliver(&mut delivery, &mut prepared, &batch);
                if result_tx.send(outcome).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self { jobs: Some(jobs), results, busy: false, thread: Some(thread) })
    }

    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Hands a batch over; the courier must be idle.
    pub fn submit(&mut self, batch: Vec<Arc<Event>>) -> Result<(), CourierGone> {
        debug_assert!(!self.busy, "one batch at a time");
        self.jobs.as_ref().ok_or(CourierGone)?.send(batch).map_err(|_| CourierGone)?;
        self.busy = true;
        Ok(())
    }

    /// The answer to the batch in flight, waiting at most `timeout`; `Ok(None)` while
    /// the server is still at it (or nothing is in flight).
    pub fn answer(&mut self, timeout: Duration) -> Result<Option<Outcome>, CourierGone> {
        if !self.busy {
            return Ok(None);
        }
        match self.results.recv_timeout(timeout) {
            Ok(o) => {
                self.busy = false;
                Ok(Some(o))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(CourierGone),
        }
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        // Closing the job queue ends the thread after its current batch. A batch stuck
        // on a server that never answers is not waited for (its client timeouts end it);
        // whatever it held is in the spool already.
        self.jobs = None;
        if let Some(t) = self.thread.take()
            && (!self.busy || t.is_finished())
        {
            let _ = t.join();
        }
    }
}

/// One batch: prepare the server if it needs it, deliver, classify the failure.
fn deliver<D: Delivery>(delivery: &mut D, prepared: &mut bool, batch: &[Arc<Event>]) -> Outcome {
    if !*prepared {
        if let Err(e) = delivery.prepare() {
            return Outcome::Unavailable(e);
        }
        *prepared = true;
    }
    match delivery.deliver(batch) {
        Ok(()) => Outcome::Delivered,
        Err(e) => {
            if delivery.needs_prepare_after(&e) {
                *prepared = false;
            }
            if delivery.is_rejection(&e) { Outcome::Rejected(e) } else { Outcome::Unavailable(e) }
        }
    }
}
