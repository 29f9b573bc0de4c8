//! Structured logs on stdout: JSON by default (for log collectors), text for humans.
//! Lines are written by a background thread in batches, so a request never waits on stdout.

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Lines queued for the writer thread at most.
const LINES: usize = 4096;

/// Install the global subscriber; `RUST_LOG` overrides the default `info` level.
/// Keep the guard until exit: dropping it flushes what is queued.
/// Calling it twice (as tests may) keeps the first subscriber.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    // Not lossy: under a flood, requests slow down rather than lines go missing. The queue is
    // allocated whole at start: tracing-appender's default of 128,000 lines made 4 MiB
    // resident before the first line (heaptrack, BENCHMARKS.md "Controllers' memory").
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LINES)
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        // Colour only on a terminal: piped logs stay plain text.
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
    };
    guard
}
