"""Independent reference for Argus's event ids (src/event.rs derive_id / event_id),
printed for the known-answer test in tests/known_answers.rs.

derive_id(parts): SHA-256 over, for each part, its length as a little-endian u64 and
then its bytes; the first 16 bytes of the digest, with the version nibble set to 8
(byte 6 = 0x8_) and the RFC 4122 variant (byte 8 = 0b10xx_xxxx), as a hyphenated UUID.
incident id (src/risk/mod.rs): derive_id of camera, rule id, and the frame time in
seconds as the little-endian bits of an f64.
event_id(camera, t, kind, incident): derive_id of camera, t's Unix time in
nanoseconds as a little-endian i128, the kind's wire name, and the incident id (or "").

usage: python3 scripts/reference/event_id.py
"""
import datetime
import hashlib
import struct
import uuid


def derive_id(parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(struct.pack("<Q", len(p)))
        h.update(p)
    b = bytearray(h.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


def nanos_le_i128(rfc3339):
    t = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    d = t - epoch
    ns = (d.days * 86400 + d.seconds) * 10**9 + d.microseconds * 1000
    return ns.to_bytes(16, "little", signed=True)


def event_id(camera, t, kind, incident):
    return derive_id([camera.encode(), nanos_le_i128(t), kind.encode(), (incident or "").encode()])


CASES = [
    ("cam-1", "2026-11-23T08:15:02.120Z", "incident.opened", "inc-7"),
    ("cam-1", "2026-11-23T08:15:02.120Z", "incident.closed", "inc-7"),
    ("lobby", "2026-11-23T08:15:02.120Z", "frame.analyzed", None),
    ("lobby", "1969-12-31T23:59:59.999Z", "frame.analyzed", None),
]
for c in CASES:
    print(c, event_id(*c))
print("derive_id(ab, c)", derive_id([b"ab", b"c"]))
print("derive_id(a, bc)", derive_id([b"a", b"bc"]))
print("derive_id()", derive_id([]))
print("incident(cam, no-entry, 1.0)", derive_id([b"cam", b"no-entry", struct.pack("<d", 1.0)]))
