//! Reading config files: TOML → typed config, with errors that name the file, the key
//! and the fix; `ARGUS_SECTION__KEY` environment overrides; the embedded default.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::files::{ArgusConfig, PipelineConfig};
use crate::model::ConfigIssue;

/// The default config and demo pipeline, compiled in so `argus run` works anywhere.
pub const EMBEDDED_CONFIG: &str = include_str!("../../config/argus.toml");
pub const EMBEDDED_DEMO_PIPELINE: &str = include_str!("../../pipelines/demo.toml");
const EMBEDDED_CONFIG_NAME: &str = "config/argus.toml";
const EMBEDDED_PIPELINE_NAME: &str = "pipelines/demo.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Invalid(v) => v,
        }
    }
}

/// The config file plus every pipeline it names, parsed (not yet validated).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub file: PathBuf,
    pub argus: ArgusConfig,
    pub pipelines: Vec<(PathBuf, PipelineConfig)>,
}

impl LoadedConfig {
    /// `argus run --worker`: the analysis tier of a fleet reads every camera from its
    /// pipeline's `[kafka]` topic, where `argus ingest` publishes the same pipeline
    /// files' cameras, so one set of files serves both tiers. A camera keeps its id,
    /// calibration, zones and rules; what only decoding needs (`realtime`, `live`,
    /// `start_time`, `fps_cap`: ingest applied it) is dropped. A pipeline without
    /// `[kafka]` is refused: every worker would run its cameras itself.
    pub fn as_worker(mut self) -> Result<Self, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        for (file, p) in &mut self.pipelines {
            if p.kafka.is_none() {
                issues.push(ConfigIssue {
                    file: file.clone(),
                    key: "kafka".into(),
                    line: None,
                    problem: format!("`argus run --worker` reads cameras from the pipeline's [kafka] topic, and pipeline `{}` has none", p.name),
                    fix: "add [kafka] with brokers, topic and group_id (the topic `argus ingest` publishes to), or run this pipeline with plain `argus run`"
                        .into(),
                });
                continue;
            }
            for c in &mut p.cameras {
                if c.source != crate::sources::KAFKA_SOURCE {
                    c.source = crate::sources::KAFKA_SOURCE.into();
                    c.live = None;
                    c.realtime = false;
                    c.start_time = Default::default();
                    c.fps_cap = 0.0;
                }
            }
        }
        if issues.is_empty() { Ok(self) } else { Err(issues) }
    }
}

/// Loads `path`, or with `None` the `config/argus.toml` in the working directory when it
/// exists, else the embedded default. Environment overrides apply to argus.toml.
pub fn load(path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let (file, text) = match path {
        Some(p) => (p.to_path_buf(), read(p)?),
        None => {
            let p = Path::new(EMBEDDED_CONFIG_NAME);
            if p.is_file() { (p.to_path_buf(), read(p)?) } else { (p.to_path_buf(), EMBEDDED_CONFIG.to_string()) }
        }
    };
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("ARGUS_")).collect();
    load_from_str(&file, &text, &env, &|p: &Path| {
        if p.is_file() {
            read(p)
        } else if p == Path::new(EMBEDDED_PIPELINE_NAME) {
            Ok(EMBEDDED_DEMO_PIPELINE.to_string())
        } else {
            Err(ConfigError::Invalid(vec![ConfigIssue {
                file: p.to_path_buf(),
                key: "pipelines".into(),
                line: None,
                problem: "pipeline file not found".into(),
                fix: "check the path in `pipelines` (relative to the working directory)".into(),
            }]))
        }
    })
}

/// Parses argus.toml text plus its pipelines (read through `read_pipeline`).
pub fn load_from_str(
    file: &Path,
    text: &str,
    env: &[(String, String)],
    read_pipeline: &dyn Fn(&Path) -> Result<String, ConfigError>,
) -> Result<LoadedConfig, ConfigError> {
    let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Invalid(vec![toml_issue(file, text, &e)]))?;
    apply_env_overrides(&mut value, env).map_err(|issue| ConfigError::Invalid(vec![issue]))?;
    // Re-serialise so that type errors still point at a line of the original when no
    // override touched it.
    let merged =
        if env.iter().any(|(k, _)| k.contains("__") || k == "ARGUS_PIPELINES") { toml::to_string(&value).unwrap_or_default() } else { text.to_string() };
    let argus: ArgusConfig = parse(file, &merged)?;
    let mut pipelines = Vec::new();
    let mut issues = Vec::new();
    for p in &argus.pipelines {
        match read_pipeline(p).and_then(|t| parse::<PipelineConfig>(p, &t)) {
            Ok(cfg) => pipelines.push((p.clone(), cfg)),
            Err(ConfigError::Invalid(mut v)) => issues.append(&mut v),
        }
    }
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    Ok(LoadedConfig { file: file.to_path_buf(), argus, pipelines })
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|e| {
        ConfigError::Invalid(vec![ConfigIssue {
            file: p.to_path_buf(),
            key: "(file)".into(),
            line: None,
            problem: format!("cannot read: {e}"),
            fix: "check the path and permissions".into(),
        }])
    })
}

/// Reads and parses one pipeline file (not validated: `validated` does that with the
/// argus.toml it runs under).
pub fn load_pipeline(path: &Path) -> Result<PipelineConfig, ConfigError> {
    parse(path, &read(path)?)
}

/// Parses one TOML document into `T`, turning serde's error into a `ConfigIssue`.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Invalid(vec![toml_issue(file, text, &e)]))
}

fn toml_issue(file: &Path, text: &str, e: &toml::de::Error) -> ConfigIssue {
    let msg = e.message().trim().to_string();
    let (line, key) = match e.span() {
        Some(span) => (Some(line_of(text, span.start)), key_path_at(text, span.start, span.end)),
        None => (None, "(document)".into()),
    };
    let fix = if msg.starts_with("unknown field") {
        "remove the key or correct its spelling to one of the expected keys".to_string()
    } else if msg.starts_with("unknown variant") {
        "use one of the expected values".to_string()
    } else if msg.starts_with("missing field") {
        "add the missing key".to_string()
    } else if msg.starts_with("invalid type") {
        "give the value the type the message expects (quote strings, no quotes around numbers)".to_string()
    } else {
        "correct the TOML syntax at that line".to_string()
    };
    ConfigIssue { file: file.to_path_buf(), key, line, problem: msg, fix }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// `[cameras.origin]   # a comment` → `cameras.origin`.
fn table_name(header_line: &str) -> String {
    let l = header_line.trim();
    let l = match l.find(']') {
        Some(close) => &l[..close],
        None => l,
    };
    l.trim_matches(|c| c == '[' || c == ']').trim().to_string()
}

/// Best-effort dotted key for a span: the nearest `[table]` header above it, plus the
/// key written at the start of the span's line.
fn key_path_at(text: &str, start: usize, end: usize) -> String {
    let start = start.min(text.len());
    let before = &text[..start];
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let header = before[..line_start].lines().rev().map(str::trim).find(|l| l.starts_with('[')).map(table_name);
    let spanned = text[start..end.min(text.len())].trim();
    let key = if line.trim_start().starts_with('[') {
        // The error covers a whole table (e.g. a missing field in it).
        return table_name(line);
    } else if let Some((k, _)) = line.split_once('=') {
        k.trim().to_string()
    } else {
        spanned.to_string()
    };
    match header {
        Some(h) if !h.is_empty() => format!("{h}.{key}"),
        _ => key,
    }
}

/// Applies `ARGUS_SECTION__KEY=value` (double underscore between levels, case-insensitive
/// names) to the parsed argus.toml, and `ARGUS_PIPELINES` to the top-level list. Values
/// are read as TOML when they parse (numbers, booleans, arrays) and as strings otherwise.
/// Other single-underscore `ARGUS_*` variables (ARGUS_MODELS_DIR, …) are not config keys.
const TOP_LEVEL_ENV_KEYS: &[&str] = &["PIPELINES"];

pub fn apply_env_overrides(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigIssue> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("ARGUS_") else { continue };
        if !rest.contains("__") && !TOP_LEVEL_ENV_KEYS.contains(&rest) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(ConfigIssue {
                file: PathBuf::from(format!("${name}")),
                key: path.join("."),
                line: None,
                problem: "empty key segment".into(),
                fix: "write ARGUS_SECTION__KEY, e.g. ARGUS_DETECTOR__BACKEND=tch".into(),
            });
        }
        let value = parse_env_value(raw);
        let mut t = &mut *table;
        for seg in &path[..path.len() - 1] {
            let entry = t.entry(seg.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = match entry {
                toml::Value::Table(inner) => inner,
                _ => {
                    return Err(ConfigIssue {
                        file: PathBuf::from(format!("${name}")),
                        key: path.join("."),
                        line: None,
                        problem: format!("`{seg}` is not a table"),
                        fix: "override a key inside a section, e.g. ARGUS_SERVER__LISTEN".into(),
                    });
                }
            };
        }
        t.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_ignore_brackets_and_trailing_comments() {
        assert_eq!(table_name("[cameras.origin]   # where (0, 0) is"), "cameras.origin");
        assert_eq!(table_name("[[cameras]]"), "cameras");
        assert_eq!(table_name("  [captioner] # off by default"), "captioner");
        let text = "[captioner]   # optional\nmodle = 1\n";
        let at = text.find("modle").unwrap();
        assert_eq!(key_path_at(text, at, at + 5), "captioner.modle");
    }

    fn loaded(pipelines: &[(&str, &str)]) -> LoadedConfig {
        let list: Vec<String> = pipelines.iter().map(|(f, _)| format!("{f:?}")).collect();
        let text = format!("pipelines = [{}]\n", list.join(", "));
        let files: Vec<(PathBuf, String)> = pipelines.iter().map(|(f, t)| (PathBuf::from(f), t.to_string())).collect();
        load_from_str(Path::new("argus.toml"), &text, &[], &|p: &Path| Ok(files.iter().find(|(f, _)| f == p).expect("a test pipeline").1.clone())).unwrap()
    }

    #[test]
    fn a_worker_reads_every_camera_of_a_kafka_pipeline_from_the_topic_and_refuses_the_others() {
        let site = "name = \"site\"\n[[cameras]]\nid = \"gate\"\nsource = \"rtsp://cam/1\"\nfps_cap = 5.0\n\
                    [[cameras]]\nid = \"dock\"\nsource = \"/videos/dock.mp4\"\nrealtime = true\nclasses = [\"person\"]\n\
                    [[cameras]]\nid = \"drone\"\nsource = \"kafka\"\n\
                    [kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"frames\"\ngroup_id = \"workers\"\n";
        let w = loaded(&[("site.toml", site)]).as_worker().unwrap();
        let cams = &w.pipelines[0].1.cameras;
        assert!(cams.iter().all(|c| c.source == "kafka" && c.fps_cap == 0.0 && !c.realtime && c.live.is_none()), "{cams:?}");
        assert_eq!(cams[1].classes, ["person"], "what analysis needs stays");
        let plain = "name = \"lab\"\n[[cameras]]\nid = \"bench\"\nsource = \"/videos/bench.mp4\"\n";
        let issues = loaded(&[("site.toml", site), ("lab.toml", plain)]).as_worker().unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!((issues[0].file.to_str(), issues[0].key.as_str()), (Some("lab.toml"), "kafka"));
        assert!(issues[0].to_string().contains("add [kafka]"), "{}", issues[0]);
    }
}
