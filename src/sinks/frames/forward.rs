//! The ingest loop: frames from the hub, JPEG-encoded, handed to a publisher. Frames are
//! perishable: when the broker falls behind, the publisher is full and this loop
//! waits, so the live cameras' lanes evict their oldest frames (`queue_full`, counted by
//! the sources) and decoding never blocks; a frame the broker does not confirm in time
//! is dropped (`expired`), never retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::encode::{EncodedFrame, encode_all};
use crate::pipeline::hub::FrameHub;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// Where a camera's frames go: its pipeline's `[kafka]` brokers and topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub brokers: String,
    pub topic: String,
}

/// What a publisher did with an offered frame.
#[derive(Debug)]
pub enum Offer {
    /// Handed over; its delivery report comes later (through the [`Tally`]).
    Accepted,
    /// No room now: offer it again after [`FramePublisher::poll`].
    Full(EncodedFrame),
    /// Refused for good (the reason is the drop reason).
    Refused(&'static str),
}

/// Where encoded frames go (Kafka in production; a fake at this seam in tests).
pub trait FramePublisher: Send {
    /// Hands a frame over without waiting.
    fn offer(&mut self, frame: EncodedFrame) -> Offer;
    /// Serves delivery reports, waiting up to `wait` for one.
    fn poll(&mut self, wait: Duration);
    /// Waits up to `timeout` for every handed-over frame to be confirmed or to expire;
    /// returns how many are still unconfirmed.
    fn flush(&mut self, timeout: Duration) -> usize;
}

/// Counts each frame's fate in the metrics and the camera's status.
#[derive(Clone)]
pub struct Tally {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// The publisher's name in `/readyz` (a sink of frames).
pub const SINK_NAME: &str = "frames";

impl Tally {
    pub fn published(&self, camera: &str, captured_at: time::OffsetDateTime) {
        self.health.set_sink(SINK_NAME, crate::telemetry::health::State::Running, None);
        self.metrics.frames_published.with_label_values(&[camera]).inc();
        let age = (time::OffsetDateTime::now_utc() - captured_at).as_seconds_f64();
        if age >= 0.0 {
            self.metrics.frame_publish_seconds.observe(age);
        }
        self.health.update_source(camera, |s| s.frames_published += 1);
    }

    pub fn dropped(&self, camera: &str, reason: &'static str) {
        if reason == "expired" {
            // Confirmations stopped coming: the broker is unreachable or too slow.
            let why = "frames expire unconfirmed (ingest.message_timeout_ms): is the broker reachable?";
            self.health.set_sink(SINK_NAME, crate::telemetry::health::State::Error, Some(why.into()));
        }
        self.metrics.frames_dropped.with_label_values(&[camera, reason]).inc();
        self.health.update_source(camera, |s| {
            *s.drops.entry(reason).or_default() += 1;
            s.frames_dropped = s.drops.values().sum();
        });
    }
}

#[derive(Debug, Clone)]
pub struct ForwardSettings {
    pub jpeg_quality: u8,
    pub max_message_bytes: usize,
    pub encode_threads: usize,
    /// Frames taken from the hub at once (one per camera when all are busy).
    pub max_batch: usize,
    /// At the end, how long the last frames may take to be confirmed.
    pub flush_timeout: Duration,
}

/// What a finished loop did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub offered: u64,
    pub dropped: u64,
    /// Still unconfirmed at the end of the flush.
    pub unconfirmed: usize,
}

/// Runs until every lane of `hub` is closed and drained (sources ended, or the hub shut
/// down), or `stop` is set; then flushes the publisher.
pub fn forward(hub: &FrameHub, publisher: &mut dyn FramePublisher, s: &ForwardSettings, tally: &Tally, stop: &AtomicBool) -> Forwarded {
    let mut done = Forwarded::default();
    while !stop.load(Ordering::Relaxed) {
        let batch = hub.take_batch(s.max_batch, Duration::from_millis(2));
        publisher.poll(Duration::ZERO);
        if batch.is_empty() {
            // Empty: a lane ended (its news is due), or every lane is closed and drained.
            let ended = hub.take_ended();
            if ended.is_empty() {
                break;
            }
            for camera in ended {
                tracing::info!(%camera, "source ended; its frames are all handed to the broker");
            }
            continue;
        }
        let encoded = encode_all(&batch, s.jpeg_quality, s.encode_threads);
        let cameras: Vec<Arc<str>> = batch.iter().map(|f| f.camera_id.clone()).collect();
        // The decoded images go now, not after the broker took the batch.
        drop(batch);
        for (camera, e) in cameras.iter().zip(encoded) {
            let frame = match e {
                Ok(f) if f.jpeg.len() > s.max_message_bytes => {
                    tracing::warn!(%camera, bytes = f.jpeg.len(), max = s.max_message_bytes, "encoded frame larger than ingest.max_message_bytes; dropped");
                    done.dropped += 1;
                    tally.dropped(camera, "too_large");
                    continue;
                }
                Ok(f) => f,
                Err(why) => {
                    tracing::warn!(%camera, error = %why, "cannot encode the frame; dropped");
                    done.dropped += 1;
                    tally.dropped(camera, "encode_failed");
                    continue;
                }
            };
            if !offer_until_taken(publisher, frame, tally, stop) {
                done.dropped += 1;
            }
            done.offered += 1;
        }
    }
    let t0 = Instant::now();
    done.unconfirmed = publisher.flush(s.flush_timeout);
    if done.unconfirmed > 0 {
        tracing::warn!(frames = done.unconfirmed, waited_s = t0.elapsed().as_secs_f64(), "frames not confirmed by the broker at the stop");
    }
    done
}

/// Offers until the publisher takes the frame (waiting on its delivery reports while it
/// is full); false if it was refused, or dropped because Argus is stopping.
fn offer_until_taken(publisher: &mut dyn FramePublisher, mut frame: EncodedFrame, tally: &Tally, stop: &AtomicBool) -> bool {
    let camera = frame.camera_id.clone();
    loop {
        match publisher.offer(frame) {
            Offer::Accepted => return true,
            Offer::Refused(reason) => {
                tally.dropped(&camera, reason);
                return false;
            }
            Offer::Full(back) => {
                if stop.load(Ordering::Relaxed) {
                    tally.dropped(&camera, "stopping");
                    return false;
                }
                frame = back;
                publisher.poll(Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::hub::Overflow;
    use std::collections::VecDeque;

    /// Takes `room` frames at a time; each `poll` confirms the oldest one.
    struct Fake {
        room: usize,
        in_flight: VecDeque<EncodedFrame>,
        confirmed: Vec<(Arc<str>, u64)>,
        refuse_camera: Option<&'static str>,
        tally: Tally,
        polls_full: usize,
    }

    impl FramePublisher for Fake {
        fn offer(&mut self, frame: EncodedFrame) -> Offer {
            if self.refuse_camera == Some(&*frame.camera_id) {
                return Offer::Refused("rejected");
            }
            if self.in_flight.len() >= self.room {
                return Offer::Full(frame);
            }
            self.in_flight.push_back(frame);
            Offer::Accepted
        }
        fn poll(&mut self, wait: Duration) {
            if wait > Duration::ZERO {
                self.polls_full += 1;
            }
            if let Some(f) = self.in_flight.pop_front() {
                self.tally.published(&f.camera_id, f.captured_at);
                self.confirmed.push((f.camera_id.clone(), f.seq));
            }
        }
        fn flush(&mut self, _: Duration) -> usize {
            while !self.in_flight.is_empty() {
                self.poll(Duration::ZERO);
            }
            0
        }
    }

    fn setup() -> (Arc<FrameHub>, Tally) {
        let tally = Tally { metrics: Arc::new(Metrics::new()), health: Arc::new(Health::default()) };
        for c in ["a", "b"] {
            tally.health.register_source(c, "p", c, true);
        }
        (FrameHub::new(), tally)
    }

    fn settings() -> ForwardSettings {
        ForwardSettings { jpeg_quality: 80, max_message_bytes: 1 << 20, encode_threads: 2, max_batch: 4, flush_timeout: Duration::from_secs(1) }
    }

    #[test]
    fn every_frame_reaches_the_publisher_in_each_cameras_order_and_is_counted() {
        let (hub, tally) = setup();
        let (a, b) = (hub.lane("a".into(), 4, Overflow::Block), hub.lane("b".into(), 4, Overflow::Block));
        let producer = std::thread::spawn(move || {
            for i in 0..20 {
                a.push(crate::sinks::frames::encode::tests::frame("a", i, 16, 16));
                b.push(crate::sinks::frames::encode::tests::frame("b", i, 16, 16));
            }
        });
        let mut fake = Fake { room: 3, in_flight: VecDeque::new(), confirmed: vec![], refuse_camera: None, tally: tally.clone(), polls_full: 0 };
        let done = forward(&hub, &mut fake, &settings(), &tally, &AtomicBool::new(false));
        producer.join().unwrap();
        assert_eq!(done, Forwarded { offered: 40, dropped: 0, unconfirmed: 0 });
        for cam in ["a", "b"] {
            let seqs: Vec<u64> = fake.confirmed.iter().filter(|(c, _)| &**c == cam).map(|(_, s)| *s).collect();
            assert_eq!(seqs, (0..20).collect::<Vec<_>>(), "{cam}");
            assert_eq!(tally.metrics.frames_published.with_label_values(&[cam]).get(), 20);
            assert_eq!(tally.health.sources()[cam].frames_published, 20);
        }
        assert!(fake.polls_full > 0, "a full publisher was waited on, not skipped");
    }

    #[test]
    fn a_stalled_broker_makes_live_lanes_drop_their_oldest_frames_and_never_blocks_the_source() {
        let (hub, tally) = setup();
        let a = hub.lane("a".into(), 2, Overflow::DropOldest);
        // A publisher with no room: the loop waits on it, the live lane keeps the newest.
        let stop = Arc::new(AtomicBool::new(false));
        let (h2, t2, s2) = (hub.clone(), tally.clone(), stop.clone());
        let looping = std::thread::spawn(move || {
            let mut fake = Fake { room: 0, in_flight: VecDeque::new(), confirmed: vec![], refuse_camera: None, tally: t2.clone(), polls_full: 0 };
            forward(&h2, &mut fake, &settings(), &t2, &s2)
        });
        a.push(crate::sinks::frames::encode::tests::frame("a", 0, 8, 8));
        // The loop took it and waits on the full publisher.
        while hub.depth() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t0 = Instant::now();
        for i in 1..50 {
            a.push(crate::sinks::frames::encode::tests::frame("a", i, 8, 8));
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "the source never waits on the broker");
        let evicted = hub.dropped().iter().map(|(_, n)| n).sum::<u64>();
        assert!(evicted >= 45, "{evicted} evicted of 50");
        stop.store(true, Ordering::SeqCst);
        drop(a);
        let done = looping.join().unwrap();
        // Every frame is accounted for: evicted by the lane, dropped at the stop (those
        // taken while the broker was full), or still queued.
        let stopping = tally.health.sources()["a"].drops.get("stopping").copied().unwrap_or(0);
        assert!(stopping >= 1 && done.dropped == stopping, "{done:?}");
        assert_eq!(evicted + stopping + hub.depth() as u64, 50);
    }

    #[test]
    fn refused_oversized_and_torn_frames_are_dropped_by_reason_and_the_rest_go_on() {
        let (hub, tally) = setup();
        let (a, b) = (hub.lane("a".into(), 8, Overflow::Block), hub.lane("b".into(), 8, Overflow::Block));
        let enc = |c: &str, i: u64| crate::sinks::frames::encode::tests::frame(c, i, 64, 64);
        a.push(enc("a", 0));
        let mut torn = enc("b", 0);
        torn.image = Arc::new(crate::model::RgbImage { width: 64, height: 64, pixels: vec![1; 5] });
        b.push(torn);
        b.push(enc("b", 1));
        drop((a, b));
        let mut s = settings();
        let mut fake = Fake { room: 8, in_flight: VecDeque::new(), confirmed: vec![], refuse_camera: Some("a"), tally: tally.clone(), polls_full: 0 };
        let done = forward(&hub, &mut fake, &s, &tally, &AtomicBool::new(false));
        assert_eq!(done.dropped, 2);
        assert_eq!(fake.confirmed, vec![(Arc::from("b"), 1)]);
        let src = tally.health.sources();
        assert_eq!(src["a"].drops.get("rejected"), Some(&1));
        assert_eq!(src["b"].drops.get("encode_failed"), Some(&1));
        assert_eq!(src["b"].frames_dropped, 1);

        let (hub, tally) = setup();
        let b = hub.lane("b".into(), 8, Overflow::Block);
        b.push(enc("b", 0));
        drop(b);
        s.max_message_bytes = 1024;
        let mut fake = Fake { room: 8, in_flight: VecDeque::new(), confirmed: vec![], refuse_camera: None, tally: tally.clone(), polls_full: 0 };
        forward(&hub, &mut fake, &s, &tally, &AtomicBool::new(false));
        assert_eq!(tally.metrics.frames_dropped.with_label_values(&["b", "too_large"]).get(), 1);
        assert!(fake.confirmed.is_empty());
    }
}
