//! The embedded store as a sink.

use std::sync::Arc;

use super::{Sink, SinkError};
use crate::model::Event;
use crate::store::EventStore;

pub struct StoreSink {
    pub store: Arc<dyn EventStore>,
}

impl Sink for StoreSink {
    fn name(&self) -> &str {
        "store"
    }

    fn write_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        self.store.insert(events).map_err(|e| SinkError(e.to_string()))
    }
}
