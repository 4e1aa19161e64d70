//! The scene stage: one thread that runs every camera's scene (track → place → judge →
//! caption), updates the snapshots and publishes the events. Cameras come and go
//! through [`SceneCtl`] messages (config reloads).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use time::OffsetDateTime;

use super::bus::{Durability, EventBus};
use super::detect_stage::{Detected, DetectedFrame};
use super::scene::CameraScene;
use super::scene_state::{self, ResumeOutcome, SceneState, StateStore, StateWriter};
use super::snapshot::{Snapshot, SnapshotBoard};
use crate::caption::model::Captioner;
use crate::model::{EventKind, Level, Models, SourcePosition};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// The `why` of a camera removed for good (not restarted with a new configuration).
pub const REMOVED: &str = "camera removed";

/// Changes to the scene stage's set of cameras (config reload).
pub enum SceneCtl {
    /// A camera, its scene, and whether it is live.
    Add(Arc<str>, Box<CameraScene>, bool),
    /// The camera and why its incidents close (`camera removed`, `configuration changed`).
    Remove(Arc<str>, &'static str),
    /// A Kafka camera this member takes over (its partition was assigned): its scene
    /// starts from `state` (the state topic's latest checkpoint) or afresh, and its
    /// checkpoints go to `writer` until it is released.
    Assign(Assignment),
    /// Kafka cameras this member gives up (their partition was revoked, or Argus is
    /// stopping): each is checkpointed one last time (unless `checkpoint` is false: the
    /// partition was lost, someone else owns it already), then its frames are dropped
    /// until it is assigned again. `done` is answered once the checkpoints are written.
    Release { cameras: Vec<Arc<str>>, checkpoint: bool, done: crossbeam_channel::Sender<()> },
    /// An event from outside the scenes (an operator's action on an incident), handed to
    /// the sinks in one order with the scenes' own; `done` gets its number on the bus.
    Publish(Box<crate::model::Event>, crossbeam_channel::Sender<u64>),
}

/// See [`SceneCtl::Assign`].
pub struct Assignment {
    pub camera: Arc<str>,
    /// The checkpoint's bytes, when the state topic has one for the camera.
    pub state: Option<Vec<u8>>,
    /// Where the state came from, for logs and `/v1/cameras`.
    pub from: String,
    pub writer: Arc<dyn StateWriter>,
}

/// Everything the scene stage's thread owns.
pub struct SceneStage {
    pub scenes: HashMap<Arc<str>, CameraScene>,
    pub input: Receiver<Detected>,
    pub ctl: Receiver<SceneCtl>,
    pub bus: EventBus,
    pub models: Models,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub board: Arc<SnapshotBoard>,
    /// Where incident evidence goes (`[evidence]`); rendered on this thread.
    pub evidence: Option<Arc<crate::evidence::EvidenceStore>>,
    /// Incident clips (`[evidence.clip]`): the rings and recordings; encoded on their
    /// own thread.
    pub clips: Option<super::clips::ClipRecorder>,
    /// The optional captioning model; runs on this thread.
    pub captioner: Option<Captioner>,
    /// Scene state checkpoints, when `[scene_state]` is enabled.
    pub state: Option<StateKeeping>,
    /// Live cameras that stopped sending frames.
    pub down: DownWatch,
    /// Kafka cameras given up by [`SceneCtl::Release`]: another member analyses them.
    pub released: std::collections::HashSet<Arc<str>>,
    /// Where the bus goes when the stage ends (kept for operators' actions, or dropped).
    pub after: Arc<super::BusAfterScenes>,
    /// Cameras whose source ended by itself while others go on: finished already.
    pub ended: std::collections::HashSet<Arc<str>>,
}

/// When each live camera's last frame arrived: one silent for longer than `after` has its
/// open incidents closed, once, until frames come again.
pub struct DownWatch {
    pub after: Option<Duration>,
    pub last_frame: HashMap<Arc<str>, Instant>,
    /// Cameras whose incidents were closed for silence (not again until a frame comes).
    pub closed: std::collections::HashSet<Arc<str>>,
}

/// How often the scene stage looks for silent cameras.
const DOWN_SWEEP: Duration = Duration::from_millis(500);

/// Checkpoints of every camera's scene: written every `every`, and at shutdown; read
/// when a camera starts. The store writes (an fsync each) run on a thread of their own,
/// so the scene stage only pays for the checkpoint and its encoding.
pub struct StateKeeping {
    pub store: Arc<dyn StateStore>,
    pub every: Duration,
    pub max_gap_s: f64,
    /// Set when Argus is stopping (not when the sources ended by themselves): the open
    /// incidents then stay open in the last checkpoint, for the next start to continue.
    pub stopping: Arc<AtomicBool>,
    last_saved: HashMap<Arc<str>, Instant>,
    /// Set by `close`: the writer then waits a bounded time for the sinks.
    closing: Arc<AtomicBool>,
    /// Cameras whose state is kept elsewhere or not at all (Kafka cameras: their state
    /// must follow the frames topic's offsets, which the embedded store cannot).
    excluded: std::collections::HashSet<Arc<str>>,
    /// Excluded cameras assigned to this member and where their checkpoints go (the
    /// state topic of their Kafka source).
    routes: HashMap<Arc<str>, Arc<dyn StateWriter>>,
    /// Each assigned camera's scene before any frame: a camera assigned again starts
    /// from it (or from the state topic's checkpoint), never from what it was before.
    pristine: HashMap<Arc<str>, SceneState>,
    /// Cameras with frames since their last checkpoint: saved by the sweep once due, so
    /// a camera whose frames pause is still checkpointed (and its Kafka offsets commit).
    dirty: std::collections::HashSet<Arc<str>>,
    writer: Option<(crossbeam_channel::Sender<Job>, std::thread::JoinHandle<()>)>,
}

/// What the store writer does, in order.
enum Job {
    Save(Checkpoint),
    /// The camera's source ended: nothing left to continue (once the events published
    /// before, its closing ones, are durable).
    Forget(Arc<dyn StateWriter>, Arc<str>, u64),
    /// Answered once everything queued before it is written.
    Barrier(crossbeam_channel::Sender<()>),
}

/// One checkpoint on its way to the store.
struct Checkpoint {
    writer: Arc<dyn StateWriter>,
    camera: Arc<str>,
    position: Option<SourcePosition>,
    saved_at_ms: i64,
    bytes: Vec<u8>,
    started: Instant,
    /// Events published when it was taken: it is written only once every sink has
    /// written them, so a restart never skips frames whose events were not durable.
    published: u64,
}

/// At shutdown, how long the queued checkpoints wait for the sinks, all together, before
/// they are given up (the previous ones stay: the next start re-analyses a little more).
const SHUTDOWN_DURABILITY_WAIT: Duration = Duration::from_secs(10);

/// How long a camera's start waits for the checkpoints queued before it.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

/// Jobs waiting for the store; when full, a periodic checkpoint waits for the next turn.
const WRITE_QUEUE: usize = 64;

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

impl StateKeeping {
    pub fn new(store: Arc<dyn StateStore>, every: Duration, max_gap_s: f64, stopping: Arc<AtomicBool>) -> Self {
        Self {
            store,
            every,
            max_gap_s,
            stopping,
            last_saved: HashMap::new(),
            closing: Arc::default(),
            excluded: Default::default(),
            routes: HashMap::new(),
            pristine: HashMap::new(),
            dirty: Default::default(),
            writer: None,
        }
    }

    /// Leaves these cameras out: they start fresh and are never checkpointed.
    pub fn excluding(mut self, cameras: impl IntoIterator<Item = Arc<str>>) -> Self {
        self.excluded.extend(cameras);
        self
    }

    /// Continues `scene` from its checkpoint, or closes what the checkpoint left open.
    fn resume(&mut self, id: &Arc<str>, scene: &mut CameraScene, models: &Models, metrics: &Metrics, health: &Health) -> Vec<crate::model::Event> {
        if self.excluded.contains(id) {
            return Vec::new();
        }
        // A camera restarted by a reload: its old scene's last checkpoint (nothing open
        // any more) may still be queued; read what it wrote, not the one before.
        if let Some((tx, _)) = &self.writer {
            let (done, wait) = crossbeam_channel::bounded(1);
            // Bounded: a sink that never writes (its events never durable) holds the
            // writer, and must not hold the reload too.
            if tx.send(Job::Barrier(done)).is_ok() && wait.recv_timeout(BARRIER_WAIT).is_err() {
                tracing::warn!(camera = %id, "the scene state writer is behind (a sink is not writing): reading the last written checkpoint");
            }
        }
        let saved = match self.store.load_state(id) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(camera = %id, error = %e, "cannot read the camera's scene state: starting fresh");
                None
            }
        };
        let (outcome, detail, mut events) = scene.resume(saved, now_ms(), self.max_gap_s, models);
        metrics.scene_restores.with_label_values(&[outcome.as_str()]).inc();
        // A recording that continues analyses its frames after the checkpoint again, and
        // they reopen what they opened; everything else left open in the event store that
        // this start does not continue closes now.
        if !(outcome == ResumeOutcome::Restored && scene.is_recording()) {
            events.extend(self.close_left_open(id, scene, &events, models));
        }
        match outcome {
            ResumeOutcome::Restored | ResumeOutcome::None => tracing::info!(camera = %id, outcome = outcome.as_str(), %detail, "scene state"),
            _ => tracing::warn!(camera = %id, outcome = outcome.as_str(), %detail, closed = events.len(), "scene state not continued: starting fresh"),
        }
        health.update_source(id, |s| s.scene_state = Some(format!("{}: {detail}", outcome.as_str())));
        self.last_saved.insert(id.clone(), Instant::now());
        events
    }

    fn writer_for(&mut self, durability: &Durability, metrics: &Arc<Metrics>) -> &(crossbeam_channel::Sender<Job>, std::thread::JoinHandle<()>) {
        let closing = self.closing.clone();
        self.writer.get_or_insert_with(|| spawn_writer(durability.clone(), closing, metrics.clone()))
    }

    /// Where the camera's checkpoints go: its route when assigned, nowhere when it is
    /// excluded otherwise, else the embedded store.
    fn target(&self, id: &Arc<str>) -> Option<Arc<dyn StateWriter>> {
        match self.routes.get(id) {
            Some(w) => Some(w.clone()),
            None if self.excluded.contains(id) => None,
            None => Some(self.store.clone()),
        }
    }

    /// A Kafka camera taken over: its scene starts from the assignment's checkpoint,
    /// exactly (the frames topic keeps every frame since, so no gap applies), or afresh.
    /// Returns the closes of a checkpoint that does not fit (another configuration).
    fn take_over(&mut self, a: Assignment, scene: &mut CameraScene, models: &Models, metrics: &Metrics, health: &Health) -> Vec<crate::model::Event> {
        let Assignment { camera, state, from, writer } = a;
        let pristine = self.pristine.entry(camera.clone()).or_insert_with(|| scene.checkpoint());
        if let Err(e) = scene.restore(pristine.clone()) {
            tracing::error!(%camera, error = %e, "cannot reset the scene to its start");
        }
        let now = now_ms();
        let (outcome, detail, events) = scene.resume(state.map(|b| (now, b)), now, f64::INFINITY, models);
        metrics.scene_restores.with_label_values(&[outcome.as_str()]).inc();
        match outcome {
            ResumeOutcome::Restored | ResumeOutcome::None => tracing::info!(%camera, outcome = outcome.as_str(), %detail, %from, "camera assigned"),
            _ => {
                tracing::warn!(%camera, outcome = outcome.as_str(), %detail, %from, closed = events.len(), "camera assigned: its checkpoint not continued, starting fresh")
            }
        }
        health.update_source(&camera, |s| s.scene_state = Some(format!("{}: {detail} ({from})", outcome.as_str())));
        self.routes.insert(camera.clone(), writer);
        self.last_saved.insert(camera, Instant::now());
        events
    }

    /// Kafka cameras given up: a last checkpoint each (unless `checkpoint` is false),
    /// then `done` once everything queued is written.
    fn release(
        &mut self,
        cameras: &[(Arc<str>, &CameraScene)],
        checkpoint: bool,
        done: crossbeam_channel::Sender<()>,
        durability: &Durability,
        metrics: &Arc<Metrics>,
    ) {
        for (id, scene) in cameras {
            if checkpoint {
                self.save(id, scene, durability, metrics, true);
            }
            self.routes.remove(id);
            self.last_saved.remove(id);
            self.dirty.remove(id);
        }
        let tx = &self.writer_for(durability, metrics).0;
        if let Err(crossbeam_channel::SendError(Job::Barrier(done))) = tx.send(Job::Barrier(done)) {
            let _ = done.send(());
        }
    }

    /// `incident.closed` for the incidents the event store holds open that neither the
    /// scene continues nor `closing` already closes: opened by a run that stopped before
    /// a checkpoint held them, or whose checkpoint was unreadable.
    fn close_left_open(&self, id: &Arc<str>, scene: &CameraScene, closing: &[crate::model::Event], models: &Models) -> Vec<crate::model::Event> {
        let stored = match self.store.open_incidents(id) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(camera = %id, error = %e, "cannot read the incidents the event store holds open");
                return Vec::new();
            }
        };
        let mut done: std::collections::HashSet<String> = scene.open_incident_ids().into_iter().collect();
        done.extend(closing.iter().filter_map(|e| e.incident_id.clone()));
        let now = now_ms();
        let mut out = Vec::new();
        for inc in stored.iter().filter(|i| i.last.incident_id.as_ref().is_some_and(|i| !done.contains(i))) {
            let from = unix_ms(inc.last.processed_at);
            let mut ev = scene.close_stored(inc, &scene_state::not_observed(from, now), models);
            scene_state::mark_unobserved(std::slice::from_mut(&mut ev), from, now);
            out.push(ev);
        }
        if !out.is_empty() {
            tracing::warn!(camera = %id, closed = out.len(), "incidents left open by an earlier run closed");
        }
        out
    }

    /// Queues the camera's checkpoint when one is due (`force`: now, waiting for room).
    fn save(&mut self, id: &Arc<str>, scene: &CameraScene, durability: &Durability, metrics: &Arc<Metrics>, force: bool) {
        let Some(writer) = self.target(id) else { return };
        if !force && self.last_saved.get(id).is_some_and(|t| t.elapsed() < self.every) {
            self.dirty.insert(id.clone());
            return;
        }
        let started = Instant::now();
        let published = durability.published.load(Ordering::SeqCst);
        let state = scene.checkpoint();
        let position = state.position.clone();
        let job = Job::Save(Checkpoint { writer, camera: id.clone(), position, saved_at_ms: now_ms(), bytes: state.to_bytes(), started, published });
        let tx = &self.writer_for(durability, metrics).0;
        let queued = if force { tx.send(job).is_ok() } else { tx.try_send(job).is_ok() };
        if queued {
            self.last_saved.insert(id.clone(), started);
            self.dirty.remove(id);
        } else {
            self.dirty.insert(id.clone());
        }
    }

    /// Checkpoints the cameras with frames since their last checkpoint, once due.
    fn save_due(&mut self, scenes: &HashMap<Arc<str>, CameraScene>, durability: &Durability, metrics: &Arc<Metrics>) {
        let due: Vec<Arc<str>> = self.dirty.iter().filter(|id| self.last_saved.get(*id).is_none_or(|t| t.elapsed() >= self.every)).cloned().collect();
        for id in due {
            match scenes.get(&id) {
                Some(scene) => self.save(&id, scene, durability, metrics, false),
                None => {
                    self.dirty.remove(&id);
                }
            }
        }
    }

    /// Forgets the camera's state once the queued checkpoints before it are written: its
    /// source ended, so the next start begins afresh (a file from its beginning).
    fn forget(&mut self, id: &Arc<str>, durability: &Durability, metrics: &Arc<Metrics>) {
        let Some(writer) = self.target(id) else { return };
        let job = Job::Forget(writer, id.clone(), durability.published.load(Ordering::SeqCst));
        let tx = &self.writer_for(durability, metrics).0;
        let _ = tx.send(job);
        self.last_saved.remove(id);
        self.dirty.remove(id);
    }

    /// Waits until every queued checkpoint is in the store (or given up, see
    /// [`SHUTDOWN_DURABILITY_WAIT`]).
    fn close(mut self) {
        self.closing.store(true, Ordering::Relaxed);
        if let Some((tx, thread)) = self.writer.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

/// Waits until the sinks have written the first `published` events; false when given
/// up at shutdown. `deadline`: the shutdown's one deadline for every job still queued,
/// set when the writer first sees `closing`.
fn wait_durable(durability: &Durability, published: u64, closing: &AtomicBool, deadline: &mut Option<Instant>) -> bool {
    while durability.durable() < published {
        if closing.load(Ordering::Relaxed) {
            let at = *deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_DURABILITY_WAIT);
            if Instant::now() >= at {
                return false;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

fn spawn_writer(durability: Durability, closing: Arc<AtomicBool>, metrics: Arc<Metrics>) -> (crossbeam_channel::Sender<Job>, std::thread::JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(WRITE_QUEUE);
    let thread = std::thread::Builder::new()
        .name("scene-state".into())
        .spawn(move || {
            let mut deadline = None;
            for job in rx {
                let c = match job {
                    Job::Save(c) => c,
                    Job::Forget(store, camera, published) => {
                        if !wait_durable(&durability, published, &closing, &mut deadline) {
                            tracing::warn!(%camera, "the sinks did not write the closing events in time: the scene state stays");
                            continue;
                        }
                        match store.delete_state(&camera) {
                            Ok(()) => tracing::info!(%camera, "source ended: scene state forgotten"),
                            Err(e) => tracing::warn!(%camera, error = %e, "cannot forget the scene state"),
                        }
                        continue;
                    }
                    Job::Barrier(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                if !wait_durable(&durability, c.published, &closing, &mut deadline) {
                    tracing::warn!(camera = %c.camera, "the sinks did not write this checkpoint's events in time: the previous checkpoint stays");
                    continue;
                }
                match c.writer.save_state(&c.camera, c.saved_at_ms, &c.bytes, c.position.as_ref()) {
                    Ok(()) => {
                        metrics.checkpoints_written.inc();
                        metrics.checkpoint_bytes.inc_by(c.bytes.len() as u64);
                        metrics.checkpoint_seconds.observe(c.started.elapsed().as_secs_f64());
                    }
                    Err(e) => tracing::warn!(camera = %c.camera, error = %e, "scene state checkpoint failed (the next one retries)"),
                }
            }
        })
        .expect("spawn the scene state writer");
    (tx, thread)
}

impl SceneStage {
    /// Runs until the detect stage's output closes (every source ended, or Argus is
    /// stopping), then closes every open incident and parks the bus
    /// ([`super::BusAfterScenes`]): dropped, so the sinks drain and stop, unless an
    /// outlet still takes operators' actions.
    pub fn run(mut self) {
        if let Some(k) = self.state.as_mut() {
            let mut ids: Vec<Arc<str>> = self.scenes.keys().cloned().collect();
            ids.sort();
            for id in ids {
                let scene = self.scenes.get_mut(&id).expect("listed");
                for ev in k.resume(&id, scene, &self.models, &self.metrics, &self.health) {
                    self.bus.publish(ev);
                }
            }
        }
        self.process_frames();
        let stopping = self.state.as_ref().is_some_and(|k| k.stopping.load(Ordering::Relaxed));
        for (id, scene) in self.scenes.iter_mut() {
            // A released Kafka camera's scene is another member's now; an ended camera
            // was finished (and its state forgotten) when its source ended.
            if self.released.contains(id) || self.ended.contains(id) {
                continue;
            }
            // Stopping with checkpoints: incidents stay open in the last checkpoint, and
            // the next start continues or closes them. Otherwise every source ended by
            // itself: incidents close now, and nothing is left to continue (the next
            // start reads a file again from its beginning).
            if stopping {
                if let Some(k) = self.state.as_mut() {
                    k.save(id, scene, &self.bus.durability(), &self.metrics, true);
                }
                continue;
            }
            let mut events = scene.finish("source ended", &self.models);
            if let Some(c) = self.clips.as_mut() {
                c.events(&mut events);
            }
            for ev in events {
                self.bus.publish(ev);
            }
            if let Some(k) = self.state.as_mut() {
                k.forget(id, &self.bus.durability(), &self.metrics);
            }
        }
        if let Some(k) = self.state.take() {
            k.close();
        }
        self.metrics.incidents_open.set(0);
        // Actions queued behind the last frames go out in order before the bus leaves.
        while let Ok(ctl) = self.ctl.try_recv() {
            if let SceneCtl::Publish(ev, done) = ctl {
                let _ = done.send(self.bus.publish(*ev));
            }
        }
        // Recordings end with what they have; their files are complete before the sinks
        // can be told that every event is written.
        if let Some(c) = self.clips.take() {
            c.finish();
        }
        let Self { bus, after, .. } = self;
        after.park(bus);
    }

    fn apply(&mut self, ctl: SceneCtl) {
        match ctl {
            SceneCtl::Publish(ev, done) => {
                let _ = done.send(self.bus.publish(*ev));
            }
            SceneCtl::Add(id, scene, live) => {
                if live {
                    self.down.last_frame.insert(id.clone(), Instant::now());
                }
                let mut scene = *scene;
                self.ended.remove(&id);
                if let Some(k) = self.state.as_mut() {
                    for ev in k.resume(&id, &mut scene, &self.models, &self.metrics, &self.health) {
                        self.bus.publish(ev);
                    }
                }
                self.scenes.insert(id, scene);
            }
            SceneCtl::Assign(a) => {
                let id = a.camera.clone();
                self.released.remove(&id);
                let (Some(k), Some(scene)) = (self.state.as_mut(), self.scenes.get_mut(&id)) else { return };
                for ev in k.take_over(a, scene, &self.models, &self.metrics, &self.health) {
                    self.bus.publish(ev);
                }
            }
            SceneCtl::Release { cameras, checkpoint, done } => {
                let durability = self.bus.durability();
                let mut given_up = Vec::new();
                for id in cameras {
                    if let Some((id, scene)) = self.scenes.get_key_value(&id) {
                        given_up.push((id.clone(), scene));
                    }
                    self.released.insert(id);
                }
                match self.state.as_mut() {
                    Some(k) => k.release(&given_up, checkpoint, done, &durability, &self.metrics),
                    None => {
                        let _ = done.send(());
                    }
                }
            }
            SceneCtl::Remove(id, why) => {
                self.down.last_frame.remove(&id);
                self.down.closed.remove(&id);
                if let Some(mut scene) = self.scenes.remove(&id) {
                    let mut events = scene.finish(why, &self.models);
                    if let Some(c) = self.clips.as_mut() {
                        c.events(&mut events);
                        c.camera_ended(&id);
                    }
                    for ev in events {
                        self.bus.publish(ev);
                    }
                    // Nothing left open in its checkpoint: a re-added camera starts clean
                    // (one whose source had ended left no state, and leaves none).
                    if !self.ended.remove(&id)
                        && let Some(k) = self.state.as_mut()
                    {
                        k.save(&id, &scene, &self.bus.durability(), &self.metrics, true);
                    }
                }
                // Gone for good: its metric series go too, here where the last of them
                // are written, so a fleet that renames cameras does not grow the scrape
                // without bound (a changed camera keeps counting).
                if why == REMOVED {
                    let n = self.metrics.forget_camera(&id);
                    tracing::debug!(camera = %id, series = n, "metric series of a removed camera dropped");
                }
            }
        }
    }

    /// Closes the open incidents of every live camera silent for longer than
    /// `down.after` ("not observed since …", with `not_observed` from its last frame to
    /// now), and checkpoints it so a restart does not bring them back.
    fn close_silent_cameras(&mut self) {
        let Some(after) = self.down.after else { return };
        let silent: Vec<Arc<str>> =
            self.down.last_frame.iter().filter(|(id, t)| t.elapsed() > after && !self.down.closed.contains(*id)).map(|(id, _)| id.clone()).collect();
        for id in silent {
            self.down.closed.insert(id.clone());
            let Some(scene) = self.scenes.get_mut(&id) else { continue };
            if scene.open_incidents() == 0 {
                continue;
            }
            let silent_for = self.down.last_frame[&id].elapsed();
            let now = now_ms();
            let since = now - silent_for.as_millis() as i64;
            let why = format!("not observed since {} (no frame for {:.0} s)", scene_state::wall_time(since), silent_for.as_secs_f64());
            let mut events = scene.finish(&why, &self.models);
            scene_state::mark_unobserved(&mut events, since, now);
            // No frame closed these: the evidence is the last frame the camera sent.
            if let (Some(store), Some(last)) = (&self.evidence, self.board.get(&id)) {
                super::evidence::attach(store, &mut events, &last, &self.metrics);
            }
            if let Some(c) = self.clips.as_mut() {
                c.events(&mut events);
            }
            tracing::warn!(camera = %id, closed = events.len(), silent_s = silent_for.as_secs_f64(), "camera silent: its open incidents closed");
            for ev in events {
                self.bus.publish(ev);
            }
            if let Some(k) = self.state.as_mut() {
                k.save(&id, scene, &self.bus.durability(), &self.metrics, true);
            }
        }
        self.metrics.incidents_open.set(self.open_incidents());
    }

    fn process_frames(&mut self) {
        let hist = self.metrics.stage_seconds.with_label_values(&["scene"]);
        let durability = self.bus.durability();
        // Open incidents' levels per camera, for the snapshot's banner.
        let mut open_levels: HashMap<Arc<str>, HashMap<String, Level>> = HashMap::new();
        let mut last_sweep = Instant::now();
        loop {
            if last_sweep.elapsed() >= DOWN_SWEEP {
                self.close_silent_cameras();
                if let Some(store) = &self.evidence {
                    super::evidence::prune(store, &self.metrics);
                }
                if let Some(k) = self.state.as_mut() {
                    k.save_due(&self.scenes, &durability, &self.metrics);
                }
                last_sweep = Instant::now();
            }
            let DetectedFrame { frame, detections } = crossbeam_channel::select! {
                recv(self.input) -> msg => match msg {
                    Ok(Detected::Frame(f)) => f,
                    Ok(Detected::SourceEnded(id)) => {
                        self.source_ended(id);
                        continue;
                    }
                    Err(_) => break,
                },
                default(DOWN_SWEEP) => continue,
                recv(self.ctl) -> msg => {
                    if let Ok(c) = msg {
                        if let SceneCtl::Remove(id, _) = &c {
                            self.board.remove(id);
                            open_levels.remove(id);
                        }
                        self.apply(c);
                    }
                    continue;
                }
            };
            let _span = tracing::debug_span!("frame", camera = %frame.camera_id, seq = frame.seq).entered();
            if !self.scenes.contains_key(&frame.camera_id) {
                // A camera just added: its Add may still be queued behind this frame.
                while let Ok(c) = self.ctl.try_recv() {
                    self.apply(c);
                }
            }
            let Some(scene) = self.scenes.get_mut(&frame.camera_id) else {
                // A camera just removed: its last frames are dropped, counted under no
                // camera's name (its series are gone).
                self.metrics.frames_dropped.with_label_values(&["", "camera_removed"]).inc();
                continue;
            };
            if self.released.contains(&frame.camera_id) {
                // Given up to another member, which analyses this frame again from the
                // checkpoint the release wrote (its offset is not committed here).
                self.metrics.frames_dropped.with_label_values(&[&frame.camera_id, "not_assigned"]).inc();
                continue;
            }
            if let Some(t) = self.down.last_frame.get_mut(&frame.camera_id) {
                *t = Instant::now();
                self.down.closed.remove(&frame.camera_id);
            }
            let t0 = Instant::now();
            let mut events = scene.process(&frame, detections, &self.models);
            hist.observe(t0.elapsed().as_secs_f64());
            if let Some(c) = self.captioner.as_mut() {
                // Off the API's tokio workers; timed as stage "caption", not "scene".
                c.annotate(&mut events, &frame.image, &self.metrics);
            }
            self.metrics.frames_processed.with_label_values(&[&frame.camera_id]).inc();
            self.health.frame_processed(&frame.camera_id);
            self.metrics.frame_latency_seconds.observe(frame.received.elapsed().as_secs_f64());
            let levels = open_levels.entry(frame.camera_id.clone()).or_default();
            for ev in &events {
                if let Some(id) = &ev.incident_id {
                    match ev.kind {
                        EventKind::IncidentClosed => levels.remove(id),
                        _ => levels.insert(id.clone(), ev.risk.level),
                    };
                }
            }
            let snapshot = Snapshot {
                image: frame.image.clone(),
                seq: frame.seq,
                captured_at: frame.captured_at,
                objects: scene.last_objects().to_vec(),
                zones: scene.zones().clone(),
                world_to_image: scene.world_to_image(),
                level: levels.values().copied().max(),
            };
            if let Some(store) = &self.evidence {
                super::evidence::attach(store, &mut events, &snapshot, &self.metrics);
            }
            if let Some(c) = self.clips.as_mut() {
                // The frame first: an opening's pre-roll ends with the frame that opened it.
                c.frame(&frame.camera_id, frame.captured_at, &frame.image);
                c.events(&mut events);
            }
            self.board.update(&frame.camera_id, snapshot);
            // A frame that changed an incident is checkpointed at once (not at the next
            // interval), so a restart after the gap knows every incident it must close.
            let incident_changed = events.iter().any(|e| e.incident_id.is_some());
            for ev in events {
                self.bus.publish(ev);
            }
            // After its events are on the bus (and written once they are durable): a
            // checkpoint never covers events that could still be lost.
            if let Some(k) = self.state.as_mut() {
                k.save(&frame.camera_id, scene, &durability, &self.metrics, incident_changed);
            }
            self.metrics.incidents_open.set(self.open_incidents());
        }
    }

    /// A camera's source ended by itself (its recording's end) while other cameras go
    /// on: its open incidents close now ("source ended"), not when the last camera ends,
    /// and its state is forgotten (the next start reads the recording again).
    fn source_ended(&mut self, id: Arc<str>) {
        self.down.last_frame.remove(&id);
        let Some(scene) = self.scenes.get_mut(&id) else { return };
        if self.state.as_ref().is_some_and(|k| k.stopping.load(Ordering::Relaxed)) {
            return; // stopping: the checkpoint keeps the incidents for the next start
        }
        let mut events = scene.finish("source ended", &self.models);
        if let (Some(store), Some(last)) = (&self.evidence, self.board.get(&id)) {
            super::evidence::attach(store, &mut events, &last, &self.metrics);
        }
        if let Some(c) = self.clips.as_mut() {
            c.events(&mut events);
            c.camera_ended(&id);
        }
        tracing::info!(camera = %id, closed = events.len(), "source ended: its open incidents closed");
        for ev in events {
            self.bus.publish(ev);
        }
        if let Some(k) = self.state.as_mut() {
            k.forget(&id, &self.bus.durability(), &self.metrics);
        }
        self.ended.insert(id);
        self.metrics.incidents_open.set(self.open_incidents());
    }

    /// Open incidents of the cameras this member analyses.
    fn open_incidents(&self) -> i64 {
        self.scenes.iter().filter(|(id, _)| !self.released.contains(*id)).map(|(_, s)| s.open_incidents() as i64).sum()
    }
}
