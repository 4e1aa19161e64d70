//! Deterministic ids: the same inputs always give the same id, so a replay of the same
//! frames yields the same event and incident ids (what makes stores' upserts idempotent).

use sha2::{Digest, Sha256};

/// A stable UUID-shaped id from the given parts (SHA-256, version nibble 8 =
/// "custom", RFC 4122 variant): the same inputs always give the same id, which is what
/// makes replays idempotent in the stores.
pub fn derive_id(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).hyphenated().to_string()
}
