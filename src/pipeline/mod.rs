//! The topology between sources and sinks: `FrameHub` (one bounded lane per camera) →
//! detect stage (batched across cameras) → scene stage (per-camera scenes) →
//! `EventBus` (one bounded queue per sink). Every stage is a plain thread; edges are
//! bounded; shutdown drains every edge. Sources push into the hub and sinks drain the
//! bus: this module knows neither (the app wires them).

pub mod bus;
pub mod clips;
pub mod detect_stage;
pub mod evidence;
pub mod hub;
pub mod scene;
pub mod scene_stage;
pub mod scene_state;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::caption::model::Captioner;
use crate::detect::Detector;
use crate::model::{Models, SCENE_CAPTIONER};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::supervise::Supervisor;
use bus::EventBus;
use detect_stage::Detected;
use hub::{FrameHub, LaneSender, Overflow};
use scene::CameraScene;
use scene_stage::{SceneCtl, SceneStage, StateKeeping};
use snapshot::SnapshotBoard;

/// How the stages batch and queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageSettings {
    /// Frames queued per camera between its source and the detector.
    pub frame_queue: usize,
    /// Pixel bytes queued per camera, at most (`limits.frame_queue_mb`).
    pub frame_queue_bytes: usize,
    /// Frames from all cameras batched into one detector call, at most.
    pub max_batch: usize,
    /// Frames of one camera in one detector call, at most.
    pub max_batch_per_camera: usize,
    /// How long the batcher waits to fill a batch once it has one frame.
    pub max_wait: Duration,
    /// Model workers and their threads (`detector.workers`, `detector.threads`).
    pub detect_layout: detect_stage::Layout,
    /// A live camera without a frame for this long has its open incidents closed ("not
    /// observed since …"): no incident stays open while its camera is down.
    pub camera_down_after: Option<Duration>,
}

/// The shared handles every stage reports to.
#[derive(Clone)]
pub struct StageContext {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub board: Arc<SnapshotBoard>,
    /// Where incident evidence is stored (`[evidence]` enabled).
    pub evidence: Option<Arc<crate::evidence::EvidenceStore>>,
    /// Incident clips (`[evidence.clip]` on, a GStreamer build).
    pub clips: Option<ClipSetup>,
}

/// What the scene stage records incident clips with.
#[derive(Clone)]
pub struct ClipSetup {
    pub cfg: crate::evidence::clip::ClipConfig,
    pub store: Arc<crate::evidence::clip::ClipStore>,
    /// A new encoder (one per stage run).
    pub encoder: Arc<dyn Fn() -> Box<dyn crate::evidence::clip::ClipEncoder> + Send + Sync>,
}

impl StageContext {
    /// A context with its own snapshot board and no evidence (benchmarks, tests).
    pub fn new(metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        Self { metrics, health, board: Arc::default(), evidence: None, clips: None }
    }
}

/// The running stages.
pub struct Stages {
    hub: Arc<FrameHub>,
    threads: Vec<JoinHandle<()>>,
    scene_ctl: Sender<SceneCtl>,
    done: Receiver<()>,
    settings: StageSettings,
    /// Set by `begin_shutdown` (scene state keeping only).
    stopping: Option<Arc<AtomicBool>>,
    durability: bus::Durability,
    after: Arc<BusAfterScenes>,
}

/// Publishes events from outside the scenes (operators' actions): through the scene
/// stage while it runs, so they reach the sinks in one order with the scenes' events
/// and count in the same durability; once every source has ended, straight onto the
/// bus the stage left behind ([`BusAfterScenes`]), until [`EventOutlet::close`].
#[derive(Clone)]
pub struct EventOutlet {
    ctl: Sender<SceneCtl>,
    durability: bus::Durability,
    after: Arc<BusAfterScenes>,
}

/// The event bus once the scene stage has ended, kept (instead of dropped, which ends
/// the sinks) while someone holds an [`EventOutlet`]: a run that keeps serving its API
/// after its recordings ended still takes operators' actions.
#[derive(Default)]
pub struct BusAfterScenes {
    keep: std::sync::atomic::AtomicBool,
    bus: parking_lot::Mutex<Option<EventBus>>,
}

impl BusAfterScenes {
    /// Called by the scene stage as it ends: keeps the bus when an outlet wants it, else
    /// drops it (the sinks drain and stop).
    pub fn park(&self, bus: EventBus) {
        let mut slot = self.bus.lock();
        if self.keep.load(Ordering::SeqCst) {
            *slot = Some(bus);
        }
    }
}

const ENDED: &str = "the pipeline has stopped";

impl EventOutlet {
    /// Hands `ev` to the sinks; its number on the bus (durable once [`Self::durable`]
    /// reaches it). An error once the outlet is closed (Argus is stopping), or when the
    /// scene stage does not take it within `wait` (busy behind full sink queues).
    pub fn publish(&self, ev: crate::model::Event, wait: Duration) -> Result<u64, String> {
        let (tx, rx) = bounded(1);
        // A copy stays here: should the stage end with the message still queued, the
        // event was never published and goes onto the bus it left.
        if self.ctl.send(SceneCtl::Publish(Box::new(ev.clone()), tx)).is_ok() {
            match rx.recv_timeout(wait) {
                Ok(n) => return Ok(n),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(format!("the pipeline did not take the event within {wait:?} (its sinks are behind)"));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
            }
        }
        // The stage has ended: it parks the bus before it drops its end of `ctl`, so
        // the bus is here unless the outlet was closed (or the stage died).
        let slot = self.after.bus.lock();
        let bus = slot.as_ref().ok_or_else(|| ENDED.to_string())?;
        Ok(bus.publish(ev))
    }

    /// Events durable in every sink so far.
    pub fn durable(&self) -> u64 {
        self.durability.durable()
    }

    /// Every event published so far is durable in every sink.
    pub fn all_durable(&self) -> bool {
        self.durability.durable() >= self.durability.published.load(Ordering::SeqCst)
    }

    /// No more events: drops the bus the stage left (the sinks drain and stop), or
    /// tells the stage to drop it when it ends.
    pub fn close(&self) {
        let mut slot = self.after.bus.lock();
        self.after.keep.store(false, Ordering::SeqCst);
        slot.take();
    }
}

/// Opens a lane per camera, then starts the detect and scene stages. Lanes must be open
/// before the detect stage starts (a hub without open lanes reads as "all sources ended"),
/// so the cameras come with their scenes: `(scene, live)` per camera id.
pub fn start(
    cameras: Vec<(Arc<str>, CameraScene, bool)>,
    captioner: Option<Captioner>,
    detector: Box<dyn Detector>,
    bus: EventBus,
    settings: StageSettings,
    cx: StageContext,
    state: Option<StateKeeping>,
) -> std::io::Result<(Stages, HashMap<Arc<str>, LaneSender>)> {
    let models = Models { detector: detector.info().model_id.clone(), captioner: SCENE_CAPTIONER.into() };
    let durability = bus.durability();
    let after = Arc::new(BusAfterScenes::default());
    let hub = FrameHub::with_lane_bytes(settings.frame_queue_bytes);
    let mut lanes = HashMap::new();
    let mut scenes = HashMap::new();
    let mut live_cameras = HashMap::new();
    for (id, scene, live) in cameras {
        lanes.insert(id.clone(), open_lane(&hub, &id, live, settings.frame_queue));
        if live {
            live_cameras.insert(id.clone(), std::time::Instant::now());
        }
        scenes.insert(id, scene);
    }
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<SceneCtl>();
    let (det_tx, det_rx) = bounded::<Detected>(settings.frame_queue.max(1) * 2);
    let (done_tx, done) = bounded::<()>(1);
    let mut threads = Vec::new();
    let sup = Supervisor { health: cx.health.clone(), metrics: cx.metrics.clone() };
    {
        let (hub, sup_inner) = (hub.clone(), sup.clone());
        let batching = detect_stage::Batching { max: settings.max_batch, per_camera: settings.max_batch_per_camera, max_wait: settings.max_wait };
        let layout = settings.detect_layout;
        threads.push(sup.spawn("stage-detect", move || detect_stage::run(detector, hub, det_tx, batching, layout, &sup_inner))?);
    }
    let stopping = state.as_ref().map(|k| k.stopping.clone());
    let down = scene_stage::DownWatch { after: settings.camera_down_after, last_frame: live_cameras, closed: Default::default() };
    let clips = match cx.clips {
        Some(c) => Some(clips::ClipRecorder::start(c.cfg, c.store, (c.encoder)(), cx.metrics.clone())?),
        None => None,
    };
    let stage = SceneStage {
        scenes,
        input: det_rx,
        ctl: ctl_rx,
        bus,
        models,
        metrics: cx.metrics,
        health: cx.health,
        board: cx.board,
        evidence: cx.evidence,
        clips,
        captioner,
        state,
        down,
        released: Default::default(),
        ended: Default::default(),
        after: after.clone(),
    };
    threads.push(sup.spawn("stage-scene", move || {
        stage.run();
        let _ = done_tx.send(());
    })?);
    Ok((Stages { hub, threads, scene_ctl: ctl_tx, done, settings, stopping, durability, after }, lanes))
}

fn open_lane(hub: &Arc<FrameHub>, id: &Arc<str>, live: bool, queue: usize) -> LaneSender {
    // Live cameras keep the newest frames; files (and Kafka, which pauses) lose nothing.
    let overflow = if live { Overflow::DropOldest } else { Overflow::Block };
    hub.lane(id.clone(), queue, overflow)
}

/// What a Kafka source uses to move its cameras' scenes between members: take a camera
/// over (from its checkpoint) and give cameras up (after a last checkpoint).
#[derive(Clone)]
pub struct SceneHandoff(Sender<SceneCtl>);

impl SceneHandoff {
    pub fn assign(&self, a: scene_stage::Assignment) {
        let _ = self.0.send(SceneCtl::Assign(a));
    }

    /// Answered once the cameras' last checkpoints are written (or the stage is gone).
    pub fn release(&self, cameras: Vec<Arc<str>>, checkpoint: bool) -> Receiver<()> {
        let (done, wait) = bounded(1);
        if let Err(crossbeam_channel::SendError(SceneCtl::Release { done, .. })) = self.0.send(SceneCtl::Release { cameras, checkpoint, done }) {
            let _ = done.send(());
        }
        wait
    }
}

impl Stages {
    /// The scene handoff for a Kafka source (scene state keeping on), else none.
    pub fn handoff(&self) -> Option<SceneHandoff> {
        self.stopping.is_some().then(|| SceneHandoff(self.scene_ctl.clone()))
    }

    /// A new camera: its scene joins the scene stage, its lane the hub.
    pub fn add_camera(&self, id: Arc<str>, scene: CameraScene, live: bool) -> LaneSender {
        let _ = self.scene_ctl.send(SceneCtl::Add(id.clone(), Box::new(scene), live));
        open_lane(&self.hub, &id, live, self.settings.frame_queue)
    }

    /// A camera removed: its open incidents close (`why`: "camera removed",
    /// "configuration changed"), its snapshot goes.
    pub fn remove_camera(&self, id: &Arc<str>, why: &'static str) {
        let _ = self.scene_ctl.send(SceneCtl::Remove(id.clone(), why));
    }

    /// Holds the hub open while lanes come and go, so the detect stage never sees "every
    /// source ended" in the middle of a reload.
    pub fn hold_open(&self) -> LaneSender {
        self.hub.lane(Arc::from("(reload)"), 1, Overflow::Block)
    }

    /// True once a stage thread has ended (every source ended).
    pub fn finished(&self) -> bool {
        self.threads.iter().any(|h| h.is_finished())
    }

    /// Waits up to `timeout` for every source to end and every event to reach the
    /// sinks' queues. Returns true once (then the pipeline is finished).
    pub fn wait_done(&self, timeout: Duration) -> bool {
        self.done.recv_timeout(timeout).is_ok()
    }

    /// Where events from outside the scenes go in (operators' actions). From now on
    /// the bus outlives the scene stage until [`EventOutlet::close`]: whoever asks for
    /// an outlet closes it, or the sinks never stop.
    pub fn outlet(&self) -> EventOutlet {
        self.after.keep.store(true, Ordering::SeqCst);
        EventOutlet { ctl: self.scene_ctl.clone(), durability: self.durability.clone(), after: self.after.clone() }
    }

    /// Frames waiting for the detector right now.
    pub fn queued_frames(&self) -> usize {
        self.hub.depth()
    }

    /// Argus is stopping (not every source ending by itself): with scene state keeping,
    /// open incidents stay open in the last checkpoint instead of closing.
    pub fn begin_shutdown(&self) {
        if let Some(s) = &self.stopping {
            s.store(true, Ordering::Relaxed);
        }
    }

    /// Drains the stages (the sources must have stopped: their lanes closed).
    pub fn join(self) {
        drop(self.scene_ctl);
        for h in self.threads {
            let _ = h.join();
        }
    }
}
