//! Logging for node programs: `tracing` events to standard error, as text for people or as
//! one JSON object per line for log collectors, filtered by level and target.
//!
//! Standard error, because node programs speak a line protocol on standard output (the
//! readiness line, views, replies to their launcher).
//!
//! The filter uses `tracing-subscriber`'s directive syntax (`info`, `warn,selfman_net=debug`,
//! …). [`init`] takes it from its argument, else from `SELFMAN_LOG`, else from `RUST_LOG`,
//! else `info`.

use std::str::FromStr;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`), and
    /// the current span's fields.
    Json,
}

impl FromStr for LogFormat {
    type Err = LogError;

    fn from_str(s: &str) -> Result<LogFormat, LogError> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => {
                Err(LogError(format!("log format {other:?} is neither \"text\" nor \"json\"")))
            }
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError(String);

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogError {}

/// The filter: `directives` if given, else `SELFMAN_LOG`, else `RUST_LOG`, else `info`.
///
/// # Errors
///
/// The directives do not parse; the error names them.
pub fn filter(directives: Option<&str>) -> Result<EnvFilter, LogError> {
    filter_or(directives, "info")
}

/// As [`filter`], with `default` in place of `info` when neither the argument nor the
/// environment gives directives.
fn filter_or(directives: Option<&str>, default: &str) -> Result<EnvFilter, LogError> {
    let text = directives
        .map(str::to_owned)
        .or_else(|| std::env::var("SELFMAN_LOG").ok())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_owned());
    EnvFilter::builder().parse(&text).map_err(|e| LogError(format!("bad log filter {text:?}: {e}")))
}

/// Installs the process's logger, writing to standard error.
///
/// # Errors
///
/// A bad filter, or a logger is already installed in this process.
pub fn init(format: LogFormat, directives: Option<&str>) -> Result<(), LogError> {
    init_with_writer(format, directives, std::io::stderr)
}

/// As [`init`] with no directives of its own: `SELFMAN_LOG`, else `RUST_LOG`, else `default`
/// (node programs pass `warn`, so that only what an operator must see is printed).
///
/// # Errors
///
/// As [`init`].
pub fn init_or(format: LogFormat, default: &str) -> Result<(), LogError> {
    install(format, filter_or(None, default)?, std::io::stderr)
}

/// As [`init`], writing to `writer` (tests, or a file).
///
/// # Errors
///
/// As [`init`].
pub fn init_with_writer<W>(
    format: LogFormat,
    directives: Option<&str>,
    writer: W,
) -> Result<(), LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(format, filter(directives)?, writer)
}

fn install<W>(format: LogFormat, filter: EnvFilter, writer: W) -> Result<(), LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(false).with_current_span(true).try_init(),
    };
    result.map_err(|e| LogError(format!("cannot install the logger: {e}")))
}
