//! The edge between sources and the detect stage: one bounded queue per camera.
//!
//! - Live cameras keep the newest frames: a push into a full queue evicts the oldest
//!   frame and counts it as dropped (latency beats completeness for live video).
//! - Non-live sources (files, replays) block the producer instead: nothing is dropped.
//! - The consumer takes frames round-robin across cameras, so one busy camera cannot
//!   starve the others, and waits up to `max_wait` to fill a batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::model::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Evict the oldest queued frame (live cameras).
    DropOldest,
    /// Block the producer until there is room (files, replays).
    Block,
}

struct Lane {
    camera_id: Arc<str>,
    queue: VecDeque<Frame>,
    capacity: usize,
    overflow: Overflow,
    open: bool,
    /// The source ended by itself (end of a recording, frame limit, a file that fails):
    /// once its queue is empty, the scene stage hears of it (`take_ended`).
    ended: bool,
    /// `ended` was reported.
    end_reported: bool,
    dropped: u64,
}

impl Lane {
    fn end_due(&self) -> bool {
        self.ended && !self.end_reported && self.queue.is_empty()
    }
}

impl Lane {
    /// Closed, drained and nothing left to report: its slot can go (a camera removed or
    /// restarted by a reload, a Kafka partition handed over), so lanes do not pile up.
    fn finished(&self) -> bool {
        !self.open && self.queue.is_empty() && !self.end_due()
    }
}

struct State {
    /// One slot per lane; a finished lane's slot is emptied and reused by the next.
    lanes: Vec<Option<Lane>>,
    next: usize,
    shutdown: bool,
}

impl State {
    fn live(&self) -> impl Iterator<Item = &Lane> {
        self.lanes.iter().flatten()
    }

    fn lane(&mut self, idx: usize) -> &mut Lane {
        self.lanes[idx].as_mut().expect("a sender's lane lives until the sender is dropped")
    }

    fn reclaim(&mut self) {
        for slot in &mut self.lanes {
            if slot.as_ref().is_some_and(Lane::finished) {
                *slot = None;
            }
        }
    }
}

/// Shared by every source (producers) and the detect stage (consumer).
pub struct FrameHub {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
}

/// A source's handle for one camera's lane. Dropping it closes the lane.
pub struct LaneSender {
    hub: Arc<FrameHub>,
    lane: usize,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, and the oldest queued frame was evicted to make room.
    EvictedOldest,
    /// The hub is shutting down; the frame was discarded.
    Closed,
}

impl FrameHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { lanes: Vec::new(), next: 0, shutdown: false }), not_empty: Condvar::new(), not_full: Condvar::new() })
    }

    /// Opens a lane for one camera.
    pub fn lane(self: &Arc<Self>, camera_id: Arc<str>, capacity: usize, overflow: Overflow) -> LaneSender {
        let mut st = self.state.lock();
        st.reclaim();
        let lane = Lane {
            camera_id,
            queue: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            overflow,
            open: true,
            ended: false,
            end_reported: false,
            dropped: 0,
        };
        let idx = match st.lanes.iter().position(Option::is_none) {
            Some(free) => {
                st.lanes[free] = Some(lane);
                free
            }
            None => {
                st.lanes.push(Some(lane));
                st.lanes.len() - 1
            }
        };
        LaneSender { hub: self.clone(), lane: idx }
    }

    /// Stops producers and consumers: blocked pushes return `Closed`, `take_batch`
    /// drains what is queued and then returns empty.
    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// Frames dropped so far per camera (lanes still open or draining).
    pub fn dropped(&self) -> Vec<(Arc<str>, u64)> {
        self.state.lock().live().map(|l| (l.camera_id.clone(), l.dropped)).collect()
    }

    /// Frames currently queued, all cameras.
    pub fn depth(&self) -> usize {
        self.state.lock().live().map(|l| l.queue.len()).sum()
    }

    /// Lanes held (open, or closed with frames or news still to take).
    pub fn lanes(&self) -> usize {
        self.state.lock().live().count()
    }

    /// Takes up to `max` frames, round-robin over cameras. Blocks until at least one
    /// frame is available, then waits at most `max_wait` for more. Returns an empty vec
    /// when every lane is closed and drained (or on shutdown once drained).
    pub fn take_batch(&self, max: usize, max_wait: Duration) -> Vec<Frame> {
        let max = max.max(1);
        let mut st = self.state.lock();
        let mut batch = Vec::with_capacity(max);
        let mut deadline: Option<Instant> = None;
        loop {
            while batch.len() < max {
                match Self::pop_round_robin(&mut st) {
                    Some(f) => batch.push(f),
                    None => break,
                }
            }
            if !batch.is_empty() {
                self.not_full.notify_all();
            }
            st.reclaim();
            let all_closed = st.shutdown || st.live().all(|l| !l.open);
            if batch.len() >= max || (all_closed && st.live().all(|l| l.queue.is_empty())) {
                return batch;
            }
            // An ended lane's news must not wait for another camera's frame.
            if batch.is_empty() && st.live().any(Lane::end_due) {
                return batch;
            }
            if batch.is_empty() {
                self.not_empty.wait(&mut st);
            } else {
                let d = *deadline.get_or_insert_with(|| Instant::now() + max_wait);
                if Instant::now() >= d || self.not_empty.wait_until(&mut st, d).timed_out() {
                    // Take whatever arrived in the meantime, then return.
                    while batch.len() < max {
                        match Self::pop_round_robin(&mut st) {
                            Some(f) => batch.push(f),
                            None => break,
                        }
                    }
                    self.not_full.notify_all();
                    return batch;
                }
            }
        }
    }

    /// Cameras whose source ended by itself and whose frames have all been taken (each
    /// reported once): the caller passes this on after the frames it took before.
    pub fn take_ended(&self) -> Vec<Arc<str>> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        for l in st.lanes.iter_mut().flatten().filter(|l| l.end_due()) {
            l.end_reported = true;
            out.push(l.camera_id.clone());
        }
        out
    }

    fn pop_round_robin(st: &mut State) -> Option<Frame> {
        let n = st.lanes.len();
        for i in 0..n {
            let idx = (st.next + i) % n;
            if let Some(f) = st.lanes[idx].as_mut().and_then(|l| l.queue.pop_front()) {
                st.next = (idx + 1) % n;
                return Some(f);
            }
        }
        None
    }
}

impl LaneSender {
    pub fn push(&self, frame: Frame) -> Pushed {
        let hub = &self.hub;
        let mut st = hub.state.lock();
        loop {
            if st.shutdown {
                return Pushed::Closed;
            }
            let lane = st.lane(self.lane);
            if lane.queue.len() < lane.capacity {
                lane.queue.push_back(frame);
                drop(st);
                hub.not_empty.notify_one();
                return Pushed::Queued;
            }
            match lane.overflow {
                Overflow::DropOldest => {
                    lane.queue.pop_front();
                    lane.dropped += 1;
                    lane.queue.push_back(frame);
                    drop(st);
                    hub.not_empty.notify_one();
                    return Pushed::EvictedOldest;
                }
                Overflow::Block => hub.not_full.wait(&mut st),
            }
        }
    }

    /// Whether a push now would queue without waiting.
    pub fn has_room(&self) -> bool {
        let mut st = self.hub.state.lock();
        let lane = st.lane(self.lane);
        lane.queue.len() < lane.capacity
    }

    /// The source ended by itself, not because Argus is stopping or the camera was
    /// removed: the camera's open incidents close ("source ended") once its last frames
    /// are analysed, while the other cameras go on.
    pub fn end(&self) {
        self.hub.state.lock().lane(self.lane).ended = true;
        self.hub.not_empty.notify_all();
    }

    /// True once the hub is shutting down: sources should stop.
    pub fn is_shutdown(&self) -> bool {
        self.hub.state.lock().shutdown
    }
}

impl Drop for LaneSender {
    fn drop(&mut self) {
        let mut st = self.hub.state.lock();
        st.lane(self.lane).open = false;
        st.reclaim();
        drop(st);
        self.hub.not_empty.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RgbImage;
    use time::OffsetDateTime;

    fn frame(cam: &str, seq: u64) -> Frame {
        Frame {
            camera_id: Arc::from(cam),
            seq,
            pts_ns: None,
            captured_at: OffsetDateTime::UNIX_EPOCH,
            time_source: "arrival",
            received: std::time::Instant::now(),
            image: Arc::new(RgbImage::new(1, 1, vec![0, 0, 0]).unwrap()),
            ack: None,
            telemetry: None,
            position: None,
        }
    }

    #[test]
    fn live_lane_keeps_newest_and_counts_drops() {
        let hub = FrameHub::new();
        let tx = hub.lane("a".into(), 2, Overflow::DropOldest);
        assert_eq!(tx.push(frame("a", 0)), Pushed::Queued);
        tx.push(frame("a", 1));
        assert_eq!(tx.push(frame("a", 2)), Pushed::EvictedOldest);
        let got: Vec<u64> = hub.take_batch(10, Duration::ZERO).iter().map(|f| f.seq).collect();
        assert_eq!(got, vec![1, 2]);
        assert_eq!(hub.dropped()[0].1, 1);
    }

    #[test]
    fn lanes_of_removed_cameras_do_not_pile_up() {
        let hub = FrameHub::new();
        let keep = hub.lane("keep".into(), 8, Overflow::Block);
        // A thousand reloads that remove and re-add a camera.
        for i in 0..1000 {
            let l = hub.lane("moving".into(), 8, Overflow::DropOldest);
            l.push(frame("moving", i));
            drop(l);
            // Its last frame is still analysed, then the slot goes.
            assert_eq!(hub.take_batch(4, Duration::ZERO).len(), 1);
        }
        assert_eq!(hub.lanes(), 1, "only the open lane is held");
        // A closed lane with frames queued, or an end still to report, is kept until taken.
        let a = hub.lane("a".into(), 8, Overflow::Block);
        a.push(frame("a", 0));
        a.end();
        drop(a);
        assert_eq!(hub.lanes(), 2);
        assert_eq!(hub.take_batch(4, Duration::ZERO).len(), 1);
        assert_eq!(hub.take_ended(), vec![Arc::<str>::from("a")]);
        let b = hub.lane("b".into(), 8, Overflow::Block);
        assert_eq!(hub.lanes(), 2, "a's slot was reused");
        assert_eq!(hub.dropped().len(), 2, "no counts of removed cameras");
        drop((b, keep));
    }

    #[test]
    fn an_ended_lane_is_reported_once_after_its_last_frame_was_taken() {
        let hub = FrameHub::new();
        let (a, b) = (hub.lane("a".into(), 8, Overflow::Block), hub.lane("b".into(), 8, Overflow::Block));
        a.push(frame("a", 0));
        a.push(frame("a", 1));
        a.end();
        drop(a);
        assert_eq!(hub.take_batch(1, Duration::ZERO).len(), 1);
        assert!(hub.take_ended().is_empty(), "a frame of the ended lane is still queued");
        assert_eq!(hub.take_batch(4, Duration::ZERO).len(), 1);
        assert_eq!(hub.take_ended(), vec![Arc::<str>::from("a")]);
        assert!(hub.take_ended().is_empty(), "reported once");
        // A lane that ends with nothing queued wakes a waiting consumer at once, though
        // another lane is still open.
        let c = hub.lane("c".into(), 8, Overflow::Block);
        let waiter = {
            let hub = hub.clone();
            std::thread::spawn(move || (hub.take_batch(4, Duration::from_secs(30)).len(), hub.take_ended()))
        };
        std::thread::sleep(Duration::from_millis(50));
        c.end();
        assert_eq!(waiter.join().unwrap(), (0, vec![Arc::<str>::from("c")]));
        drop(b);
    }

    #[test]
    fn round_robin_across_cameras() {
        let hub = FrameHub::new();
        let a = hub.lane("a".into(), 8, Overflow::Block);
        let b = hub.lane("b".into(), 8, Overflow::Block);
        for i in 0..3 {
            a.push(frame("a", i));
        }
        b.push(frame("b", 0));
        let got: Vec<String> = hub.take_batch(3, Duration::ZERO).iter().map(|f| format!("{}{}", f.camera_id, f.seq)).collect();
        assert_eq!(got, vec!["a0", "b0", "a1"]);
    }

    #[test]
    fn blocking_lane_waits_for_room_and_loses_nothing() {
        let hub = FrameHub::new();
        let tx = hub.lane("f".into(), 1, Overflow::Block);
        let producer = std::thread::spawn(move || {
            for i in 0..50 {
                assert_eq!(tx.push(frame("f", i)), Pushed::Queued);
            }
        });
        let mut seen = Vec::new();
        loop {
            let b = hub.take_batch(4, Duration::from_millis(1));
            if b.is_empty() {
                break;
            }
            seen.extend(b.into_iter().map(|f| f.seq));
        }
        producer.join().unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_eq!(hub.lanes(), 0, "closed and drained: the lane is gone");
    }

    #[test]
    fn shutdown_releases_blocked_producer() {
        let hub = FrameHub::new();
        let tx = hub.lane("f".into(), 1, Overflow::Block);
        tx.push(frame("f", 0));
        let h = hub.clone();
        let t = std::thread::spawn(move || tx.push(frame("f", 1)));
        std::thread::sleep(Duration::from_millis(20));
        h.shutdown();
        assert_eq!(t.join().unwrap(), Pushed::Closed);
        assert_eq!(hub.take_batch(4, Duration::ZERO).len(), 1, "queued frames still drain");
        assert!(hub.take_batch(4, Duration::ZERO).is_empty());
    }
}
