//! Known-answer tests: fixed inputs → values computed outside Argus, written here as
//! literals, so that a change to an id derivation or to the geodesy cannot slip through
//! a round trip.
//!
//! - event and incident ids: scripts/reference/event_id.py (Python hashlib + uuid);
//! - latitude/longitude: scripts/reference/wgs84_points.py (Karney's geodesics via
//!   geographiclib, cross-checked with pyproj's Geod).

use std::sync::Arc;

use argus::geo::GeoOrigin;
use argus::model::WorldPos;
use argus::model::{EventKind, derive_id, event_id};
use argus::model::{IncidentPhase, SceneObject};
use argus::risk::RiskEngine;
use argus::risk::config::RiskConfig;
use time::macros::datetime;

// ---------------------------------------------------------------------------------
// Event ids. Values from `python3 scripts/reference/event_id.py`.

#[test]
fn event_ids_match_the_independent_reference() {
    let t = datetime!(2026-11-23 08:15:02.120 UTC);
    assert_eq!(event_id("cam-1", t, EventKind::IncidentOpened, Some("inc-7")), "3ddb1b92-5cfe-8302-846e-db9c07372daa");
    assert_eq!(event_id("cam-1", t, EventKind::IncidentClosed, Some("inc-7")), "070acb77-3cdd-8c27-95ad-6f384f63b969");
    assert_eq!(event_id("lobby", t, EventKind::FrameAnalyzed, None), "9e63f3ae-714c-8a9b-948b-8ab05d6d4590");
    // Before the epoch: the nanoseconds are a negative i128, two's complement.
    let before = datetime!(1969-12-31 23:59:59.999 UTC);
    assert_eq!(event_id("lobby", before, EventKind::FrameAnalyzed, None), "17f9c5c1-bd40-888f-a34c-3f8bb406cc5c");
}

#[test]
fn derived_ids_match_the_independent_reference() {
    assert_eq!(derive_id(&[b"ab", b"c"]), "43ee6555-79de-81ca-b39b-3f95c1c2d3f4");
    assert_eq!(derive_id(&[b"a", b"bc"]), "9a8acca1-b6c6-80be-bd3f-bc756aed625d");
    // No parts: the SHA-256 of nothing, version and variant bits set.
    assert_eq!(derive_id(&[]), "e3b0c442-98fc-8c14-9afb-f4c8996fb924");
}

/// The incident id the risk engine derives when an intrusion opens: camera, rule id and
/// the frame time's f64 bits.
#[test]
fn incident_ids_match_the_independent_reference() {
    let rules: argus::config::PipelineConfig =
        toml::from_str("name = \"s\"\n[[rules]]\nkind = \"intrusion\"\nid = \"no-entry\"\nzone = \"gate\"\nmin_dwell_s = 1.0\nupdate_every_s = 0\n").unwrap();
    let mut engine = RiskEngine::with_settings(Arc::from("cam"), &rules.rules, RiskConfig::default());
    let person = SceneObject {
        track_id: Some(1),
        class: Arc::from("person"),
        confidence: 0.9,
        bbox: [0.0; 4],
        world: Some(WorldPos { x_m: 5.0, y_m: 5.0, lat: None, lon: None }),
        speed_mps: Some(0.0),
        heading_deg: None,
        zones: vec!["gate".into()],
    };
    let mut opened = Vec::new();
    for i in 0..5 {
        let t = i as f64 * 0.5;
        for c in engine.evaluate(t, std::slice::from_ref(&person)) {
            if c.phase == IncidentPhase::Opened {
                opened.push((t, c.incident_id));
            }
        }
    }
    assert_eq!(opened, vec![(1.0, "57dd525e-79bb-8007-acf3-7d7511eab030".to_string())]);
}

// ---------------------------------------------------------------------------------
// Latitude/longitude. `(origin_lat, origin_lon, east_m, north_m, lat, lon)`: the point
// `east_m`/`north_m` from the origin, from `scripts/reference/wgs84_points.py`
// (geographiclib 2.1, pyproj 3.7.2): north/south along the meridian
// (Geodesic.Direct, azimuth 0/180); east/west on the origin's parallel at that
// geodesic distance (Geodesic.Inverse solved for the longitude).

const REFERENCE: &[(f64, f64, f64, f64, f64, f64)] = &[
    (37.5665, 126.978, 0.0, 50.0, 37.566950497959944, 126.978),
    (37.5665, 126.978, 50.0, 0.0, 37.5665, 126.97856595039195),
    (37.5665, 126.978, 0.0, -50.0, 37.56604950200559, 126.978),
    (37.5665, 126.978, -50.0, 0.0, 37.5665, 126.97743404960804),
    (37.5665, 126.978, 0.0, 500.0, 37.57100497804857, 126.978),
    (37.5665, 126.978, 500.0, 0.0, 37.5665, 126.98365950392048),
    (37.5665, 126.978, 0.0, -500.0, 37.56199501850508, 126.978),
    (37.5665, 126.978, -500.0, 0.0, 37.5665, 126.97234049607951),
    (-33.86, 151.21, 0.0, 50.0, -33.859549224080205, 151.21),
    (-33.86, 151.21, 50.0, 0.0, -33.86, 151.2105403298394),
    (-33.86, 151.21, 0.0, -50.0, -33.86045077588677, 151.21),
    (-33.86, 151.21, -50.0, 0.0, -33.86, 151.2094596701606),
    (-33.86, 151.21, 0.0, 500.0, -33.855492239316106, 151.21),
    (-33.86, 151.21, 500.0, 0.0, -33.86, 151.21540329839465),
    (-33.86, 151.21, 0.0, -500.0, -33.86450775738167, 151.21),
    (-33.86, 151.21, -500.0, 0.0, -33.86, 151.20459670160537),
    (0.25, -78.5, 0.0, 50.0, 0.2504521846519218, -78.5),
    (0.25, -78.5, 50.0, 0.0, 0.25, -78.49955083811088),
    (0.25, -78.5, 0.0, -50.0, 0.2495478153477654, -78.5),
    (0.25, -78.5, -50.0, 0.0, 0.25, -78.50044916188912),
    (0.25, -78.5, 0.0, 500.0, 0.2545218465050526, -78.5),
    (0.25, -78.5, 500.0, 0.0, 0.25, -78.49550838110866),
    (0.25, -78.5, 0.0, -500.0, 0.24547815346367557, -78.5),
    (0.25, -78.5, -500.0, 0.0, 0.25, -78.50449161889134),
    (69.65, 18.96, 0.0, 50.0, 69.65044819907342, 18.96),
    (69.65, 18.96, 50.0, 0.0, 69.65, 18.961287789965667),
    (69.65, 18.96, 0.0, -50.0, 69.64955180090348, 18.96),
    (69.65, 18.96, -50.0, 0.0, 69.65, 18.958712210034335),
    (69.65, 18.96, 0.0, 500.0, 69.6544819896951, 18.96),
    (69.65, 18.96, 500.0, 0.0, 69.65, 18.97287789968028),
    (69.65, 18.96, 0.0, -500.0, 69.64551800799552, 18.96),
    (69.65, 18.96, -500.0, 0.0, 69.65, 18.94712210031972),
    (48.8584, 2.2945, 0.0, 50.0, 48.85884961199285, 2.2945),
    (48.8584, 2.2945, 50.0, 0.0, 48.8584, 2.295181393916609),
    (48.8584, 2.2945, 0.0, -50.0, 48.857950387971925, 2.2945),
    (48.8584, 2.2945, -50.0, 0.0, 48.8584, 2.2938186060833914),
    (48.8584, 2.2945, 0.0, 500.0, 48.86289611834262, 2.2945),
    (48.8584, 2.2945, 500.0, 0.0, 48.8584, 2.301313939168344),
    (48.8584, 2.2945, 0.0, -500.0, 48.85390387813323, 2.2945),
    (48.8584, 2.2945, -500.0, 0.0, 48.8584, 2.2876860608316565),
];

/// Metres on the ground between two nearby points, from the reference point's own
/// scale (a 0.5 % error in this scale changes a 1 mm bound by 5 µm).
fn ground_m(lat_ref: f64, dlat: f64, dlon: f64) -> f64 {
    let north = dlat * 111_132.0;
    let east = dlon * 111_320.0 * lat_ref.to_radians().cos();
    north.hypot(east)
}

#[test]
fn local_metres_to_lat_lon_match_geodesic_reference_to_the_millimetre() {
    let mut worst: f64 = 0.0;
    for &(lat0, lon0, e, n, lat, lon) in REFERENCE {
        let o = GeoOrigin::new(lat0, lon0);
        let (got_lat, got_lon) = o.to_lat_lon(e, n);
        let err = ground_m(lat, got_lat - lat, got_lon - lon);
        assert!(err < 1e-3, "origin ({lat0}, {lon0}) + ({e} E, {n} N): got ({got_lat}, {got_lon}), reference ({lat}, {lon}): {:.2} mm off", err * 1e3);
        worst = worst.max(err);
    }
    eprintln!("worst to_lat_lon error: {:.3} mm", worst * 1e3);
}

#[test]
fn lat_lon_to_local_metres_match_geodesic_reference_to_the_millimetre() {
    for &(lat0, lon0, e, n, lat, lon) in REFERENCE {
        let (got_e, got_n) = GeoOrigin::new(lat0, lon0).to_local(lat, lon);
        let err = (got_e - e).hypot(got_n - n);
        assert!(err < 1e-3, "origin ({lat0}, {lon0}), point ({lat}, {lon}): got ({got_e} E, {got_n} N), reference ({e} E, {n} N): {:.2} mm off", err * 1e3);
    }
}
