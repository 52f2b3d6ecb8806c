//! Logs through `tracing`: pretty or JSON to stderr (journald collects it),
//! plus optional daily-rolled files in `[log].dir` (tracing-appender).
//! `$RUST_LOG` overrides `[log].level`.

use crate::config::{Log, LogFormat};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

/// Keeps the file writer flushing; hold it until exit.
pub struct Guard(#[allow(dead_code)] Option<WorkerGuard>);

pub fn init(cfg: &Log) -> anyhow::Result<Guard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&cfg.level)?,
    };
    let stderr = match cfg.format {
        LogFormat::Pretty => fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let (file, guard) = match &cfg.dir {
        None => (None, None),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("appliance")
                .filename_suffix("log")
                .max_log_files(cfg.keep)
                .build(dir)?;
            let (w, g) = tracing_appender::non_blocking(appender);
            let layer = match cfg.format {
                LogFormat::Pretty => fmt::layer().with_ansi(false).with_writer(w).boxed(),
                LogFormat::Json => fmt::layer().json().with_writer(w).boxed(),
            };
            (Some(layer), Some(g))
        }
    };
    // A second init (tests) is not an error worth failing for.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
    Ok(Guard(guard))
}
