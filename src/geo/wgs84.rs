//! Local east/north metres ↔ latitude/longitude around a geodetic origin.
//!
//! Uses WGS84's meridional and prime-vertical radii of curvature at the origin: exact
//! enough (centimetres) over the few hundred metres a camera sees.

const A: f64 = 6_378_137.0;
const E2: f64 = 6.694_379_990_14e-3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoOrigin {
    pub lat: f64,
    pub lon: f64,
    m_per_deg_lat: f64,
    m_per_deg_lon: f64,
}

impl GeoOrigin {
    pub fn new(lat: f64, lon: f64) -> Self {
        let phi = lat.to_radians();
        let s = 1.0 - E2 * phi.sin().powi(2);
        let meridional = A * (1.0 - E2) / s.powf(1.5);
        let prime_vertical = A / s.sqrt();
        Self { lat, lon, m_per_deg_lat: meridional.to_radians(), m_per_deg_lon: (prime_vertical * phi.cos()).to_radians() }
    }

    /// `(east_m, north_m)` → `(lat, lon)` in degrees.
    pub fn to_lat_lon(&self, east_m: f64, north_m: f64) -> (f64, f64) {
        (self.lat + north_m / self.m_per_deg_lat, self.lon + east_m / self.m_per_deg_lon)
    }

    /// `(lat, lon)` → `(east_m, north_m)`.
    pub fn to_local(&self, lat: f64, lon: f64) -> (f64, f64) {
        ((lon - self.lon) * self.m_per_deg_lon, (lat - self.lat) * self.m_per_deg_lat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let o = GeoOrigin::new(37.5665, 126.978);
        let (lat, lon) = o.to_lat_lon(0.0, 110_990.0);
        assert!((lat - 38.5665).abs() < 0.01, "{lat}");
        assert_eq!(lon, 126.978);
        // 1° of longitude at 37.57° N ≈ 88.2 km.
        let (_, lon) = o.to_lat_lon(88_200.0, 0.0);
        assert!((lon - 127.978).abs() < 0.01, "{lon}");
    }

    #[test]
    fn round_trips() {
        let o = GeoOrigin::new(-33.86, 151.21);
        let (lat, lon) = o.to_lat_lon(123.4, -56.7);
        let (e, n) = o.to_local(lat, lon);
        assert!((e - 123.4).abs() < 1e-6 && (n + 56.7).abs() < 1e-6);
    }
}
