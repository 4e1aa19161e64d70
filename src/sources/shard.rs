//! Which cameras one `argus ingest` replica runs, without any coordination between
//! replicas: shard `I` of `N` runs exactly the cameras whose id maps to `I`, so `N`
//! replicas configured alike cover every camera exactly once.
//!
//! The map (stable across versions and machines; pinned by the tests below):
//! `shard = jump(fnv1a64(camera_id as UTF-8), N)`, where `fnv1a64` is 64-bit FNV-1a
//! and `jump` is Lamping and Veach's jump consistent hash. Growing from `N` to `N + 1`
//! replicas moves only about `1/(N + 1)` of the cameras, all of them to the new one.
//!
//! Where the shard comes from, first match wins: `--shard I/N`; `ARGUS_SHARD=I/N`;
//! `ARGUS_SHARD_COUNT=N` with the ordinal at the end of `POD_NAME` or `HOSTNAME`
//! (a Kubernetes StatefulSet's pods are `NAME-0`, `NAME-1`, …).

use std::fmt;

/// Shard `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why} (fix: {fix})")]
pub struct ShardError {
    /// Where the value came from: `--shard`, `ARGUS_SHARD`, …
    pub what: String,
    pub why: String,
    pub fix: &'static str,
}

const FIX_FORMAT: &str = "write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4";

impl Shard {
    /// Every camera: one replica.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `I/N`, from `what` (named in the error).
    pub fn parse(value: &str, what: &str) -> Result<Self, ShardError> {
        let err = |why: String| ShardError { what: what.to_string(), why, fix: FIX_FORMAT };
        let (i, n) = value.trim().split_once('/').ok_or_else(|| err(format!("`{value}` is not INDEX/COUNT")))?;
        let index: u32 = i.trim().parse().map_err(|_| err(format!("`{i}` is not a shard index")))?;
        let count: u32 = n.trim().parse().map_err(|_| err(format!("`{n}` is not a shard count")))?;
        Self::new(index, count).map_err(err)
    }

    fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("a shard count of 0".into());
        }
        if index >= count {
            return Err(format!("shard {index} of {count} does not exist (indexes run from 0 to {})", count - 1));
        }
        Ok(Self { index, count })
    }

    /// The ordinal at the end of a StatefulSet pod's name (`argus-ingest-3` → 3).
    pub fn from_pod_name(pod: &str, count: u32, what: &str) -> Result<Self, ShardError> {
        let err = |why: String| ShardError { what: what.to_string(), why, fix: "name the pod NAME-ORDINAL (a StatefulSet does), or set ARGUS_SHARD=I/N" };
        let ordinal = pod.rsplit_once('-').map_or(pod, |(_, o)| o);
        let index: u32 = ordinal.parse().map_err(|_| err(format!("`{pod}` does not end in -ORDINAL")))?;
        Self::new(index, count).map_err(|why| err(format!("pod `{pod}`: {why}; ARGUS_SHARD_COUNT must be the StatefulSet's replicas")))
    }

    /// The shard from the flag or the environment (`env` reads a variable), as the
    /// module doc says, and where it came from; [`Shard::ALL`] when nothing sets one.
    pub fn resolve(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<(Self, String), ShardError> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = flag {
            return Ok((Self::parse(v, "--shard")?, "--shard".into()));
        }
        if let Some(v) = env("ARGUS_SHARD") {
            return Ok((Self::parse(&v, "ARGUS_SHARD")?, "ARGUS_SHARD".into()));
        }
        let Some(n) = env("ARGUS_SHARD_COUNT") else { return Ok((Self::ALL, "all (no shard set)".into())) };
        let count: u32 = n.trim().parse().map_err(|_| ShardError {
            what: "ARGUS_SHARD_COUNT".into(),
            why: format!("`{n}` is not a number"),
            fix: "set it to the number of ingest replicas, e.g. 4",
        })?;
        for var in ["POD_NAME", "HOSTNAME"] {
            if let Some(pod) = env(var) {
                return Ok((Self::from_pod_name(pod.trim(), count, var)?, format!("{var}={} with ARGUS_SHARD_COUNT", pod.trim())));
            }
        }
        Err(ShardError {
            what: "ARGUS_SHARD_COUNT".into(),
            why: "is set but neither POD_NAME nor HOSTNAME names the pod".into(),
            fix: "set POD_NAME from the pod's metadata.name, or ARGUS_SHARD=I/N",
        })
    }

    /// Whether this shard runs the camera.
    pub fn owns(&self, camera_id: &str) -> bool {
        shard_of(camera_id, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The map in one line (for `/v1/info`).
pub const MAP: &str = "jump_consistent_hash(fnv1a_64(camera_id as UTF-8), count)";

/// The shard (of `count`) that runs `camera_id`.
pub fn shard_of(camera_id: &str, count: u32) -> u32 {
    jump_hash(fnv1a64(camera_id.as_bytes()), count.max(1))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014).
fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_map_is_pinned() {
        // Changing these moves cameras between running replicas: never without a note.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let got: Vec<u32> = ["cam-1", "cam-2", "cam-3", "cam-4", "lobby", "gate-north"].iter().map(|c| shard_of(c, 4)).collect();
        assert_eq!(got, PINNED_4);
        assert!((0..100).all(|i| shard_of(&format!("cam-{i}"), 1) == 0));
    }

    const PINNED_4: [u32; 6] = [1, 3, 0, 3, 2, 0];

    #[test]
    fn replicas_cover_every_camera_exactly_once_and_growing_moves_few() {
        let cams: Vec<String> = (0..2000).map(|i| format!("camera-{i}")).collect();
        for n in [1u32, 2, 3, 7] {
            for c in &cams {
                let owners = (0..n).filter(|&i| Shard { index: i, count: n }.owns(c)).count();
                assert_eq!(owners, 1, "{c} over {n} shards");
            }
            let mut per: HashMap<u32, usize> = HashMap::new();
            for c in &cams {
                *per.entry(shard_of(c, n)).or_default() += 1;
            }
            let even = cams.len() / n as usize;
            assert!(per.values().all(|&k| k.abs_diff(even) < even / 5 + 20), "{n} shards: {per:?}");
        }
        let moved: Vec<&String> = cams.iter().filter(|c| shard_of(c, 4) != shard_of(c, 5)).collect();
        assert!(moved.iter().all(|c| shard_of(c, 5) == 4), "only to the new shard");
        assert!(moved.len() < cams.len() / 4, "{} of {} moved", moved.len(), cams.len());
    }

    #[test]
    fn the_shard_comes_from_the_flag_then_the_environment_then_the_pod_name() {
        let env = |vars: &'static [(&'static str, &'static str)]| move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(Shard::resolve(None, env(&[])).unwrap().0, Shard::ALL);
        assert_eq!(Shard::resolve(Some("1/3"), env(&[("ARGUS_SHARD", "0/2")])).unwrap(), (Shard { index: 1, count: 3 }, "--shard".into()));
        assert_eq!(Shard::resolve(None, env(&[("ARGUS_SHARD", " 0/2 ")])).unwrap(), (Shard { index: 0, count: 2 }, "ARGUS_SHARD".into()));
        let pod = env(&[("ARGUS_SHARD_COUNT", "4"), ("POD_NAME", "argus-ingest-3"), ("HOSTNAME", "x-0")]);
        assert_eq!(Shard::resolve(None, pod).unwrap(), (Shard { index: 3, count: 4 }, "POD_NAME=argus-ingest-3 with ARGUS_SHARD_COUNT".into()));
        assert_eq!(Shard::resolve(None, env(&[("ARGUS_SHARD_COUNT", "2"), ("HOSTNAME", "argus-ingest-1")])).unwrap().0, Shard { index: 1, count: 2 });

        let e = Shard::resolve(Some("4/4"), env(&[])).unwrap_err();
        assert_eq!(e.what, "--shard");
        assert!(e.to_string().contains("shard 4 of 4 does not exist"), "{e}");
        assert!(Shard::resolve(Some("1"), env(&[])).unwrap_err().to_string().contains("not INDEX/COUNT"));
        assert!(Shard::resolve(Some("0/0"), env(&[])).is_err());
        assert!(Shard::resolve(None, env(&[("ARGUS_SHARD", "a/2")])).unwrap_err().to_string().starts_with("ARGUS_SHARD: `a`"));
        let e = Shard::resolve(None, env(&[("ARGUS_SHARD_COUNT", "2"), ("POD_NAME", "argus-ingest-5")])).unwrap_err();
        assert!(e.to_string().contains("pod `argus-ingest-5`: shard 5 of 2"), "{e}");
        assert!(Shard::resolve(None, env(&[("ARGUS_SHARD_COUNT", "2"), ("POD_NAME", "ingest")])).unwrap_err().to_string().contains("-ORDINAL"));
        assert!(Shard::resolve(None, env(&[("ARGUS_SHARD_COUNT", "2")])).unwrap_err().to_string().contains("POD_NAME"));
        assert!(Shard::resolve(None, env(&[("ARGUS_SHARD_COUNT", "many"), ("POD_NAME", "a-1")])).is_err());
    }
}
