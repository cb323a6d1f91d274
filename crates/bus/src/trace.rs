//! W3C trace context in AMQP message headers (`traceparent`, `tracestate`), so that a
//! consumer continues the trace of whoever published the message.

use std::collections::HashMap;

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

/// The headers that carry a trace context.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The trace context a message carries (empty when it carries none), as the string map
/// `telemetry::propagation::set_parent_from_map` reads.
pub fn context_of(properties: &BasicProperties) -> HashMap<String, String> {
    let mut context = HashMap::new();
    let Some(headers) = properties.headers() else {
        return context;
    };
    for name in TRACE_HEADERS {
        let value = match headers.inner().get(name) {
            Some(AMQPValue::LongString(v)) => std::str::from_utf8(v.as_bytes()).ok(),
            Some(AMQPValue::ShortString(v)) => Some(v.as_str()),
            _ => None,
        };
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            context.insert(name.to_owned(), value.to_owned());
        }
    }
    context
}

/// `properties` with the trace context of `context` (from
/// `telemetry::propagation::current_context_map`) added to its headers.
pub fn with_context(
    properties: BasicProperties,
    context: &HashMap<String, String>,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    insert_context(&mut headers, |name| context.get(name).map(String::as_str));
    properties.with_headers(headers)
}

/// Adds the trace headers `get` knows of to `headers`.
pub(crate) fn insert_context<'a>(headers: &mut FieldTable, get: impl Fn(&str) -> Option<&'a str>) {
    for name in TRACE_HEADERS {
        if let Some(value) = get(name).filter(|v| !v.is_empty()) {
            headers.insert(name.into(), AMQPValue::LongString(value.into()));
        }
    }
}

/// `span`, made a continuation of the trace `delivery` carries in its headers (the request
/// that wrote the event, through the relay and any earlier step), so that a message's
/// whole life is one trace.
pub fn continued(span: tracing::Span, delivery: &lapin::message::Delivery) -> tracing::Span {
    telemetry::propagation::set_parent_from_map(&span, &context_of(&delivery.properties));
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_survives_the_headers_round_trip() {
        let context = HashMap::from([
            (
                "traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            ),
            ("tracestate".to_owned(), "congo=t61rcWkgMzE".to_owned()),
        ]);
        let mut existing = FieldTable::default();
        existing.insert("smooch-app-id".into(), AMQPValue::LongString("a".into()));
        let properties = with_context(BasicProperties::default().with_headers(existing), &context);
        assert_eq!(context_of(&properties), context);
        let headers = properties.headers().clone().unwrap_or_default();
        assert!(headers.contains_key("smooch-app-id"));
        assert!(context_of(&BasicProperties::default()).is_empty());
    }
}
