//! `argus check`: load and validate the configuration, run nothing. Exit code 2 for a
//! configuration with problems, each printed with its file, key and fix.

use std::path::PathBuf;
use std::process::ExitCode;

use argus::config;

pub fn run(path: Option<PathBuf>, worker: bool) -> ExitCode {
    let loaded = config::load(path.as_deref()).and_then(|c| if worker { c.as_worker().map_err(config::ConfigError::Invalid) } else { Ok(c) });
    match loaded {
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Ok(cfg) => {
            let issues = config::validate(&cfg);
            if issues.is_empty() {
                let cams: usize = cfg.pipelines.iter().map(|(_, p)| p.cameras.len()).sum();
                println!(
                    "{}: OK ({} pipeline(s), {cams} camera(s), detector {} on {})",
                    cfg.file.display(),
                    cfg.pipelines.len(),
                    cfg.argus.detector.model,
                    cfg.argus.detector.backend.as_str()
                );
                ExitCode::SUCCESS
            } else {
                for i in &issues {
                    eprintln!("{i}");
                }
                eprintln!("{} problem(s) found", issues.len());
                ExitCode::from(2)
            }
        }
    }
}
