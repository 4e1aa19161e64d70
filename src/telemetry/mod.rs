//! What Argus tells operators about itself: Prometheus metrics, the health that
//! `/readyz` and `/v1/cameras` report, and the redaction of credentials in everything
//! it logs or serves.

pub mod disk;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod redact;
pub mod supervise;
