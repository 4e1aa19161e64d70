//! `PUT /v1/pipelines/{name}` on the configuration's side: the edited pipeline checked
//! exactly as `argus check` checks the files (in the configuration this process runs),
//! written into its file keeping comments and layout (`config::rewrite`), the previous
//! version kept as `<file>.bak`, and the reload requested that SIGHUP would run (only
//! cameras whose settings changed restart).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::api::pipelines::{EditError, PipelineEdit, PipelineEditor};
use crate::config::PipelineConfig;
use crate::model::ConfigIssue;

pub struct FileEditor {
    /// The configuration file the process runs (`None`: the default).
    config: Option<PathBuf>,
    /// `argus run --worker`: the files are checked as a worker reads them.
    worker: bool,
    /// `server.pipeline_editors`.
    editors: Vec<String>,
    /// The serve loop's reload flag (the one SIGHUP sets).
    reload: Arc<AtomicBool>,
    /// One edit at a time: each reads the file the previous one wrote.
    lock: parking_lot::Mutex<()>,
}

impl FileEditor {
    pub fn new(config: Option<PathBuf>, worker: bool, editors: Vec<String>, reload: Arc<AtomicBool>) -> Self {
        Self { config, worker, editors, reload, lock: parking_lot::Mutex::new(()) }
    }
}

fn io(file: &Path, what: &str, e: impl std::fmt::Display) -> EditError {
    EditError::Io(format!("{}: {what}: {e}", file.display()))
}

impl PipelineEditor for FileEditor {
    fn may_edit(&self, who: &str) -> bool {
        self.editors.iter().any(|e| e == who)
    }

    fn replace(&self, name: &str, body: serde_json::Value, who: &str) -> Result<PipelineEdit, EditError> {
        let _one_at_a_time = self.lock.lock();
        let mut cfg = crate::config::load(self.config.as_deref()).map_err(|e| EditError::Invalid(e.issues().to_vec()))?;
        let Some(index) = cfg.pipelines.iter().position(|(_, p)| p.name == name) else {
            return Err(EditError::NotFound(cfg.pipelines.iter().map(|(_, p)| p.name.clone()).collect()));
        };
        let file = cfg.pipelines[index].0.clone();
        let issue = |key: &str, problem: String, fix: &str| ConfigIssue { file: file.clone(), key: key.into(), line: None, problem, fix: fix.into() };
        let new: PipelineConfig = serde_json::from_value(body).map_err(|e| {
            EditError::Invalid(vec![issue("(body)", e.to_string(), "send the pipeline as GET /v1/pipelines/{name} returns it under `pipeline`")])
        })?;
        if new.name != name {
            return Err(EditError::Invalid(vec![issue(
                "name",
                format!("the edit renames pipeline `{name}` to `{}`", new.name),
                "keep the name (rename a pipeline in its file)",
            )]));
        }
        if !file.is_file() {
            return Err(EditError::Io(format!(
                "{}: not a file on disk (the embedded demo); copy config/ and pipelines/ next to argus to edit them",
                file.display()
            )));
        }
        let text = std::fs::read_to_string(&file).map_err(|e| io(&file, "cannot read", e))?;
        let old = std::mem::replace(&mut cfg.pipelines[index].1, new.clone());
        let checked = if self.worker { cfg.as_worker().map_err(EditError::Invalid)? } else { cfg };
        let issues = crate::config::validate(&checked);
        if !issues.is_empty() {
            return Err(EditError::Invalid(issues));
        }
        let backup = PathBuf::from(format!("{}.bak", file.display()));
        if old == new {
            return Ok(PipelineEdit { file: file.display().to_string(), backup: backup.display().to_string(), changed: false });
        }
        let mut written = crate::config::rewrite(&text, &old, &new).map_err(|e| io(&file, "cannot apply the edit", e))?;
        // The file must say exactly what was validated; should the merge ever miss, the
        // pipeline is written afresh rather than wrongly.
        if toml::from_str::<PipelineConfig>(&written).ok().as_ref() != Some(&new) {
            tracing::warn!(file = %file.display(), "the edit could not be merged into the file's layout; writing the pipeline afresh (its comments are in the backup)");
            written = toml::to_string(&new).map_err(|e| io(&file, "cannot serialise the pipeline", e))?;
        }
        std::fs::copy(&file, &backup).map_err(|e| io(&backup, "cannot keep the backup", e))?;
        write_atomically(&file, &written).map_err(|e| io(&file, "cannot write", e))?;
        tracing::info!(by = who, pipeline = name, file = %file.display(), backup = %backup.display(), "pipeline changed through the API; reloading");
        self.reload.store(true, Ordering::SeqCst);
        Ok(PipelineEdit { file: file.display().to_string(), backup: backup.display().to_string(), changed: true })
    }
}

/// A reader sees the old file or the new one, never half of either.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
