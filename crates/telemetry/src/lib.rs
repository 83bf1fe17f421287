//! Observability for every role of the binary: structured logs (JSON in production), traces
//! exported over OTLP when a collector is configured, and the Prometheus metrics `/metrics` serves.
//!
//! Nothing here ever records a request body, a header or a token: spans carry ids (request,
//! tenant, connection, delivery, job) and metrics carry bounded labels (route templates, status
//! codes, fixed result names).

pub mod http;
pub mod metrics;
mod trace_context;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use trace_context::{current_traceparent, link_to_traceparent, parent_from_headers};

/// The trace resource's `service.name` when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "gitlab-connector";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("OTLP trace exporter ({endpoint}): {message}")]
    Exporter { endpoint: String, message: String },
    #[error("a global log subscriber is already installed")]
    AlreadyInitialized,
}

/// What [`init`] sets up, read from the environment (an empty value counts as unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// JSON log lines (production) instead of readable ones.
    pub json_logs: bool,
    /// Where spans are sent (OTLP over HTTP/protobuf, the full `/v1/traces` URL); `None`: traces
    /// are not exported at all.
    pub traces_endpoint: Option<String>,
    pub service_name: String,
}

impl Settings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `LOG_FORMAT` (json or text) decides the log format when set, else `APP_ENV=production`
    /// means JSON. The traces endpoint follows the OTLP specification: the signal's own
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else `OTEL_EXPORTER_OTLP_ENDPOINT` with
    /// `/v1/traces` appended.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let json_logs = match var("LOG_FORMAT").as_deref() {
            Some("json") => true,
            Some("text") => false,
            _ => var("APP_ENV").as_deref() == Some("production"),
        };
        let traces_endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| format!("{}/v1/traces", base.trim_end_matches('/'))));
        let service_name = var("OTEL_SERVICE_NAME").unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        Self { json_logs, traces_endpoint, service_name }
    }

    /// The tracer provider exporting to the configured endpoint, or `None` when there is none:
    /// then no exporter, no HTTP client and no background thread exist.
    pub fn tracer_provider(&self) -> Result<Option<SdkTracerProvider>, Error> {
        let Some(endpoint) = &self.traces_endpoint else { return Ok(None) };
        let failed = |message: String| Error::Exporter { endpoint: endpoint.clone(), message };
        // Built on a thread of its own: the exporter's blocking client owns a runtime, which
        // may be neither created nor dropped inside the caller's async context.
        let exporter = std::thread::scope(|scope| {
            scope.spawn(|| opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(endpoint.as_str()).build()).join()
        })
        .map_err(|_| failed("building the exporter panicked".into()))?
        .map_err(|e| failed(e.to_string()))?;
        let resource = Resource::builder().with_service_name(self.service_name.clone()).build();
        Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build()))
    }
}

/// Installs the process's log subscriber (filter from `RUST_LOG`, else `default_filter`; lines
/// on stderr) and, when an OTLP endpoint is configured, the span exporter and the W3C
/// trace-context propagation. Call once, first thing, so that configuration warnings are logged.
///
/// Spans still buffered when the process exits are lost (the batch exporter sends every 5 s,
/// `OTEL_BSP_SCHEDULE_DELAY`) unless [`shutdown`] runs first.
pub fn init(default_filter: &str) -> Result<(), Error> {
    let settings = Settings::from_env();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if settings.json_logs { fmt.json().boxed() } else { fmt.boxed() };
    let provider = settings.tracer_provider()?;
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("gitlab-connector")));
    tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init().map_err(|_| Error::AlreadyInitialized)?;
    if let Some(provider) = provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        // Kept for `shutdown`, and for `global::tracer_provider` users.
        opentelemetry::global::set_tracer_provider(provider.clone());
        let _ = PROVIDER.set(provider);
        if let Some(endpoint) = &settings.traces_endpoint {
            tracing::info!(endpoint = %endpoint, service = %settings.service_name, "exporting traces over OTLP");
        }
    }
    Ok(())
}

static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

/// Sends the spans still buffered and stops the exporter; a no-op when traces are not exported.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "flushing traces at shutdown failed");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn without_an_endpoint_nothing_is_exported() {
        for vars in [&[][..], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")][..], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")][..]] {
            let settings = settings(vars);
            assert_eq!(settings.traces_endpoint, None, "{vars:?}");
            assert!(settings.tracer_provider().unwrap().is_none(), "{vars:?}: no exporter is built");
        }
        // `shutdown` without an exporter does nothing (and does not fail).
        shutdown();
    }

    #[test]
    fn the_endpoint_follows_the_otlp_specification() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(s.traces_endpoint.as_deref(), Some("http://collector:4318/v1/traces"));
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b/traces")]);
        assert_eq!(s.traces_endpoint.as_deref(), Some("http://b/traces"));
        assert_eq!(s.service_name, DEFAULT_SERVICE_NAME);
        assert_eq!(settings(&[("OTEL_SERVICE_NAME", "gc-worker")]).service_name, "gc-worker");
    }

    #[test]
    fn log_format_follows_log_format_then_app_env() {
        assert!(!settings(&[]).json_logs);
        assert!(settings(&[("APP_ENV", "production")]).json_logs);
        assert!(!settings(&[("APP_ENV", "production"), ("LOG_FORMAT", "text")]).json_logs);
        assert!(settings(&[("LOG_FORMAT", "json")]).json_logs);
    }

    /// With an endpoint, a finished span reaches it as an OTLP/HTTP protobuf POST to /v1/traces
    /// (a one-shot HTTP server on loopback stands in for the collector).
    #[test]
    fn spans_are_posted_to_the_collector() {
        let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", collector.local_addr().unwrap());
        let received = std::thread::spawn(move || {
            let (stream, _) = collector.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = Vec::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
            (head, body)
        });
        let provider = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &base)]).tracer_provider().unwrap().expect("an exporter");
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("job", kind = "validate").in_scope(|| {});
        });
        provider.force_flush().unwrap();
        let (head, body) = received.join().unwrap();
        assert!(head[0].starts_with("POST /v1/traces "), "{head:?}");
        assert!(head.iter().any(|h| h.to_ascii_lowercase().starts_with("content-type: application/x-protobuf")), "{head:?}");
        assert!(body.windows(3).any(|w| w == b"job"), "the span's name is in the export");
        assert!(body.windows(DEFAULT_SERVICE_NAME.len()).any(|w| w == DEFAULT_SERVICE_NAME.as_bytes()));
        provider.shutdown().unwrap();
    }
}
