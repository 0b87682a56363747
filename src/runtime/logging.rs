//! Operational logs, through `tracing`, to stderr: one JSON object a line when stderr is not a
//! terminal (journald, a container runtime, a log shipper), readable text when it is.
//! `POSTERN_LOG_FORMAT=json|text` overrides the choice; `POSTERN_LOG` sets the filter (default
//! `info`).
//!
//! Every line about a transfer carries its `transfer_id`: as a field of the event, or of the
//! span the event happens in (ingest's `transfer` span, the worker's `delivery` span), which the
//! JSON format writes under `span`. Logs carry transfer ids, organisation ids, codes and sizes,
//! never payloads, justification text or subject references.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that sets the filter (`tracing_subscriber::EnvFilter` syntax).
pub const FILTER_ENV: &str = "POSTERN_LOG";
/// The environment variable that forces a format: `json` or `text`.
pub const FORMAT_ENV: &str = "POSTERN_LOG_FORMAT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

impl Format {
    /// `POSTERN_LOG_FORMAT` if it names a format, otherwise JSON unless stderr is a terminal.
    /// The second value is a `POSTERN_LOG_FORMAT` that was set but not understood.
    pub fn choose(forced: Option<&str>, stderr_is_terminal: bool) -> (Format, Option<String>) {
        let auto = if stderr_is_terminal {
            Format::Text
        } else {
            Format::Json
        };
        match forced.map(str::trim) {
            None | Some("" | "auto") => (auto, None),
            Some(v) if v.eq_ignore_ascii_case("json") => (Format::Json, None),
            Some(v) if v.eq_ignore_ascii_case("text") => (Format::Text, None),
            Some(v) => (auto, Some(v.to_owned())),
        }
    }
}

/// A subscriber writing `format` to `writer` through `filter`. `ansi`: colour (text only).
pub fn subscriber<W>(
    format: Format,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match format {
        // The event's fields at the top level (`message`, `transfer_id`...), and the innermost
        // span's under `span`: the list of every enclosing span would repeat the same ids.
        Format::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        Format::Text => Box::new(builder.with_ansi(ansi).finish()),
    }
}

/// Installs the process's subscriber (once; later calls do nothing).
pub fn init() {
    let terminal = std::io::stderr().is_terminal();
    let forced = std::env::var(FORMAT_ENV).ok();
    let (format, unknown) = Format::choose(forced.as_deref(), terminal);
    let (filter, bad_filter) = match EnvFilter::try_from_env(FILTER_ENV) {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new("info"),
            // Unset is the usual case, not a mistake.
            std::env::var(FILTER_ENV).ok().map(|v| (v, e.to_string())),
        ),
    };
    // `try_init` also routes crates that log through `log` (rustls, among others) here.
    let _ = subscriber(format, filter, std::io::stderr, terminal).try_init();
    if let Some(v) = unknown {
        tracing::warn!(value = %v, "{FORMAT_ENV} is neither `json` nor `text`; chose by the terminal");
    }
    if let Some((v, e)) = bad_filter {
        tracing::warn!(value = %v, error = %e, "{FILTER_ENV} is not a valid filter; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn the_format_follows_the_terminal_unless_forced() {
        assert_eq!(Format::choose(None, true), (Format::Text, None));
        assert_eq!(Format::choose(None, false), (Format::Json, None));
        assert_eq!(Format::choose(Some("TEXT"), false), (Format::Text, None));
        assert_eq!(Format::choose(Some("json"), true), (Format::Json, None));
        assert_eq!(
            Format::choose(Some("yaml"), false),
            (Format::Json, Some("yaml".into()))
        );
    }

    #[test]
    fn json_lines_carry_the_transfer_id_of_their_span() {
        let buf = Buffer::default();
        let sub = subscriber(Format::Json, EnvFilter::new("info"), buf.clone(), false);
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("transfer", transfer_id = "t-1");
            let _e = span.enter();
            tracing::info!(size = 3, "inside");
        });
        let out = String::from_utf8(buf.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        let line: serde_json::Value =
            serde_json::from_str(out.lines().next().unwrap_or_default()).unwrap_or_default();
        assert_eq!(line["message"], "inside", "{out}");
        assert_eq!(line["size"], 3, "{out}");
        assert_eq!(line["span"]["transfer_id"], "t-1", "{out}");
        assert_eq!(line["level"], "INFO", "{out}");
    }
}
