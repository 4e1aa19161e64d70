//! The fleet thread of a member (`[fleet]` enabled): its view for `/v1/fleet` and the
//! flag that stops it (the tombstone goes out then).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::AppError;
use crate::config::ValidConfig;
use crate::fleet::{FleetView, MemberIdentity};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

pub(super) struct Fleet {
    pub member: String,
    pub view: Arc<FleetView>,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl Fleet {
    /// Stops publishing (a tombstone: this member leaves the view) and waits for it.
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

pub(super) fn start(
    cfg: &ValidConfig,
    role: &'static str,
    shard: Option<String>,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> Result<Option<Fleet>, AppError> {
    let f = &cfg.argus.fleet;
    if !f.enabled {
        return Ok(None);
    }
    let identity = MemberIdentity {
        member: f.member(role),
        role,
        shard,
        api: cfg.argus.server.listen.clone(),
        started_at: time::OffsetDateTime::now_utc(),
        every: Duration::from_secs_f64(f.publish_every_s),
    };
    tracing::info!(member = %identity.member, topic = %f.topic, "publishing this member's status to the fleet topic");
    let member = identity.member.clone();
    let view = Arc::new(FleetView::new(&member, Duration::from_secs_f64(f.stale_after_s)));
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(feature = "kafka")]
    let thread = Some(
        crate::fleet::kafka::spawn(crate::fleet::kafka::FleetLink {
            cfg: f.clone(),
            identity,
            health: health.clone(),
            view: view.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        })
        .map_err(AppError::Thread)?,
    );
    #[cfg(not(feature = "kafka"))]
    let thread = {
        // `argus check` refuses [fleet] in this build.
        let _ = (identity, health, metrics);
        None
    };
    Ok(Some(Fleet { member, view, stop, thread }))
}
