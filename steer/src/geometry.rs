//! Great-circle geometry. Positions are unit vectors so that "which region is nearer" is a dot product,
//! with no trigonometry per region on the hot path.

use meridian_config::Coordinates;

/// Mean Earth radius (IUGG), in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A point on the unit sphere.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    x: f64,
    y: f64,
    z: f64,
}

impl Point {
    /// The point at these coordinates.
    pub fn from_coordinates(c: Coordinates) -> Self {
        let (lat, lon) = (c.lat.to_radians(), c.lon.to_radians());
        Self {
            x: lat.cos() * lon.cos(),
            y: lat.cos() * lon.sin(),
            z: lat.sin(),
        }
    }

    /// Latitude and longitude, in degrees (the inverse of [`Point::from_coordinates`], up to rounding; on
    /// no decision path: latency areas are taken from the coordinates themselves).
    pub fn lat_lon_degrees(&self) -> (f64, f64) {
        (
            self.z.clamp(-1.0, 1.0).asin().to_degrees(),
            self.y.atan2(self.x).to_degrees(),
        )
    }

    /// Cosine of the central angle between two points: larger is nearer.
    #[inline]
    pub fn dot(&self, other: &Self) -> f64 {
        self.x * other.x + self.y * other.y + self.z * other.z
    }

    /// Great-circle distance in kilometres.
    pub fn distance_km(&self, other: &Self) -> f64 {
        // atan2 of |cross| and dot is accurate at every distance, unlike acos near 0 and pi.
        let (cx, cy, cz) = (
            self.y * other.z - self.z * other.y,
            self.z * other.x - self.x * other.z,
            self.x * other.y - self.y * other.x,
        );
        (cx * cx + cy * cy + cz * cz).sqrt().atan2(self.dot(other)) * EARTH_RADIUS_KM
    }
}

/// Great-circle distance between two coordinates, in kilometres (haversine).
pub fn great_circle_km(a: Coordinates, b: Coordinates) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(lat: f64, lon: f64) -> Coordinates {
        Coordinates { lat, lon }
    }

    #[test]
    fn known_distances() {
        // Warsaw - Frankfurt is about 900 km; London - Hillsboro about 7,900 km.
        let waw_fra = great_circle_km(c(52.2297, 21.0122), c(50.1109, 8.6821));
        assert!((880.0..910.0).contains(&waw_fra), "{waw_fra}");
        let lon_hil = great_circle_km(c(51.5074, -0.1278), c(45.5229, -122.9898));
        assert!((7800.0..8000.0).contains(&lon_hil), "{lon_hil}");
        assert_eq!(great_circle_km(c(10.0, 10.0), c(10.0, 10.0)), 0.0);
        let antipodes = great_circle_km(c(0.0, 0.0), c(0.0, 180.0));
        assert!((antipodes - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6);
    }

    #[test]
    fn vector_distance_agrees_with_haversine() {
        for (a, b) in [
            (c(52.2, 21.0), c(50.1, 8.7)),
            (c(-33.9, 151.2), c(51.5, -0.1)),
            (c(1.0, 2.0), c(1.0, 2.0)),
        ] {
            let v = Point::from_coordinates(a).distance_km(&Point::from_coordinates(b));
            assert!(
                (v - great_circle_km(a, b)).abs() < 1e-6,
                "{v} vs {}",
                great_circle_km(a, b)
            );
        }
    }
}
