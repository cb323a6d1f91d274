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

/// The layer that turns spans into OpenTelemetry spans. It sees what [`Gate`] lets through:
/// every span at `info` and above, whatever `RUST_LOG` says of logs, so trace ids and
/// propagation do not depend on the log level.
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
}

/// The subscriber's one filter, in front of both layers: spans at `info` and above always
/// (OpenTelemetry needs them whatever the log level), and whatever `RUST_LOG` (`logs`)
/// enables, spans and events.
///
/// One global filter instead of one per layer: a per-layer filter costs a lookup of the
/// span in the registry on every callback of every layer, and spans are entered and left
/// on every poll of an instrumented future. Per message that was about a tenth of the
/// instructions `smooch all` executes. So both layers see the same things: the log layer
/// also keeps the fields of `info` spans under `RUST_LOG=warn` (for the lines it writes),
/// and OpenTelemetry gets the events `RUST_LOG` enables (at the default, `info`, the same
/// events as with a filter of its own).
struct Gate {
    logs: EnvFilter,
}

impl Gate {
    fn always(metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_span() && *metadata.level() <= tracing::Level::INFO
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Gate {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // The filter records its callsites with span-field directives here: always asked.
        let logs = tracing_subscriber::Layer::<S>::register_callsite(&self.logs, metadata);
        if Self::always(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            logs
        }
    }

    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        Self::always(metadata) || tracing_subscriber::Layer::<S>::enabled(&self.logs, metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        tracing_subscriber::Layer::<S>::max_level_hint(&self.logs)
            .map(|logs| logs.max(LevelFilter::INFO))
    }

    // The rest keeps the scopes of `RUST_LOG`'s span-field directives (`[span{field=x}]`).
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.logs.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.logs.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_exit(id, ctx);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_close(id, ctx);
    }
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

/// The fields of human-readable log lines: `name=value` pairs (an event's message first,
/// bare), without terminal styling, and without the `otel.*` fields, which only name and
/// classify the span for OpenTelemetry (its name and kind; the `http.*` and `rpc.*` fields
/// beside them say the same). Written for every span the log layer sees, when it opens,
/// so it is kept to plain writes.
#[derive(Debug, Clone, Copy, Default)]
struct PlainFields;

impl<'writer> fmt::FormatFields<'writer> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'writer mut fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = PlainVisitor {
            writer: current.as_writer(),
            first,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'writer> {
    writer: fmt::format::Writer<'writer>,
    first: bool,
    result: std::fmt::Result,
}

impl PlainVisitor<'_> {
    /// Writes the separator and `name=` of a field, or nothing for an event's message;
    /// `false` when the field is left out (or a write failed before).
    fn start(&mut self, name: &str) -> bool {
        if self.result.is_err() || name.starts_with("otel.") || name.starts_with("log.") {
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        if !std::mem::replace(&mut self.first, false) {
            self.result = self.writer.write_char(' ');
        }
        if name != "message" && self.result.is_ok() {
            self.result = self
                .writer
                .write_str(name)
                .and_then(|()| self.writer.write_char('='));
        }
        self.result.is_ok()
    }
}

impl tracing::field::Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if !self.start(field.name()) {
            return;
        }
        self.result = if field.name() == "message" {
            self.writer.write_str(value)
        } else if value
            .bytes()
            .all(|b| (b.is_ascii_graphic() && b != b'"' && b != b'\\') || b == b' ')
        {
            // What `{:?}` writes for a string with nothing to escape (ids, routes), without
            // its check of every character.
            self.writer
                .write_char('"')
                .and_then(|()| self.writer.write_str(value))
                .and_then(|()| self.writer.write_char('"'))
        } else {
            write!(self.writer, "{value:?}")
        };
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.start(field.name()) {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// Installs the global subscriber and propagator for a process running `service` (the
/// role name), writing logs in `format`. Spans always carry OpenTelemetry trace ids, so
/// propagation and log correlation work with or without an exporter. Later calls do
/// nothing.
pub fn init(service: &str, format: LogFormat) -> Guard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = PROVIDER.get_or_init(|| tracer_provider(service)).clone();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let registry = tracing_subscriber::registry()
        .with(Gate { logs })
        .with(otel_layer(&provider));
    let result = if format == LogFormat::Json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    } else {
        let ansi = colours(
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
            std::env::var_os("NO_COLOR"),
        );
        // Coloured lines keep the default field format, whose names are styled.
        let layer = if ansi {
            fmt::layer().with_target(true).with_ansi(true).boxed()
        } else {
            fmt::layer()
                .fmt_fields(PlainFields)
                .with_target(true)
                .with_ansi(false)
                .boxed()
        };
        registry.with(layer).try_init()
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
    let logs = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(Gate { logs })
        .with(otel_layer(&provider))
        .with(fmt::layer().with_test_writer())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::{colours, Gate, PlainFields};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    /// A log destination the test reads back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("the buffer's lock")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_log_lines_leave_out_the_otel_fields_and_styling() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(PlainFields)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "http.server",
                otel.name = "POST /v1/x",
                otel.kind = "server",
                http.route = "/v1/x",
                status = tracing::field::Empty,
            );
            span.record("status", 201);
            let _entered = span.enter();
            tracing::warn!(app_id = %"app1", r#type = 3, "delivery failed");
            tracing::warn!(path = "a \"quoted\" name", "escaped");
        });
        let text = String::from_utf8(buffer.0.lock().expect("the buffer's lock").clone())
            .expect("UTF-8 log lines");
        assert!(
            text.contains(
                r#"http.server{http.route="/v1/x" status=201}: telemetry::tests: delivery failed app_id=app1 type=3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"escaped path="a \"quoted\" name""#),
            "a string with quotes is escaped as `{{:?}}` escapes it: {text}"
        );
        assert!(!text.contains("otel."), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn info_spans_pass_the_gate_whatever_the_log_level() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(Gate {
                logs: tracing_subscriber::EnvFilter::new("warn"),
            })
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(PlainFields)
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            // OpenTelemetry needs `info` spans at any log level: they exist.
            let span = tracing::info_span!("fan_out", event_id = "e1");
            assert!(!span.is_disabled(), "an info span under RUST_LOG=warn");
            assert!(
                tracing::debug_span!("below").is_disabled(),
                "a debug span under RUST_LOG=warn"
            );
            let _entered = span.enter();
            tracing::info!("not logged");
            tracing::warn!("logged");
        });
        let text = String::from_utf8(buffer.0.lock().expect("the buffer's lock").clone())
            .expect("UTF-8 log lines");
        // The warning carries the info span's fields; the info event is not written.
        assert!(
            text.contains(r#"fan_out{event_id="e1"}: telemetry::tests: logged"#),
            "{text}"
        );
        assert!(!text.contains("not logged"), "{text}");
    }

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
