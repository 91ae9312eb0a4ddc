//! Durations in attributes: `"30s"`, `"15m"`, `"1h"`, `"1d"`, `"1h30m"`, `"200ms"`.

/// The units, longest name first so `ms` is tried before `m`.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

const EXAMPLES: &str = "e.g. \"30s\", \"15m\", \"1h\", \"1d\" or \"1h30m\"";

/// The duration in milliseconds, or a message saying how to write it.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    if text.trim().is_empty() {
        return Err(format!(
            "empty duration: write a number and a unit, {EXAMPLES}"
        ));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid duration \"{text}\": write it without spaces, {EXAMPLES}"
        ));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration \"{text}\": expected a number followed by a unit (ms, s, m, h or d), {EXAMPLES}"
            ));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.chars().take_while(char::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(if tail.is_empty() && total == 0 {
                format!(
                    "duration \"{text}\" has no unit: write e.g. \"{number}s\" or \"{number}m\" (units: ms, s, m, h, d)"
                )
            } else {
                format!(
                    "invalid duration \"{text}\": every number needs a unit (ms, s, m, h or d), {EXAMPLES}"
                )
            });
        }
        let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit \"{unit}\" in duration \"{text}\", expected ms, s, m, h or d"
            ));
        };
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .and_then(|ms| total.checked_add(ms));
        total = part.ok_or_else(|| format!("duration \"{text}\" is too large"))?;
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn accepts_units_and_sums() {
        assert_eq!(parse_millis("200ms"), Ok(200));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("15m"), Ok(900_000));
        assert_eq!(parse_millis("1h"), Ok(3_600_000));
        assert_eq!(parse_millis("1d"), Ok(86_400_000));
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis("1m500ms"), Ok(60_500));
        assert_eq!(parse_millis("0s"), Ok(0));
    }

    #[test]
    fn rejects_with_advice() {
        assert!(parse_millis("").unwrap_err().contains("empty duration"));
        assert!(
            parse_millis("1 hour")
                .unwrap_err()
                .contains("without spaces")
        );
        assert!(parse_millis("60").unwrap_err().contains("no unit"));
        assert!(
            parse_millis("1h30")
                .unwrap_err()
                .contains("every number needs a unit")
        );
        assert!(
            parse_millis("1w")
                .unwrap_err()
                .contains("unknown unit \"w\"")
        );
        assert!(parse_millis("h").unwrap_err().contains("expected a number"));
        assert!(
            parse_millis("99999999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
    }
}
