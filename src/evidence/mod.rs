//! Evidence: the annotated frame of every incident event (opened, updated, closed), kept
//! as a JPEG under the data directory, so an operator who gets `incident.opened` sees
//! what happened (`GET /v1/events/{id}/evidence.jpg`) and an analyst can see it later.
//!
//! Files are content-addressed, `DIR/ab/<sha256>.jpg`: the event carries the digest and
//! the size (`evidence` in the event, in every sink), so any copy can be checked, a file
//! is never rewritten in place, and the same picture is stored once. Each file is written
//! under a temporary name, synced, then renamed into place and its directory synced: after
//! a crash a file is there whole or not at all, never torn.
//!
//! Retention: files beyond `max_mb` in all (oldest first) or older than `max_age_days`
//! are deleted, never one that an open incident's opening or update refers to (the scene
//! stage pins them until the incident closes). The store keeps an index of its files by
//! age (built by one scan at start), so a write that passes the cap deletes at once,
//! without listing the directory. After a restart, incidents continued from a checkpoint
//! are not pinned again: their earlier evidence is kept by age and size alone.
//!
//! Rendering (boxes, zones, level banner) is `crate::pipeline::snapshot`'s, as for the live
//! snapshot; this module only stores and reads the bytes.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Evidence, Issues};

pub mod clip;

/// `[evidence]` in argus.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Store an annotated JPEG for every incident event.
    pub enabled: bool,
    /// Where the JPEGs go (`DIR/ab/<sha256>.jpg`).
    pub dir: PathBuf,
    /// JPEG quality, 1..=100.
    pub jpeg_quality: u8,
    /// Total size kept (MiB); beyond, the oldest files go first. 0: no limit.
    pub max_mb: u64,
    /// Files older than this are deleted (days). 0: no limit. Clips too.
    pub max_age_days: f64,
    /// Video clips around each incident's opening (off by default).
    pub clip: clip::ClipConfig,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self { enabled: true, dir: PathBuf::from("var/evidence"), jpeg_quality: 85, max_mb: 2048, max_age_days: 30.0, clip: Default::default() }
    }
}

/// `evidence.*` keys.
pub fn validate(c: &EvidenceConfig, iss: &mut Issues) {
    if c.enabled && c.dir.as_os_str().is_empty() {
        iss.add("evidence.dir", "empty path", "set e.g. \"var/evidence\", or enabled = false");
    }
    if !(1..=100).contains(&c.jpeg_quality) {
        iss.add("evidence.jpeg_quality", format!("{} is not a JPEG quality", c.jpeg_quality), "use 1..=100, e.g. 85");
    }
    if c.max_mb > 1 << 30 {
        iss.add("evidence.max_mb", format!("{} MiB", c.max_mb), "use 0 (no limit) or MiB, e.g. 2048");
    }
    if !(0.0..=36_500.0).contains(&c.max_age_days) {
        iss.add("evidence.max_age_days", format!("{}", c.max_age_days), "use 0 (no limit) or days, e.g. 30");
    }
    if c.clip.enabled {
        if !c.enabled {
            iss.add("evidence.clip.enabled", "clips are kept with the evidence, which is off", "set evidence.enabled = true, or evidence.clip.enabled = false");
        }
        if !cfg!(feature = "gstreamer") {
            iss.add(
                "evidence.clip.enabled",
                "clips are encoded with GStreamer, and this build has no `gstreamer` feature",
                "build with the default features, or evidence.clip.enabled = false",
            );
        }
        clip::validate(&c.clip, iss);
    }
}

/// The API path an event's evidence is served at.
pub fn url_of(event_id: &str) -> String {
    format!("/v1/events/{event_id}/evidence.jpg")
}

/// Whether `s` is a SHA-256 as the event carries it (64 lowercase hex digits): the only
/// names this store reads, so a digest from outside never becomes an arbitrary path.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub struct EvidenceStore {
    dir: PathBuf,
    quality: u8,
    /// 0: no limit.
    max_bytes: u64,
    max_age: Option<Duration>,
    files: Mutex<Files>,
}

/// What the store holds, by age, and what open incidents pin.
#[derive(Default)]
struct Files {
    by_age: BTreeMap<(SystemTime, String), u64>,
    bytes: u64,
    /// Open incident → the digests its events refer to.
    pinned: HashMap<String, Vec<String>>,
}

impl Files {
    fn is_pinned(&self, sha256: &str) -> bool {
        self.pinned.values().any(|shas| shas.iter().any(|s| s == sha256))
    }
}

/// What a retention pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub files: u64,
    /// What the store holds after it.
    pub bytes_kept: u64,
}

impl EvidenceStore {
    /// The store of `cfg` (its directory created and indexed, what is past retention
    /// deleted), or `None` when evidence is off.
    pub fn open(cfg: &EvidenceConfig) -> std::io::Result<Option<Self>> {
        if !cfg.enabled {
            return Ok(None);
        }
        std::fs::create_dir_all(&cfg.dir)?;
        let max_age = (cfg.max_age_days > 0.0).then(|| Duration::from_secs_f64(cfg.max_age_days * 86_400.0));
        let store = Self { dir: cfg.dir.clone(), quality: cfg.jpeg_quality, max_bytes: cfg.max_mb << 20, max_age, files: Mutex::default() };
        *store.files.lock() = store.scan()?;
        let pruned = store.prune(SystemTime::now());
        tracing::info!(dir = %store.dir.display(), deleted = pruned.files, kept_bytes = pruned.bytes_kept, max_mb = cfg.max_mb, max_age_days = cfg.max_age_days, "evidence store ready");
        Ok(Some(store))
    }

    /// Every stored file by age; temporaries a crash left behind are deleted.
    fn scan(&self) -> std::io::Result<Files> {
        let mut files = Files::default();
        for shard in std::fs::read_dir(&self.dir)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&shard)? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                let meta = f.metadata()?;
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(f.path());
                } else if let Some(sha) = name.strip_suffix(".jpg").filter(|s| is_digest(s)) {
                    files.by_age.insert((meta.modified()?, sha.to_string()), meta.len());
                    files.bytes += meta.len();
                }
            }
        }
        Ok(files)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn quality(&self) -> u8 {
        self.quality
    }

    /// Where the file of `sha256` lives (`None` for anything that is not a digest).
    pub fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        is_digest(sha256).then(|| self.dir.join(&sha256[..2]).join(format!("{sha256}.jpg")))
    }

    /// Stores `jpeg` for the event `event_id` and returns the reference the event carries.
    /// A picture stored already (same digest) is not written again.
    pub fn put(&self, event_id: &str, jpeg: &[u8]) -> std::io::Result<Evidence> {
        let sha256 = hex::encode(Sha256::digest(jpeg));
        let path = self.path_of(&sha256).expect("a digest");
        let evidence = Evidence { url: url_of(event_id), sha256, bytes: jpeg.len() as u64, clip: None };
        let mut files = self.files.lock();
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == jpeg.len() as u64) {
            return Ok(evidence);
        }
        let parent = path.parent().expect("DIR/ab");
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".{}.{}.tmp", evidence.sha256, std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(jpeg)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(parent)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        files.by_age.insert((SystemTime::now(), evidence.sha256.clone()), evidence.bytes);
        files.bytes += evidence.bytes;
        Ok(evidence)
    }

    /// Keeps `sha256` while `incident` is open (its opening and updates).
    pub fn pin(&self, incident: &str, sha256: &str) {
        self.files.lock().pinned.entry(incident.to_string()).or_default().push(sha256.to_string());
    }

    /// `incident` closed: its files follow retention like any other.
    pub fn unpin(&self, incident: &str) {
        self.files.lock().pinned.remove(incident);
    }

    /// Deletes, oldest first, what is past the size cap or the age limit at `now`,
    /// skipping pinned files.
    pub fn prune(&self, now: SystemTime) -> Pruned {
        let mut files = self.files.lock();
        let cutoff = self.max_age.and_then(|a| now.checked_sub(a));
        let mut deleted = 0;
        let mut kept_pinned = Vec::new();
        while let Some(((at, sha), bytes)) = files.by_age.pop_first() {
            let too_old = cutoff.is_some_and(|c| at < c);
            let too_big = self.max_bytes > 0 && files.bytes > self.max_bytes;
            if !too_old && !too_big {
                files.by_age.insert((at, sha), bytes);
                break;
            }
            if files.is_pinned(&sha) {
                kept_pinned.push(((at, sha), bytes));
                continue;
            }
            let path = self.path_of(&sha).expect("indexed names are digests");
            match std::fs::remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete old evidence");
                    kept_pinned.push(((at, sha), bytes));
                    continue;
                }
            }
            files.bytes -= bytes;
        }
        files.by_age.extend(kept_pinned);
        Pruned { files: deleted, bytes_kept: files.bytes }
    }

    /// The bytes of `sha256`, checked against it (a file changed on disk is an error,
    /// not evidence).
    pub fn read(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        let path = self.path_of(sha256).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a SHA-256"))?;
        let bytes = std::fs::read(path)?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the file of {sha256} does not match its digest")));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, EvidenceStore) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EvidenceConfig { dir: dir.path().join("evidence"), ..Default::default() };
        let s = EvidenceStore::open(&cfg).unwrap().unwrap();
        (dir, s)
    }

    #[test]
    fn files_are_content_addressed_whole_and_checked_on_read() {
        let (_d, s) = store();
        let e = s.put("11111111-1111-1111-1111-111111111111", b"\xff\xd8 a picture").unwrap();
        assert_eq!(e.sha256, hex::encode(Sha256::digest(b"\xff\xd8 a picture")));
        assert_eq!(e.bytes, 12);
        assert_eq!(e.url, "/v1/events/11111111-1111-1111-1111-111111111111/evidence.jpg");
        let path = s.path_of(&e.sha256).unwrap();
        assert!(path.starts_with(s.dir().join(&e.sha256[..2])), "{path:?}");
        assert_eq!(s.read(&e.sha256).unwrap(), b"\xff\xd8 a picture");
        // The same picture for another event: one file, no temporary left behind.
        let again = s.put("22222222-2222-2222-2222-222222222222", b"\xff\xd8 a picture").unwrap();
        assert_eq!(again.sha256, e.sha256);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|f| f.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A file changed on disk is refused.
        std::fs::write(&path, b"something else").unwrap();
        assert_eq!(s.read(&e.sha256).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn only_digests_become_paths() {
        let (_d, s) = store();
        for bad in ["", "../../etc/passwd", &"A".repeat(64), &"a".repeat(63), &format!("{}/", "a".repeat(63))] {
            assert!(s.path_of(bad).is_none(), "{bad:?}");
            assert_eq!(s.read(bad).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        }
        assert!(s.path_of(&"0a".repeat(32)).is_some());
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let (_d, s) = store();
        let digest = hex::encode(Sha256::digest(b"x"));
        // The shard directory's name taken by a file: nothing can be created under it.
        std::fs::write(s.dir().join(&digest[..2]), b"").unwrap();
        assert!(s.put("e", b"x").is_err());
        assert!(s.read(&digest).is_err());
    }

    fn capped(dir: &Path, max_mb: u64, max_age_days: f64) -> EvidenceStore {
        EvidenceStore::open(&EvidenceConfig { dir: dir.to_path_buf(), max_mb, max_age_days, ..Default::default() }).unwrap().unwrap()
    }

    /// A 300 KiB "picture" numbered `i`.
    fn picture(i: u8) -> Vec<u8> {
        let mut v = vec![i; 300 << 10];
        v[0] = 0xff;
        v
    }

    #[test]
    fn past_the_size_cap_the_oldest_go_first_but_never_an_open_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let s = capped(dir.path(), 1, 0.0);
        let first = s.put("e1", &picture(1)).unwrap();
        s.pin("incident-a", &first.sha256); // opened incident a
        let second = s.put("e2", &picture(2)).unwrap();
        let third = s.put("e3", &picture(3)).unwrap();
        assert_eq!(s.prune(SystemTime::now()), Pruned { files: 0, bytes_kept: 900 << 10 }, "900 KiB fit in 1 MiB");
        let fourth = s.put("e4", &picture(4)).unwrap();
        // 1200 KiB > 1 MiB: the oldest unpinned one (the second) goes, the pinned first stays.
        assert_eq!(s.prune(SystemTime::now()), Pruned { files: 1, bytes_kept: 900 << 10 });
        assert!(s.read(&first.sha256).is_ok(), "an open incident's evidence is kept");
        assert_eq!(s.read(&second.sha256).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        assert!(s.read(&third.sha256).is_ok() && s.read(&fourth.sha256).is_ok());
        // Once incident a closes, its evidence is the oldest and goes next.
        s.unpin("incident-a");
        s.put("e5", &picture(5)).unwrap();
        assert_eq!(s.prune(SystemTime::now()).files, 1);
        assert_eq!(s.read(&first.sha256).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn files_past_the_age_limit_go_and_a_restart_finds_what_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = capped(dir.path(), 0, 30.0);
        let old = s.put("e1", &picture(1)).unwrap();
        let pinned = s.put("e2", &picture(2)).unwrap();
        s.pin("open", &pinned.sha256);
        let fresh = s.put("e3", &picture(3)).unwrap();
        let in_40_days = SystemTime::now() + Duration::from_secs(40 * 86_400);
        // The third is written "now" as well: all three are 40 days old then, two go...
        assert_eq!(s.prune(in_40_days), Pruned { files: 2, bytes_kept: 300 << 10 });
        assert!(s.read(&pinned.sha256).is_ok());
        assert!(s.read(&old.sha256).is_err() && s.read(&fresh.sha256).is_err());
        // ...and a restart indexes what is left (and drops a crash's temporary).
        std::fs::write(s.path_of(&pinned.sha256).unwrap().with_file_name(".x.1.tmp"), b"torn").unwrap();
        drop(s);
        let again = capped(dir.path(), 0, 30.0);
        assert_eq!(again.prune(SystemTime::now()), Pruned { files: 0, bytes_kept: 300 << 10 });
        let shard: Vec<_> = std::fs::read_dir(again.path_of(&pinned.sha256).unwrap().parent().unwrap()).unwrap().collect();
        assert_eq!(shard.len(), 1, "the temporary is gone");
        // Not pinned after the restart: age alone decides.
        assert_eq!(again.prune(in_40_days).files, 1);
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut iss = Issues::new(Path::new("argus.toml"));
        validate(
            &EvidenceConfig { jpeg_quality: 0, dir: PathBuf::new(), enabled: true, max_mb: u64::MAX, max_age_days: f64::NAN, clip: Default::default() },
            &mut iss,
        );
        let keys: Vec<String> = iss.into_vec().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["evidence.dir", "evidence.jpeg_quality", "evidence.max_mb", "evidence.max_age_days"]);
        let mut ok = Issues::new(Path::new("argus.toml"));
        validate(&EvidenceConfig::default(), &mut ok);
        assert!(ok.is_empty());
    }
}
