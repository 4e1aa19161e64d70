//! What a detector finds in one image.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One detected object in original image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class_id: usize,
    pub class: Arc<str>,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in original image pixels.
    pub bbox: [f32; 4],
}
