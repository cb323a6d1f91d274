//! Telemetry shared by every smooch role: `tracing` with `RUST_LOG` filtering, JSON or
//! human-readable logs, OpenTelemetry spans exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C trace-context propagation across HTTP, gRPC
//! and AMQP, and Prometheus metrics.

pub mod grpc;
pub mod metrics;
pub mod propagation;

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// The filter used when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str =
    "info,sqlx=warn,h2=warn,tower=warn,hyper=warn,lapin=warn,opentelemetry=warn";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Flushes spans still buffered for export when dropped (at the end of `main`).
#[derive(Debug)]
#[must_use = "spans are flushed when the guard drops"]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = PROVIDER.get() {
            if let Err(e) = provider.shutdown() {
                eprintln!("flushing traces failed: {e}");
            }
        }
    }
}

fn tracer_provider(service: &str) -> SdkTracerProvider {
    let resource = Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| format!("smooch-{service}")),
        )
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
    {
        // The exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself.
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => eprintln!("OTLP trace export disabled: {e}"),
        }
    }
    builder.build()
}

fn test_provider(endpoint: &str) -> SdkTracerProvider {
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
    let builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name("smooch-test").build());
    match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
    {
        Ok(exporter) => builder
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(
                        BatchConfigBuilder::default()
                            .with_scheduled_delay(std::time::Duration::from_millis(100))
                            .build(),
                    )
                    .build(),
            )
            .build(),
        Err(e) => {
            eprintln!("OTLP test export disabled: {e}");
            builder.build()
        }
    }
}

/// Spans go to OpenTelemetry at `info` and above whatever `RUST_LOG` says of logs, so trace
/// ids and propagation do not depend on the log level.
///
/// The layer does no work on each poll of an instrumented future: no busy and idle times
/// (two clock reads per poll; a span's start and end are kept), no OpenTelemetry context
/// made current on entry (nothing here reads `opentelemetry::Context::current`: the
/// propagation asks the `tracing` span), and no thread attributes (a string per span).
fn otel_layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("smooch"))
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_threads(false)
        .with_filter(LevelFilter::INFO)
}

/// How log lines are written (`SMOOCH_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields.
    Json,
}

/// Whether human-readable log lines get terminal colours: only on a terminal, and not when
/// `NO_COLOR` is set to anything (the NO_COLOR convention). Lines written to a pipe or a
/// file (a container's log, a log shipper) stay plain text, without escape codes, and
/// cost less to format.
fn colours(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber and propagator for a process running `service` (the
/// role name), writing logs in `format`. Spans always carry OpenTelemetry trace ids, so
/// propagation and log correlation work with or without an exporter. Later calls do
/// nothing.
pub fn init(service: &str, format: LogFormat) -> Guard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = PROVIDER.get_or_init(|| tracer_provider(service)).clone();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry().with(otel_layer(&provider));
    let result = if format == LogFormat::Json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(filter),
            )
            .try_init()
    } else {
        let ansi = colours(
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
            std::env::var_os("NO_COLOR"),
        );
        registry
            .with(
                fmt::layer()
                    .with_target(true)
                    .with_ansi(ansi)
                    .with_filter(filter),
            )
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
    Guard(())
}

/// Installs a subscriber for tests that writes through the test harness's capture, with
/// the same propagation as production. With `otlp_endpoint`, spans are exported there
/// within a fraction of a second (call it inside the runtime that outlives the tests: the
/// exporter's channel lives on it).
pub fn init_for_tests(otlp_endpoint: Option<&str>) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = PROVIDER
        .get_or_init(|| match otlp_endpoint {
            Some(endpoint) => test_provider(endpoint),
            None => tracer_provider("test"),
        })
        .clone();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(otel_layer(&provider))
        .with(fmt::layer().with_test_writer().with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::colours;

    #[test]
    fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(
            colours(true, Some("".into())),
            "an empty NO_COLOR counts as unset"
        );
        assert!(!colours(true, Some("1".into())));
        // A pipe or a file: a container's log, `smooch all > log`.
        assert!(!colours(false, None));
        assert!(!colours(false, Some("1".into())));
    }
}
