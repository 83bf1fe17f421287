//! W3C trace context across boundaries the tracing spans do not cross by themselves: an incoming
//! HTTP request's `traceparent` header, and a queued job that runs later, maybe in another pod.

use std::collections::HashMap;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The current span's trace context as a W3C `traceparent` value, to store with work that runs
/// later; `None` when traces are not exported (the span then has no trace id).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Links `span` to the span a stored `traceparent` names: a job starts a trace of its own (it
/// may run long after, and be retried), which points at the request or delivery that caused it.
/// A missing or malformed value links nothing.
pub fn link_to_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else { return };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// Makes `span` a child of the caller's trace when the request carries a valid `traceparent`
/// (the Coworker frontend's own trace); otherwise the span starts a trace.
pub fn parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    let context = TraceContextPropagator::new().extract(&Headers(headers));
    if context.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is no trace to join.
        let _ = span.set_parent(context);
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn with_tracing<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn no_traceparent_without_tracing() {
        tracing::info_span!("request").in_scope(|| assert_eq!(current_traceparent(), None));
    }

    #[test]
    fn traceparent_names_the_current_span_and_a_header_continues_it() {
        with_tracing(|| {
            let outer = tracing::info_span!("request");
            let traceparent = outer.in_scope(current_traceparent).expect("a traceparent");
            let context = outer.context();
            let ids = context.span().span_context().clone();
            assert_eq!(traceparent, format!("00-{}-{}-01", ids.trace_id(), ids.span_id()));

            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, traceparent.parse().unwrap());
            let child = tracing::info_span!(parent: None, "http");
            parent_from_headers(&child, &headers);
            assert_eq!(child.context().span().span_context().trace_id(), ids.trace_id(), "the request joins the caller's trace");

            let malformed = tracing::info_span!(parent: None, "http");
            headers.insert(TRACEPARENT, "00-garbage".parse().unwrap());
            parent_from_headers(&malformed, &headers);
            assert_ne!(malformed.context().span().span_context().trace_id(), ids.trace_id());
        });
    }
}
