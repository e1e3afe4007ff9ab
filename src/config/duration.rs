//! Durations as the config file writes them (`90s`, `10m`, `1h30m`), with
//! the longest each kind of setting accepts.

use std::time::Duration;

/// The longest timeout, interval or grace period accepted: longer ones are
/// typing mistakes, and would overflow a deadline.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest retention accepted (`[history]`): 100 years.
pub const MAX_RETENTION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses `90s`, `10m`, `1h30m`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_duration_up_to(text, MAX_DURATION)
}

/// Parses a duration of at most `max`.
pub fn parse_duration_up_to(text: &str, max: Duration) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (write e.g. 90s, 10m, 1h)"))?;
    if duration > max {
        return Err(format!(
            "duration {text:?} is longer than the maximum of {}",
            crate::model::duration::compact(max)
        ));
    }
    Ok(duration)
}
