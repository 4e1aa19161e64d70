//! Configuration: the shapes of the files (`files`; each component's own table lives
//! beside the component), loaded with precise errors (`load`), and checked by a pure
//! `validate` whose results (calibration fits) the build reuses; `edit` writes an edited
//! pipeline back into its file keeping its comments.

mod edit;
mod files;
mod load;
mod validate;

pub use edit::{RewriteError, rewrite};
pub use files::*;
pub use load::{ConfigError, EMBEDDED_CONFIG, EMBEDDED_DEMO_PIPELINE, LoadedConfig, load, load_from_str, load_pipeline};
pub use validate::{ValidConfig, Validated, check, validate, validated};
