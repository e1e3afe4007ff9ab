//! Small text formatters the pages share (the overview in `html.rs`, the
//! acknowledgement section in `ack_html.rs`); apart so neither page file
//! imports the other's internals.

/// A compact duration: `42s`, `5m 3s`, `3h 12m`, `4d 2h`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}
