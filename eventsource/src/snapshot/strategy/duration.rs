//! Durations written the way `#[snapshot(after = "1h30m")]` reads them.

use std::fmt;
use std::time::Duration;

/// Displays a duration as `1d`, `1h30m`, `45s` or `200ms`; sub-millisecond parts fall
/// back to `Duration`'s own notation.
pub(crate) struct Compact(pub Duration);

impl fmt::Display for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{d:?}");
        }
        if d.is_zero() {
            return f.write_str("0s");
        }
        let mut secs = d.as_secs();
        for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= len {
                write!(f, "{}{unit}", secs / len)?;
                secs %= len;
            }
        }
        let millis = d.subsec_millis();
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(d: Duration) -> String {
        Compact(d).to_string()
    }

    #[test]
    fn compact_units() {
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(Duration::from_millis(200)), "200ms");
        assert_eq!(show(Duration::from_secs(45)), "45s");
        assert_eq!(show(Duration::from_secs(15 * 60)), "15m");
        assert_eq!(show(Duration::from_secs(3600)), "1h");
        assert_eq!(show(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show(Duration::from_secs(86_400 + 1)), "1d1s");
        assert_eq!(show(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(show(Duration::from_micros(1500)), "1.5ms");
    }
}
