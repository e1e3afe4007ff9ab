//! Durations written for people the way the config takes them (`30d`,
//! `2d 3h`, `1m 30s`) rather than humantime's `30days` or `2days 3h`, so a
//! value in a message reads like the config and can be pasted back into it.

use std::time::Duration;

/// `30d`, `4h`, `1h 30m`, `2d 3h 5s`, `250ms`; `0s` for zero. Exact: every
/// non-zero unit is named, none rounded away.
pub fn compact(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    let millis = duration.subsec_millis();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if millis > 0 {
        parts.push(format!("{millis}ms"));
    }
    if parts.is_empty() {
        return "0s".to_string();
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_the_config_and_parses_back() {
        let cases = [
            (Duration::from_secs(30 * 86_400), "30d"),
            (Duration::from_secs(366 * 86_400), "366d"),
            (Duration::from_secs(4 * 3600), "4h"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(2 * 86_400 + 3 * 3600 + 5), "2d 3h 5s"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::ZERO, "0s"),
        ];
        for (duration, text) in cases {
            assert_eq!(compact(duration), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), duration, "{text}");
        }
    }
}
