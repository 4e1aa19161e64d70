//! Configuration: typed (`types`), loaded with precise errors (`load`), and checked by
//! a pure `validate` before anything is built.

mod load;
mod types;
mod validate;

pub use load::{ConfigError, LoadedConfig, load, load_from_str, EMBEDDED_CONFIG, EMBEDDED_DEMO_PIPELINE};
pub use types::*;
pub use validate::validate;
