//! A test OTLP receiver: a tonic trace collector on a free port that keeps every span it
//! receives, so tests can assert what the suite exported.

use std::sync::{Mutex, OnceLock};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;

/// A span as received.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// 32 hex characters.
    pub trace_id: String,
    /// 16 hex characters.
    pub span_id: String,
    /// 16 hex characters, empty for a root span.
    pub parent_span_id: String,
    /// The span's name (its `otel.name` when set).
    pub name: String,
    /// String attributes.
    pub attributes: Vec<(String, String)>,
}

static SPANS: OnceLock<Mutex<Vec<ReceivedSpan>>> = OnceLock::new();

fn spans() -> &'static Mutex<Vec<ReceivedSpan>> {
    SPANS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Every span received so far.
pub fn received() -> Vec<ReceivedSpan> {
    spans().lock().map(|s| s.clone()).unwrap_or_default()
}

/// The spans of one trace.
pub fn trace(trace_id: &str) -> Vec<ReceivedSpan> {
    received()
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect()
}

struct Collector;

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            AnyValue::StringValue(s) => Some((kv.key.clone(), s.clone())),
                            AnyValue::IntValue(i) => Some((kv.key.clone(), i.to_string())),
                            _ => None,
                        })
                        .collect();
                    received.push(ReceivedSpan {
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        name: span.name,
                        attributes,
                    });
                }
            }
        }
        if let Ok(mut spans) = spans().lock() {
            spans.extend(received);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts the receiver on the current runtime; returns its endpoint URL.
pub async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the OTLP receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}
