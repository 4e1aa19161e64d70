//! Prometheus metrics, named `argus_<noun>_<verb>_total` for counters.

use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    pub registry: Registry,
    pub frames_received: IntCounterVec,
    pub frames_dropped: IntCounterVec,
    pub frames_processed: IntCounterVec,
    pub frames_failed: IntCounterVec,
    /// `argus ingest`: frames the broker confirmed.
    pub frames_published: IntCounterVec,
    /// `argus ingest`: from capture to the broker's confirmation.
    pub frame_publish_seconds: Histogram,
    pub stage_seconds: HistogramVec,
    pub frame_latency_seconds: Histogram,
    pub batch_size: Histogram,
    pub events_emitted: IntCounterVec,
    /// Operators' actions on incidents, by kind (`incident.acknowledged`, …).
    pub incident_actions: IntCounterVec,
    pub events_published: IntCounterVec,
    pub sink_writes_failed: IntCounterVec,
    pub sink_events_shed: IntCounterVec,
    pub sink_events_rejected: IntCounterVec,
    pub sink_events_abandoned: IntCounterVec,
    pub thread_panics: IntCounterVec,
    pub sink_queue_depth: IntGaugeVec,
    pub source_restarts: IntCounterVec,
    pub source_probes: IntCounterVec,
    pub source_clock_jumps: IntCounterVec,
    pub incidents_open: IntGauge,
    pub live_clients: IntGauge,
    pub live_clients_dropped: prometheus::IntCounter,
    pub spool_events: IntGaugeVec,
    pub spool_bytes: IntGaugeVec,
    pub spool_events_spooled: IntCounterVec,
    pub spool_events_replayed: IntCounterVec,
    pub spool_full: IntCounterVec,
    pub spool_dead_letters: IntCounterVec,
    pub clickhouse_rows_written: IntCounterVec,
    pub clickhouse_batches_written: IntCounterVec,
    pub clickhouse_inserts_failed: IntCounterVec,
    pub kafka_messages_consumed: IntCounterVec,
    pub kafka_messages_rejected: IntCounterVec,
    pub kafka_offsets_committed: IntCounterVec,
    pub kafka_pauses: IntCounterVec,
    pub kafka_messages_skipped: IntCounterVec,
    pub kafka_rebalances: IntCounterVec,
    /// Messages behind the high watermark, per assigned partition (librdkafka's
    /// statistics; tansu's memory storage reports a wrong high watermark).
    pub kafka_consumer_lag: IntGaugeVec,
    /// Status records this member published to the fleet topic, by result.
    pub fleet_records: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub http_connections_open: IntGauge,
    pub jsonl_files_rotated: prometheus::IntCounter,
    pub retention_deleted: IntCounterVec,
    pub disk_free_bytes: IntGaugeVec,
    pub disk_low: IntCounterVec,
    pub http_connections_accepted: prometheus::IntCounter,
    pub http_connections_failed: IntCounterVec,
    pub live_clients_refused: IntCounterVec,
    pub webhooks: IntCounterVec,
    pub images_analyzed: IntCounterVec,
    pub analyses_rejected: IntCounterVec,
    pub captions_failed: IntCounterVec,
    pub checkpoints_written: prometheus::IntCounter,
    pub checkpoint_bytes: prometheus::IntCounter,
    pub checkpoint_seconds: Histogram,
    pub scene_restores: IntCounterVec,
    /// Incident evidence JPEGs stored (`[evidence]`), their bytes, and failures.
    pub evidence_written: prometheus::IntCounter,
    pub evidence_bytes: prometheus::IntCounter,
    pub evidence_failed: prometheus::IntCounter,
    /// What the evidence directory holds now (`evidence.max_mb` caps it).
    pub evidence_bytes_kept: IntGauge,
    /// Incident clips (`[evidence.clip]`) by outcome: written, dropped (the encoder was
    /// behind), failed; and the bytes written.
    pub clips_finished: IntCounterVec,
    pub clip_bytes_written: prometheus::IntCounter,
}

impl Metrics {
    /// Drops every series labelled `camera = id`; how many.
    pub fn forget_camera(&self, id: &str) -> usize {
        let counters = [
            &self.frames_received,
            &self.frames_dropped,
            &self.frames_processed,
            &self.frames_failed,
            &self.frames_published,
            &self.source_restarts,
            &self.source_probes,
            &self.source_clock_jumps,
            &self.captions_failed,
        ];
        let mut n = 0;
        for vec in counters {
            n += forget(vec, id);
        }
        n
    }
}

/// Removes the series of `vec` whose `camera` label is `id`, whatever its other labels.
fn forget<T: prometheus::core::Atomic>(vec: &prometheus::core::GenericCounterVec<T>, id: &str) -> usize {
    use prometheus::core::Collector;
    let mut n = 0;
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> = m.get_label().iter().map(|l| (l.name(), l.value())).collect();
            if labels.get("camera") == Some(&id) && vec.remove(&labels).is_ok() {
                n += 1;
            }
        }
    }
    n
}

fn plain_counter(reg: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    let c = prometheus::IntCounter::new(name, help).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("argus_stage_duration_seconds", "Time spent per frame (or batch, for detect) in each stage")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["stage"],
        )
        .expect("valid metric");
        r.register(Box::new(stage_seconds.clone())).expect("unique metric");
        let frame_latency_seconds = Histogram::with_opts(
            HistogramOpts::new("argus_frame_latency_seconds", "From a frame entering Argus to its analysis being done")
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        r.register(Box::new(frame_latency_seconds.clone())).expect("unique metric");
        let frame_publish_seconds = Histogram::with_opts(
            HistogramOpts::new("argus_frame_publish_seconds", "argus ingest: from a frame's capture to the broker confirming it")
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("valid metric");
        r.register(Box::new(frame_publish_seconds.clone())).expect("unique metric");
        let batch_size =
            Histogram::with_opts(HistogramOpts::new("argus_detector_batch_size", "Frames per detector call").buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0]))
                .expect("valid metric");
        r.register(Box::new(batch_size.clone())).expect("unique metric");
        let sink_queue_depth = IntGaugeVec::new(Opts::new("argus_sink_queue_depth", "Events waiting in each sink's queue"), &["sink"]).expect("valid metric");
        r.register(Box::new(sink_queue_depth.clone())).expect("unique metric");
        let incidents_open = IntGauge::new("argus_incidents_open", "Incidents currently open").expect("valid metric");
        r.register(Box::new(incidents_open.clone())).expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["sink"]).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let spool_events = gauge("argus_spool_events", "Events waiting in a sink's on-disk spool");
        let spool_bytes = gauge("argus_spool_bytes", "Bytes in a sink's on-disk spool");
        let live_clients = IntGauge::new("argus_live_clients", "Clients on /v1/events/stream").expect("valid metric");
        r.register(Box::new(live_clients.clone())).expect("unique metric");
        let live_clients_dropped =
            prometheus::IntCounter::new("argus_live_clients_dropped_total", "Live clients dropped for falling behind").expect("valid metric");
        r.register(Box::new(live_clients_dropped.clone())).expect("unique metric");
        Self {
            live_clients,
            live_clients_dropped,
            spool_events,
            spool_bytes,
            spool_events_spooled: counter(r, "argus_spool_events_spooled_total", "Events written to a sink's spool while its server was down", &["sink"]),
            spool_events_replayed: counter(
                r,
                "argus_spool_events_replayed_total",
                "Spooled events delivered to the server (replayed, or confirmed after they were spooled)",
                &["sink"],
            ),
            spool_full: counter(r, "argus_spool_full_total", "Times a spool was full and the pipeline had to wait (an alarm)", &["sink"]),
            spool_dead_letters: counter(
                r,
                "argus_spool_dead_letters_total",
                "Spooled records that could not be read back as events; moved to the spool's dead-letters.jsonl",
                &["sink"],
            ),
            clickhouse_rows_written: counter(r, "argus_clickhouse_rows_written_total", "Rows inserted into ClickHouse", &["table"]),
            clickhouse_batches_written: counter(
                r,
                "argus_clickhouse_batches_written_total",
                "Successful ClickHouse inserts (one per batch and table)",
                &["table"],
            ),
            clickhouse_inserts_failed: counter(
                r,
                "argus_clickhouse_inserts_failed_total",
                "ClickHouse inserts that failed (the events went to the spool)",
                &["table"],
            ),
            kafka_messages_consumed: counter(r, "argus_kafka_messages_consumed_total", "Frame messages read from Kafka", &["topic"]),
            kafka_messages_rejected: counter(r, "argus_kafka_messages_rejected_total", "Bad frame messages, dead-lettered and skipped", &["reason"]),
            kafka_offsets_committed: counter(
                r,
                "argus_kafka_offsets_committed_total",
                "Partition offsets committed after their events were durable",
                &["topic"],
            ),
            webhooks: counter(r, "argus_webhook_attempts_total", "Webhook deliveries: delivered, failed_attempt, gave_up", &["outcome"]),
            images_analyzed: counter(r, "argus_images_analyzed_total", "Images analysed through the API (ok or failed)", &["outcome"]),
            analyses_rejected: counter(r, "argus_analyses_rejected_total", "Analysis requests refused before queueing (busy, not_ready)", &["reason"]),
            kafka_pauses: counter(r, "argus_kafka_pauses_total", "Times the Kafka source stopped consuming until a full camera lane had room", &["topic"]),
            kafka_messages_skipped: counter(
                r,
                "argus_kafka_messages_skipped_total",
                "Frame messages skipped because the camera's checkpoint (state topic) already reflects them",
                &["topic"],
            ),
            kafka_rebalances: counter(
                r,
                "argus_kafka_rebalances_total",
                "Partitions assigned to or revoked from this member, by rebalance",
                &["topic", "change"],
            ),
            kafka_consumer_lag: {
                let g = IntGaugeVec::new(
                    Opts::new("argus_kafka_consumer_lag", "Messages behind the high watermark per assigned partition"),
                    &["topic", "partition"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            fleet_records: counter(
                r,
                "argus_fleet_records_published_total",
                "Status records published to the fleet topic, by result (ok, failed)",
                &["result"],
            ),
            frames_received: counter(r, "argus_frames_received_total", "Frames decoded by sources", &["camera"]),
            frames_dropped: counter(r, "argus_frames_dropped_total", "Frames dropped before analysis", &["camera", "reason"]),
            frames_processed: counter(r, "argus_frames_processed_total", "Frames fully analysed", &["camera"]),
            frames_failed: counter(r, "argus_frames_failed_total", "Frames whose analysis failed", &["camera", "stage"]),
            frames_published: counter(r, "argus_frames_published_total", "argus ingest: frames the broker confirmed", &["camera"]),
            frame_publish_seconds,
            events_emitted: counter(r, "argus_events_emitted_total", "Events produced by the pipeline", &["kind"]),
            incident_actions: counter(r, "argus_incident_actions_published_total", "Operators' actions on incidents published", &["kind"]),
            events_published: counter(r, "argus_events_published_total", "Events written durably by each sink", &["sink"]),
            sink_writes_failed: counter(r, "argus_sink_writes_failed_total", "Failed sink writes (retried)", &["sink"]),
            sink_events_shed: counter(
                r,
                "argus_sink_events_shed_total",
                "Events a sink dropped because its spool was full (when_full = \"shed\"); an alarm",
                &["sink"],
            ),
            sink_events_rejected: counter(
                r,
                "argus_sink_events_rejected_total",
                "Events the server refused max_rejections times in a row; moved to the spool's dead-letters.jsonl",
                &["sink"],
            ),
            sink_events_abandoned: counter(
                r,
                "argus_sink_events_abandoned_total",
                "Events a sink could not write or spool before the shutdown drain deadline",
                &["sink"],
            ),
            thread_panics: counter(r, "argus_thread_panics_total", "Threads that panicked (Argus stops cleanly after one)", &["thread"]),
            source_restarts: counter(r, "argus_source_restarts_total", "Live source rebuilds, by reason (error, eos, stall)", &["camera", "reason"]),
            source_probes: counter(
                r,
                "argus_source_probes_total",
                "Liveness probes of a live camera's server between rebuilds, by result (ready, refused, unreachable, connect_timeout, no_answer, not_serving, garbled, unresolved, failed)",
                &["camera", "result"],
            ),
            source_clock_jumps: counter(
                r,
                "argus_source_clock_jumps_total",
                "Steps of a camera's capture clock (more than 2 s off real pace), re-anchored; Kafka frames dated in the future, re-dated",
                &["camera", "direction"],
            ),
            http_requests: counter(r, "argus_http_requests_total", "HTTP requests served", &["route", "status"]),
            http_connections_open: {
                let g =
                    IntGauge::new("argus_http_connections_open", "HTTP connections being served (at server.max_connections more wait)").expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            evidence_written: plain_counter(r, "argus_evidence_written_total", "Annotated incident frames stored as evidence JPEGs"),
            clips_finished: counter(
                r,
                "argus_clips_finished_total",
                "Incident clips by outcome (written, dropped: the encoder was behind, failed)",
                &["outcome"],
            ),
            clip_bytes_written: plain_counter(r, "argus_clip_bytes_written_total", "Bytes of incident clips written"),
            evidence_bytes: plain_counter(r, "argus_evidence_bytes_written_total", "Bytes of evidence JPEGs stored"),
            evidence_failed: plain_counter(
                r,
                "argus_evidence_failed_total",
                "Incident events published without evidence: rendering or writing failed (see the log)",
            ),
            evidence_bytes_kept: {
                let g = IntGauge::new("argus_evidence_bytes", "Bytes of evidence JPEGs kept (evidence.max_mb caps them)").expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            jsonl_files_rotated: plain_counter(r, "argus_jsonl_files_rotated_total", "Times the JSON-lines events file was rotated at sinks.jsonl.max_bytes"),
            retention_deleted: counter(
                r,
                "argus_retention_deleted_total",
                "What retention deleted: rotated JSON-lines files (jsonl), stored events past store.retention_days (store), evidence JPEGs past evidence.max_mb or max_age_days (evidence)",
                &["store"],
            ),
            disk_free_bytes: {
                let g = IntGaugeVec::new(Opts::new("argus_disk_free_bytes", "Free bytes on the filesystem of each directory Argus writes"), &["path"])
                    .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            disk_low: counter(r, "argus_disk_low_total", "Times a directory's filesystem fell below limits.min_free_disk_mb (an alarm)", &["path"]),
            http_connections_accepted: plain_counter(r, "argus_http_connections_accepted_total", "HTTP connections accepted"),
            http_connections_failed: counter(
                r,
                "argus_http_connections_failed_total",
                "HTTP connections cut off: headers not sent within server.header_read_timeout_s (timeout) or a protocol error (error)",
                &["reason"],
            ),
            live_clients_refused: counter(r, "argus_live_clients_refused_total", "Live clients refused at a limit (total or per key)", &["limit"]),
            captions_failed: counter(r, "argus_captions_failed_total", "Events whose captioning model failed (they keep the scene caption)", &["camera"]),
            checkpoints_written: plain_counter(r, "argus_checkpoints_written_total", "Scene state checkpoints written to the embedded store"),
            checkpoint_bytes: plain_counter(r, "argus_checkpoint_bytes_total", "Bytes of scene state checkpoints written"),
            checkpoint_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new("argus_checkpoint_seconds", "One camera's checkpoint: state, encode and store write")
                        .buckets(vec![1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5]),
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            scene_restores: counter(
                r,
                "argus_scene_restores_total",
                "Scene states looked for at a camera's start, by outcome (restored, too_old, incompatible, corrupt, none)",
                &["outcome"],
            ),
            stage_seconds,
            frame_latency_seconds,
            batch_size,
            sink_queue_depth,
            incidents_open,
            registry,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_cameras_series_are_dropped_and_the_others_stay() {
        let m = Metrics::new();
        for cam in ["gone", "kept"] {
            m.frames_received.with_label_values(&[cam]).inc();
            m.frames_dropped.with_label_values(&[cam, "queue_full"]).inc();
            m.frames_dropped.with_label_values(&[cam, "fps_cap"]).inc();
            m.source_probes.with_label_values(&[cam, "refused"]).inc();
        }
        assert_eq!(m.forget_camera("gone"), 4);
        let text = m.render();
        assert!(!text.contains("camera=\"gone\""), "{text}");
        assert!(text.contains("argus_frames_dropped_total{camera=\"kept\",reason=\"fps_cap\"} 1"), "{text}");
        assert_eq!(m.forget_camera("gone"), 0);
    }
}
