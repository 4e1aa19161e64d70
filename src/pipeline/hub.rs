//! The edge between sources and the detect stage: one bounded queue per camera.
//!
//! - Live cameras keep the newest frames: a push into a full queue evicts the oldest
//!   frame and counts it as dropped (latency beats completeness for live video).
//! - Non-live sources (files, replays) block the producer instead: nothing is dropped.
//! - The consumer takes frames round-robin across cameras, so one busy camera cannot
//!   starve the others, and waits up to `max_wait` to fill a batch.
//! - A lane is bounded in frames and in bytes (`limits.frame_queue_mb`): a 4K camera's
//!   frames are 19 times a VGA one's, and a count alone lets a few such cameras hold
//!   gigabytes. A frame larger than the byte bound still goes through, alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::model::Frame;

/// What a queued frame holds: its pixels (shared with whoever else holds the frame).
fn frame_bytes(f: &Frame) -> usize {
    f.image.pixels.len()
}

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
    /// Pixel bytes of the queued frames, and the most the lane holds.
    bytes: usize,
    max_bytes: usize,
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
    /// Whether `incoming` more bytes fit now (an empty lane takes any one frame).
    fn has_room_for(&self, incoming: usize) -> bool {
        self.queue.len() < self.capacity && (self.queue.is_empty() || self.bytes + incoming <= self.max_bytes)
    }

    fn pop(&mut self) -> Option<Frame> {
        let f = self.queue.pop_front()?;
        self.bytes -= frame_bytes(&f);
        Some(f)
    }

    fn push(&mut self, f: Frame) {
        self.bytes += frame_bytes(&f);
        self.queue.push_back(f);
    }

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
    /// Byte bound of every lane opened from now on.
    lane_bytes: usize,
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
        Self::with_lane_bytes(usize::MAX)
    }

    /// A hub whose lanes hold at most `lane_bytes` of pixels each (besides their
    /// frame count).
    pub fn with_lane_bytes(lane_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { lanes: Vec::new(), next: 0, shutdown: false, lane_bytes: lane_bytes.max(1) }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
        })
    }

    /// Opens a lane for one camera.
    pub fn lane(self: &Arc<Self>, camera_id: Arc<str>, capacity: usize, overflow: Overflow) -> LaneSender {
        let mut st = self.state.lock();
        st.reclaim();
        let lane = Lane {
            camera_id,
            queue: VecDeque::with_capacity(capacity.min(64)),
            capacity: capacity.max(1),
            bytes: 0,
            max_bytes: st.lane_bytes,
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
        self.take_batch_per_camera(max, usize::MAX, max_wait)
    }

    /// As [`take_batch`](Self::take_batch), with at most `per_camera` frames of any one
    /// camera: the batch spreads across cameras (`detector.max_batch_per_camera`). It
    /// returns without waiting once no other camera could add a frame, so a single
    /// camera pays no batching delay.
    pub fn take_batch_per_camera(&self, max: usize, per_camera: usize, max_wait: Duration) -> Vec<Frame> {
        let (max, per_camera) = (max.max(1), per_camera.max(1));
        let mut st = self.state.lock();
        let mut batch = Vec::with_capacity(max);
        // Frames taken per lane slot for this batch.
        let mut taken: Vec<usize> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            Self::fill(&mut st, &mut batch, &mut taken, max, per_camera);
            if !batch.is_empty() {
                self.not_full.notify_all();
            }
            let all_closed = st.shutdown || st.live().all(|l| !l.open);
            if batch.len() >= max || (all_closed && st.live().all(|l| l.queue.is_empty())) {
                st.reclaim();
                return batch;
            }
            // Every open lane has given its share: waiting cannot fill the batch.
            let can_add = st.lanes.iter().enumerate().any(|(i, l)| l.as_ref().is_some_and(|l| l.open) && taken.get(i).copied().unwrap_or(0) < per_camera);
            if !batch.is_empty() && !can_add {
                return batch;
            }
            st.reclaim();
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
                    Self::fill(&mut st, &mut batch, &mut taken, max, per_camera);
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

    /// Adds frames round-robin until the batch is full or no lane with its share left
    /// has one queued.
    fn fill(st: &mut State, batch: &mut Vec<Frame>, taken: &mut Vec<usize>, max: usize, per_camera: usize) {
        while batch.len() < max {
            match Self::pop_round_robin(st, taken, per_camera) {
                Some(f) => batch.push(f),
                None => break,
            }
        }
    }

    fn pop_round_robin(st: &mut State, taken: &mut Vec<usize>, per_camera: usize) -> Option<Frame> {
        let n = st.lanes.len();
        if taken.len() < n {
            taken.resize(n, 0);
        }
        for i in 0..n {
            let idx = (st.next + i) % n;
            if taken[idx] >= per_camera {
                continue;
            }
            if let Some(f) = st.lanes[idx].as_mut().and_then(Lane::pop) {
                st.next = (idx + 1) % n;
                taken[idx] += 1;
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
            let size = frame_bytes(&frame);
            if lane.has_room_for(size) {
                lane.push(frame);
                drop(st);
                hub.not_empty.notify_one();
                return Pushed::Queued;
            }
            match lane.overflow {
                Overflow::DropOldest => {
                    // Evict as many of the oldest as it takes (a larger frame can need more).
                    while !lane.has_room_for(size) && lane.pop().is_some() {
                        lane.dropped += 1;
                    }
                    lane.push(frame);
                    drop(st);
                    hub.not_empty.notify_one();
                    return Pushed::EvictedOldest;
                }
                Overflow::Block => hub.not_full.wait(&mut st),
            }
        }
    }

    /// Whether a push now would queue without waiting (for a frame the size of the last).
    pub fn has_room(&self) -> bool {
        let mut st = self.hub.state.lock();
        let lane = st.lane(self.lane);
        // Frames of one camera are (nearly always) one size: room for one like the last.
        let next = lane.queue.back().map_or(0, frame_bytes);
        lane.has_room_for(next)
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

    /// A frame of `side`x`side` RGB pixels.
    fn sized(cam: &str, seq: u64, side: u32) -> Frame {
        Frame { image: Arc::new(RgbImage::new(side, side, vec![0; (side * side * 3) as usize]).unwrap()), ..frame(cam, seq) }
    }

    #[test]
    fn a_lane_is_bounded_in_bytes_as_well_as_frames() {
        // 100x100 RGB = 30 000 bytes; the lane holds 70 000: two frames, not its 8.
        let hub = FrameHub::with_lane_bytes(70_000);
        let live = hub.lane("a".into(), 8, Overflow::DropOldest);
        for seq in 0..5 {
            live.push(sized("a", seq, 100));
        }
        let got: Vec<u64> = hub.take_batch(10, Duration::ZERO).iter().map(|f| f.seq).collect();
        assert_eq!(got, vec![3, 4], "the newest two fit");
        assert_eq!(hub.dropped()[0].1, 3);
        // One frame larger than the bound still goes through, alone.
        assert_eq!(live.push(sized("a", 5, 200)), Pushed::Queued);
        assert_eq!(live.push(sized("a", 6, 10)), Pushed::EvictedOldest, "nothing fits beside the big one");
        assert_eq!(hub.take_batch(10, Duration::ZERO).iter().map(|f| f.seq).collect::<Vec<_>>(), vec![6]);

        // A blocking lane waits for bytes to be taken, and loses nothing.
        let file = hub.lane("b".into(), 8, Overflow::Block);
        file.push(sized("b", 0, 100));
        file.push(sized("b", 1, 100));
        assert!(!file.has_room(), "full in bytes with 2 of 8 frames");
        let pusher = std::thread::spawn(move || file.push(sized("b", 2, 100)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!pusher.is_finished(), "the third frame waits for room");
        let first = hub.take_batch(1, Duration::ZERO);
        assert_eq!(first[0].seq, 0);
        assert_eq!(pusher.join().unwrap(), Pushed::Queued);
        let rest: Vec<u64> = hub.take_batch(10, Duration::ZERO).iter().map(|f| f.seq).collect();
        assert_eq!(rest, vec![1, 2]);
    }

    #[test]
    fn batches_spread_across_cameras_without_waiting_for_a_lone_camera() {
        let hub = FrameHub::new();
        let a = hub.lane("a".into(), 8, Overflow::Block);
        for seq in 0..4 {
            a.push(frame("a", seq));
        }
        // One camera: one frame per call, at once (no max_wait spent hoping for more).
        let t0 = Instant::now();
        let batch = hub.take_batch_per_camera(4, 1, Duration::from_secs(5));
        assert_eq!(batch.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![0]);
        assert!(t0.elapsed() < Duration::from_secs(2), "a lone camera's batch did not wait: {:?}", t0.elapsed());
        // Two cameras: one frame of each.
        let b = hub.lane("b".into(), 8, Overflow::Block);
        b.push(frame("b", 0));
        b.push(frame("b", 1));
        let batch = hub.take_batch_per_camera(4, 1, Duration::from_millis(1));
        let mut cams: Vec<&str> = batch.iter().map(|f| &*f.camera_id).collect();
        cams.sort();
        assert_eq!(cams, vec!["a", "b"]);
        // Two per camera when allowed; the unbounded call takes everything left.
        assert_eq!(hub.take_batch_per_camera(8, 2, Duration::from_millis(1)).len(), 3, "a: 2 of its 2 left, b: its 1 left");
        a.push(frame("a", 9));
        assert_eq!(hub.take_batch(8, Duration::ZERO).len(), 1);
    }
}
