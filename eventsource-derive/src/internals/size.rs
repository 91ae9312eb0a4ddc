//! Sizes in attributes: `"512B"`, `"64KiB"`, `"100kB"`, `"1MiB"`, `"2MB"`.
//!
//! Decimal units are powers of 1000 and binary ones powers of 1024, as their names say:
//! `kB` (or `KB`) is 1000 bytes, `KiB` 1024; `MB` is 1 000 000, `MiB` 1 048 576.

/// The units, with their factors. `KB` is accepted for `kB`: both are 1000.
const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("kB", 1_000),
    ("KB", 1_000),
    ("KiB", 1 << 10),
    ("MB", 1_000_000),
    ("MiB", 1 << 20),
];

/// The largest size accepted: 1 GiB. A state that size is far past any worth
/// snapshotting; a larger number is a mistake.
pub const MAX: u64 = 1 << 30;

const EXAMPLES: &str = "e.g. \"64KiB\", \"100kB\" or \"1MiB\"";
const UNIT_NAMES: &str = "B, kB (or KB, 1000 bytes), KiB (1024), MB or MiB";

/// The size in bytes, from 1 to [`MAX`], or a message saying how to write it.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    if text.trim().is_empty() {
        return Err(format!("empty size: write a number and a unit, {EXAMPLES}"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid size \"{text}\": write it without spaces, {EXAMPLES}"
        ));
    }
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "invalid size \"{text}\": expected a whole number followed by a unit ({UNIT_NAMES}), {EXAMPLES}"
        ));
    }
    let (number, unit) = text.split_at(digits);
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "size \"{text}\" is not a whole number: write it in a smaller unit, e.g. \"1536KiB\" for 1.5MiB"
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "size \"{text}\" has no unit: write e.g. \"{number}KiB\" or \"{number}B\" (units: {UNIT_NAMES})"
        ));
    }
    let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!(
            "unknown unit \"{unit}\" in size \"{text}\", expected {UNIT_NAMES}"
        ));
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|&bytes| bytes <= MAX);
    match bytes {
        None => Err(format!(
            "size \"{text}\" is too large: at most \"1024MiB\" (1 GiB)"
        )),
        Some(0) => Err(format!(
            "size \"{text}\" must be more than zero: write the size above which states are stored compressed, e.g. \"64KiB\", or leave the key out to store them all plain"
        )),
        Some(bytes) => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn accepts_decimal_and_binary_units() {
        assert_eq!(parse_bytes("512B"), Ok(512));
        assert_eq!(parse_bytes("64KiB"), Ok(65_536));
        assert_eq!(parse_bytes("100kB"), Ok(100_000));
        assert_eq!(parse_bytes("100KB"), Ok(100_000));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        assert_eq!(parse_bytes("1MiB"), Ok(1_048_576));
        assert_eq!(parse_bytes("1024MiB"), Ok(1 << 30));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            " ",
            "KiB",
            "64",
            "64 KiB",
            "64kib",
            "64GiB",
            "1.5MiB",
            "-1KiB",
            "0KiB",
            "0B",
            "1025MiB",
            "99999999999999999999B",
            "64KiB2",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} is refused");
        }
    }
}
