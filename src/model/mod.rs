//! Layer 0: the vocabulary every other module speaks. Frames, detections, objects placed
//! on the ground, risks and their reasons, incident changes, the `argus.event.v1` event,
//! ids, times and config issues. It imports nothing else of the crate (the layer check,
//! `tests/layers.rs`, enforces it), so any module may use it without a cycle.

pub mod decode;
pub mod detection;
pub mod event;
pub mod exact;
pub mod frame;
pub mod id;
pub mod issue;
pub mod object;
pub mod risk;
pub mod timestamp;

pub use decode::*;
pub use detection::*;
pub use event::*;
pub use frame::*;
pub use id::*;
pub use issue::*;
pub use object::*;
pub use risk::*;
pub use timestamp::*;
