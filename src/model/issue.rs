//! Problems in config files, as `argus check` and start-up report them: the file, the
//! dotted key, the problem and the fix. Every component validates its own part of the
//! config into an [`Issues`] collector.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub file: PathBuf,
    /// Dotted key path, e.g. `detector.backend` or `cameras[0].calibration`.
    pub key: String,
    /// Line number when known.
    pub line: Option<usize>,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}: {} (fix: {})", self.key, self.problem, self.fix)
    }
}

/// Collects the issues of one file; components add to it under their own key prefix.
pub struct Issues<'a> {
    file: &'a Path,
    out: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    pub fn new(file: &'a Path) -> Self {
        Self { file, out: Vec::new() }
    }

    pub fn file(&self) -> &Path {
        self.file
    }

    pub fn add(&mut self, key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) {
        self.out.push(ConfigIssue { file: self.file.to_path_buf(), key: key.into(), line: None, problem: problem.into(), fix: fix.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn into_vec(self) -> Vec<ConfigIssue> {
        self.out
    }
}
