//! Logging with `tracing`, to stderr: human-readable by default, JSON lines with
//! `log_format = "json"`. `RUST_LOG` picks the levels (default `info`).
//!
//! The human-readable form is coloured only when stderr is a terminal and `NO_COLOR` is unset
//! or empty (<https://no-color.org>): a log file, journald or a container's log driver gets
//! plain text, not ANSI escapes.
//!
//! Traces, exported over OTLP when configured, are [`otel`]'s.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub mod otel;

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Colour on a terminal, unless `NO_COLOR` holds anything.
fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::use_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color_set() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}
