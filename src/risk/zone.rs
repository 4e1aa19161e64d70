//! World-space zones: polygons in metres.

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub id: String,
    pub polygon: Vec<[f64; 2]>,
}

impl Zone {
    /// Even-odd point-in-polygon test (points on an edge may fall either way).
    pub fn contains(&self, p: [f64; 2]) -> bool {
        let poly = &self.polygon;
        let mut inside = false;
        let mut j = poly.len().wrapping_sub(1);
        for i in 0..poly.len() {
            let (a, b) = (poly[i], poly[j]);
            if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] {
                inside = !inside;
            }
            j = i;
        }
        inside
    }
}

/// Signed area (shoelace); positive for counter-clockwise corners.
pub fn polygon_area(poly: &[[f64; 2]]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f64>()
        / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_inside_not_outside_concave() {
        // An L shape.
        let z = Zone { id: "l".into(), polygon: vec![[0.0, 0.0], [4.0, 0.0], [4.0, 1.0], [1.0, 1.0], [1.0, 4.0], [0.0, 4.0]] };
        assert!(z.contains([0.5, 3.0]));
        assert!(z.contains([3.0, 0.5]));
        assert!(!z.contains([3.0, 3.0]), "the notch of the L is outside");
        assert!(!z.contains([-1.0, 0.5]));
    }

    #[test]
    fn area() {
        assert_eq!(polygon_area(&[[0.0, 0.0], [2.0, 0.0], [2.0, 3.0], [0.0, 3.0]]), 6.0);
        assert_eq!(polygon_area(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), 0.0);
    }
}
