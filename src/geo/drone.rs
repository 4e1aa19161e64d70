//! Drones: a ground homography per frame from the camera's pose (telemetry), for a
//! pinhole camera over flat ground.
//!
//! World frame: local east-north-up metres around a geodetic origin (configured, or the
//! first telemetry position seen), ground at z = 0. Conventions of the angles are those
//! of [`Telemetry`]: yaw clockwise from north, pitch up from the horizon (negative looks
//! down), roll positive with the right side down, applied yaw → pitch → roll.

use crate::geo::config::{DroneConfig, OriginConfig};
use crate::model::{Frame, Telemetry};

use super::lens::Intrinsics;
use super::{GeoOrigin, Homography, Lens};
use crate::model::WorldPos;

/// The camera's axes in ENU: image x runs along `right`, image y along `down`, and the
/// optical axis is `forward`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraAxes {
    pub right: [f64; 3],
    pub down: [f64; 3],
    pub forward: [f64; 3],
}

/// Axes of a camera with these angles (degrees).
pub fn camera_axes(yaw_deg: f64, pitch_deg: f64, roll_deg: f64) -> CameraAxes {
    let (sy, cy) = yaw_deg.to_radians().sin_cos();
    let (sp, cp) = pitch_deg.to_radians().sin_cos();
    let (sr, cr) = roll_deg.to_radians().sin_cos();
    // Yaw then pitch: the optical axis, and the level right axis it turns about.
    let forward = [sy * cp, cy * cp, sp];
    let right0 = [cy, -sy, 0.0];
    // down = forward × right (right-handed: right × down = forward).
    let down0 = [sp * sy, sp * cy, -cp];
    // Roll about the optical axis, right side going down for positive angles.
    let right = std::array::from_fn(|i| cr * right0[i] + sr * down0[i]);
    let down = std::array::from_fn(|i| cr * down0[i] - sr * right0[i]);
    CameraAxes { right, down, forward }
}

/// Focal length in pixels of an image `width` pixels wide spanning `hfov_deg`.
pub fn focal_px(hfov_deg: f64, width: u32) -> f64 {
    (width as f64 / 2.0) / (hfov_deg.to_radians() / 2.0).tan()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoseError {
    #[error("camera height {0:.2} m is not above the ground (alt_m minus [cameras.drone] ground_alt_m)")]
    NotAboveGround(f64),
    #[error("hfov {0}° is outside (0, 180)")]
    FieldOfView(f64),
    #[error("telemetry has a value that is not a finite number")]
    NotFinite,
    #[error("image is {0}x{1}")]
    EmptyImage(u32, u32),
}

/// One frame's mapping from pixels to the ground.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DroneView {
    /// Pixels → ground metres, scaled so that w > 0 exactly for rays that go down to the
    /// ground in front of the camera.
    pub homography: Homography,
    /// The point on the ground below the camera (world metres).
    pub nadir: [f64; 2],
    pub height_m: f64,
    pub max_range_m: f64,
    /// Distortion of the lens, with this frame's intrinsics (`[cameras.drone] distortion`).
    pub lens: Option<Lens>,
}

impl DroneView {
    /// The view of a camera at `position` (world metres east/north) `height_m` above the
    /// ground, with the telemetry's angles and field of view, for a `width`×`height` image.
    pub fn new(t: &Telemetry, width: u32, height: u32, position: [f64; 2], height_m: f64, max_range_m: f64) -> Result<Self, PoseError> {
        if ![t.yaw, t.pitch, t.roll, t.hfov, height_m, position[0], position[1]].iter().all(|v| v.is_finite()) {
            return Err(PoseError::NotFinite);
        }
        if !(t.hfov > 0.0 && t.hfov < 180.0) {
            return Err(PoseError::FieldOfView(t.hfov));
        }
        if width == 0 || height == 0 {
            return Err(PoseError::EmptyImage(width, height));
        }
        if !(height_m > 0.0) {
            return Err(PoseError::NotAboveGround(height_m));
        }
        let f = focal_px(t.hfov, width);
        let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
        let a = camera_axes(t.yaw, t.pitch, t.roll);
        // Ray of pixel (u, v) in ENU: right·(u-cx)/f + down·(v-cy)/f + forward = M·[u, v, 1].
        let m: [[f64; 3]; 3] = std::array::from_fn(|i| [a.right[i] / f, a.down[i] / f, a.forward[i] - (a.right[i] * cx + a.down[i] * cy) / f]);
        // The ray from (X0, Y0, h) meets z = 0 at s = h / -ray_z: X = X0 + s·ray_x, so with
        // w = -ray_z: X·w = h·ray_x - X0·ray_z (likewise Y).
        let [x0, y0] = position;
        let mut h = [0.0; 9];
        for c in 0..3 {
            h[c] = height_m * m[0][c] - x0 * m[2][c];
            h[3 + c] = height_m * m[1][c] - y0 * m[2][c];
            h[6 + c] = -m[2][c];
        }
        Ok(Self { homography: Homography(h), nadir: position, height_m, max_range_m, lens: None })
    }

    /// Adds lens distortion (OpenCV coefficients) to this view's pinhole camera.
    pub fn with_distortion(mut self, coefficients: &[f64], width: u32, height: u32, hfov_deg: f64) -> Self {
        let f = focal_px(hfov_deg, width);
        let k = Intrinsics { fx: f, fy: f, cx: width as f64 / 2.0, cy: height as f64 / 2.0 };
        let mut dist = [0.0; 8];
        let n = coefficients.len().min(8);
        dist[..n].copy_from_slice(&coefficients[..n]);
        self.lens = Some(Lens { k, dist, n_dist: n });
        self
    }

    /// Ground points of pixels as the camera saw them (undistorted first when the view
    /// has a lens).
    pub fn locate_points(&self, px: &[[f64; 2]]) -> Vec<Option<[f64; 2]>> {
        match &self.lens {
            Some(l) => l.undistort_points(px).into_iter().map(|p| p.and_then(|p| self.locate_point(p))).collect(),
            None => px.iter().map(|p| self.locate_point(*p)).collect(),
        }
    }

    /// The ground point an ideal (undistorted) pixel sees; `None` at or above the
    /// horizon, or beyond `max_range_m` from the nadir.
    pub fn locate_point(&self, px: [f64; 2]) -> Option<[f64; 2]> {
        let h = &self.homography.0;
        let w = h[6] * px[0] + h[7] * px[1] + h[8];
        if !(w > 1e-12) {
            return None;
        }
        let p = [(h[0] * px[0] + h[1] * px[1] + h[2]) / w, (h[3] * px[0] + h[4] * px[1] + h[5]) / w];
        let range = (p[0] - self.nadir[0]).hypot(p[1] - self.nadir[1]);
        (range <= self.max_range_m && p[0].is_finite() && p[1].is_finite()).then_some(p)
    }
}

/// A drone camera's placement state: its origin and what it could not place.
#[derive(Debug, Clone)]
pub struct DroneGeometry {
    camera_id: String,
    cfg: DroneConfig,
    origin: Option<GeoOrigin>,
    /// The configuration and configured origin as text (a scene state's fingerprint).
    config_key: String,
    /// Frames that carried no telemetry (nothing placed).
    pub frames_without_telemetry: u64,
    /// Frames whose telemetry gave no usable view (below ground, bad angles).
    pub frames_bad_pose: u64,
}

/// What a drone camera carries from frame to frame: the origin (the first telemetry
/// position when none is configured) and its counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DroneState {
    /// `(lat, lon)` of world (0, 0).
    origin: Option<(f64, f64)>,
    frames_without_telemetry: u64,
    frames_bad_pose: u64,
}

impl DroneGeometry {
    pub fn new(camera_id: &str, cfg: &DroneConfig, origin: Option<&OriginConfig>) -> Self {
        Self {
            camera_id: camera_id.to_string(),
            cfg: cfg.clone(),
            origin: origin.map(|o| GeoOrigin::new(o.lat, o.lon)),
            config_key: serde_json::to_string(&(cfg, origin)).expect("drone config serialises"),
            frames_without_telemetry: 0,
            frames_bad_pose: 0,
        }
    }

    /// Its configuration (and the configured origin, if any) as text, for a scene
    /// state's fingerprint.
    pub fn config_key(&self) -> &str {
        &self.config_key
    }

    /// A copy of the state, to continue from with [`DroneGeometry::restore`].
    pub fn state(&self) -> DroneState {
        DroneState {
            origin: self.origin.map(|o| (o.lat, o.lon)),
            frames_without_telemetry: self.frames_without_telemetry,
            frames_bad_pose: self.frames_bad_pose,
        }
    }

    /// Continues from a saved state: the same origin, so positions stay where they were.
    pub fn restore(&mut self, s: DroneState) {
        self.origin = s.origin.map(|(lat, lon)| GeoOrigin::new(lat, lon));
        self.frames_without_telemetry = s.frames_without_telemetry;
        self.frames_bad_pose = s.frames_bad_pose;
    }

    /// World (0, 0): the configured origin, else the first position seen.
    pub fn origin(&self) -> Option<GeoOrigin> {
        self.origin
    }

    /// The view of one frame; `None` (counted, the first of each kind logged) when the
    /// frame has no telemetry or an unusable one.
    pub fn view(&mut self, frame: &Frame) -> Option<(DroneView, GeoOrigin)> {
        let Some(t) = frame.telemetry.as_deref() else {
            self.frames_without_telemetry += 1;
            if self.frames_without_telemetry == 1 {
                tracing::warn!(camera = %self.camera_id, seq = frame.seq, "drone camera frame without telemetry: its objects are not placed (logged once; counted)");
            }
            return None;
        };
        match self.view_of(t, frame.image.width, frame.image.height) {
            Ok(v) => Some(v),
            Err(e) => {
                self.frames_bad_pose += 1;
                if self.frames_bad_pose == 1 {
                    tracing::warn!(camera = %self.camera_id, seq = frame.seq, error = %e, "drone telemetry gives no view of the ground: objects not placed (logged once; counted)");
                }
                None
            }
        }
    }

    fn view_of(&mut self, t: &Telemetry, width: u32, height: u32) -> Result<(DroneView, GeoOrigin), PoseError> {
        if !(t.lat.is_finite() && t.lon.is_finite() && t.alt_m.is_finite()) {
            return Err(PoseError::NotFinite);
        }
        let origin = *self.origin.get_or_insert_with(|| GeoOrigin::new(t.lat, t.lon));
        let (east, north) = origin.to_local(t.lat, t.lon);
        let mut view = DroneView::new(t, width, height, [east, north], t.alt_m - self.cfg.ground_alt_m, self.cfg.max_range_m)?;
        if let Some(d) = &self.cfg.distortion {
            view = view.with_distortion(d, width, height, t.hfov);
        }
        Ok((view, origin))
    }

    /// Where each box's foot point (bottom centre) stands on the ground in this frame.
    pub fn locate_boxes(&mut self, frame: &Frame, boxes: &[[f32; 4]]) -> Vec<Option<WorldPos>> {
        let Some((view, origin)) = self.view(frame) else { return vec![None; boxes.len()] };
        let feet: Vec<[f64; 2]> = boxes.iter().map(super::foot_point).collect();
        view.locate_points(&feet)
            .into_iter()
            .map(|p| {
                let [x, y] = p?;
                let (lat, lon) = origin.to_lat_lon(x, y);
                Some(WorldPos { x_m: x, y_m: y, lat: Some(lat), lon: Some(lon) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry(yaw: f64, pitch: f64, roll: f64, hfov: f64, alt_m: f64) -> Telemetry {
        Telemetry { lat: 51.5, lon: -0.1, alt_m, yaw, pitch, roll, hfov }
    }

    fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
        a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
    }

    #[test]
    fn axes_are_orthonormal_and_right_handed() {
        for (y, p, r) in [(0.0, 0.0, 0.0), (37.0, -60.0, 5.0), (250.0, -10.0, -20.0), (90.0, -90.0, 0.0)] {
            let a = camera_axes(y, p, r);
            for v in [a.right, a.down, a.forward] {
                assert!((dot(v, v) - 1.0).abs() < 1e-12);
            }
            assert!(dot(a.right, a.down).abs() < 1e-12 && dot(a.right, a.forward).abs() < 1e-12 && dot(a.down, a.forward).abs() < 1e-12);
            // right × down = forward
            let c = [
                a.right[1] * a.down[2] - a.right[2] * a.down[1],
                a.right[2] * a.down[0] - a.right[0] * a.down[2],
                a.right[0] * a.down[1] - a.right[1] * a.down[0],
            ];
            assert!((0..3).all(|i| (c[i] - a.forward[i]).abs() < 1e-12), "{c:?} vs {:?}", a.forward);
        }
    }

    #[test]
    fn conventions_by_hand() {
        // Level, facing east: right is south, forward east.
        let a = camera_axes(90.0, 0.0, 0.0);
        assert!((a.forward[0] - 1.0).abs() < 1e-12 && (a.right[1] + 1.0).abs() < 1e-12);
        // Positive roll lowers the right side.
        assert!(camera_axes(0.0, 0.0, 10.0).right[2] < 0.0);
        // Negative pitch looks down.
        assert!(camera_axes(0.0, -30.0, 0.0).forward[2] < 0.0);
    }

    #[test]
    fn nadir_view_by_hand() {
        // Straight down from 100 m with a 90° field of view and yaw 0: the image centre
        // is below the drone; the right edge is 100 m east; the top of the image is north.
        let t = telemetry(0.0, -90.0, 0.0, 90.0, 100.0);
        let v = DroneView::new(&t, 1000, 600, [10.0, 20.0], 100.0, 1000.0).unwrap();
        let c = v.locate_point([500.0, 300.0]).unwrap();
        assert!((c[0] - 10.0).abs() < 1e-9 && (c[1] - 20.0).abs() < 1e-9, "{c:?}");
        let r = v.locate_point([1000.0, 300.0]).unwrap();
        assert!((r[0] - 110.0).abs() < 1e-9 && (r[1] - 20.0).abs() < 1e-9, "{r:?}");
        let top = v.locate_point([500.0, 0.0]).unwrap();
        assert!((top[0] - 10.0).abs() < 1e-9 && (top[1] - 80.0).abs() < 1e-9, "{top:?}");
    }

    #[test]
    fn sky_and_far_ground_are_placed_nowhere() {
        // Looking 10° down: the upper part of a 60°-wide (≈34° tall) view is sky.
        let t = telemetry(0.0, -10.0, 0.0, 60.0, 100.0);
        let v = DroneView::new(&t, 1280, 720, [0.0, 0.0], 100.0, 1000.0).unwrap();
        assert!(v.locate_point([640.0, 0.0]).is_none(), "sky");
        // The centre ray meets the ground at 100 / tan(10°) ≈ 567 m.
        let c = v.locate_point([640.0, 360.0]).unwrap();
        assert!((c[1] - 100.0 / 10f64.to_radians().tan()).abs() < 1e-6, "{c:?}");
        // Just below the horizon the ground is kilometres away: beyond max_range_m.
        let horizon_v = 360.0 - focal_px(60.0, 1280) * 10f64.to_radians().tan();
        assert!(v.locate_point([640.0, horizon_v + 5.0]).is_none());
    }

    #[test]
    fn unusable_poses_are_refused() {
        let t = telemetry(0.0, -90.0, 0.0, 90.0, 100.0);
        assert_eq!(DroneView::new(&t, 100, 100, [0.0, 0.0], -1.0, 1000.0), Err(PoseError::NotAboveGround(-1.0)));
        assert_eq!(DroneView::new(&telemetry(0.0, -90.0, 0.0, 180.0, 1.0), 100, 100, [0.0, 0.0], 10.0, 1000.0), Err(PoseError::FieldOfView(180.0)));
        assert_eq!(DroneView::new(&telemetry(f64::NAN, -90.0, 0.0, 90.0, 1.0), 100, 100, [0.0, 0.0], 10.0, 1000.0), Err(PoseError::NotFinite));
    }
}
