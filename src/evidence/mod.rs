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
//! Rendering (boxes, zones, level banner) is `crate::pipeline::snapshot`'s, as for the live
//! snapshot; this module only stores and reads the bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Evidence, Issues};

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
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self { enabled: true, dir: PathBuf::from("var/evidence"), jpeg_quality: 85 }
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
}

impl EvidenceStore {
    /// The store of `cfg` (its directory created), or `None` when evidence is off.
    pub fn open(cfg: &EvidenceConfig) -> std::io::Result<Option<Self>> {
        if !cfg.enabled {
            return Ok(None);
        }
        std::fs::create_dir_all(&cfg.dir)?;
        Ok(Some(Self { dir: cfg.dir.clone(), quality: cfg.jpeg_quality }))
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
        let sha256 = hex(&Sha256::digest(jpeg));
        let path = self.path_of(&sha256).expect("a digest");
        let evidence = Evidence { url: url_of(event_id), sha256, bytes: jpeg.len() as u64 };
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
        written.map(|()| evidence)
    }

    /// The bytes of `sha256`, checked against it (a file changed on disk is an error,
    /// not evidence).
    pub fn read(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        let path = self.path_of(sha256).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a SHA-256"))?;
        let bytes = std::fs::read(path)?;
        if hex(&Sha256::digest(&bytes)) != sha256 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the file of {sha256} does not match its digest")));
        }
        Ok(bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        assert_eq!(e.sha256, hex(&Sha256::digest(b"\xff\xd8 a picture")));
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
        let digest = hex(&Sha256::digest(b"x"));
        // The shard directory's name taken by a file: nothing can be created under it.
        std::fs::write(s.dir().join(&digest[..2]), b"").unwrap();
        assert!(s.put("e", b"x").is_err());
        assert!(s.read(&digest).is_err());
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut iss = Issues::new(Path::new("argus.toml"));
        validate(&EvidenceConfig { jpeg_quality: 0, dir: PathBuf::new(), enabled: true }, &mut iss);
        let keys: Vec<String> = iss.into_vec().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["evidence.dir", "evidence.jpeg_quality"]);
        let mut ok = Issues::new(Path::new("argus.toml"));
        validate(&EvidenceConfig::default(), &mut ok);
        assert!(ok.is_empty());
    }
}
