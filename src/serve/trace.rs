//! Optional OpenTelemetry export (OTLP over HTTP/protobuf) of what the
//! gateway does: a server span per request (method, route, status, client;
//! a W3C `traceparent` the client sent is its parent, so a client's trace
//! goes on through the gateway) and, under it, a client span per model
//! attempt (`gen_ai.*`: the model, the tokens; the provider, the cost and
//! the outcome as `llmclis.*`; an error's kind and message).
//!
//! On with `[serve] otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! (headers from `OTEL_EXPORTER_OTLP_HEADERS`). Spans leave in batches from
//! the SDK's own thread, never on a request's path; a collector that is
//! down costs dropped spans and a line in the log, not requests. Built
//! with the `otlp` feature; a build without it refuses a config that asks.

use axum::response::Response;

use crate::app::types::ServeConfig;
use crate::app::types::{Attempt, ModelCall};
use crate::error::Result;

/// Which client a response answered (`x-llmclis-client`, set by
/// `chat::headers`), or `-`: for the access log and the request's span.
pub(crate) fn client_of(r: &Response) -> &str {
    r.headers()
        .get("x-llmclis-client")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// Whether the environment asks for export on its own (the standard
/// variables), when the config does not.
fn env_endpoint() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// The traces URL for a collector's base URL: `/v1/traces` added unless it
/// is there (the OTLP/HTTP rule for `OTEL_EXPORTER_OTLP_ENDPOINT`).
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

#[cfg(feature = "otlp")]
mod on {
    use std::time::{Duration, SystemTime};

    use axum::http::HeaderMap;
    use opentelemetry::trace::{
        Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
        TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

    use crate::app::types::{Attempt, ModelCall};
    use crate::error::{Error, Result};

    pub(crate) struct Exporter {
        provider: SdkTracerProvider,
        tracer: SdkTracer,
    }

    /// A request's span, ended when its response's body is done.
    pub(crate) type Open = Span;

    /// The request span attempts hang under.
    pub(crate) type Parent = Option<SpanContext>;

    struct Headers<'a>(&'a HeaderMap);

    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    impl Exporter {
        pub fn start(endpoint: Option<String>) -> Result<Exporter> {
            // The exporter's own HTTP client is rustls: the process's
            // crypto provider first.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            if let Some(url) = &endpoint {
                builder = builder.with_endpoint(url.clone());
            }
            let exporter = builder.build().map_err(|e| {
                Error::InvalidInput(format!(
                    "OTLP export to {}: {e}; fix [serve] otlp_endpoint in config.toml (a collector's base URL, like http://localhost:4318)",
                    endpoint.as_deref().unwrap_or("OTEL_EXPORTER_OTLP_ENDPOINT")
                ))
            })?;
            let mut resource = opentelemetry_sdk::Resource::builder();
            if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                resource = resource.with_service_name("llmclis");
            }
            let resource = resource
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("llmclis");
            Ok(Exporter { provider, tracer })
        }

        pub fn request(&self, headers: &HeaderMap, method: &str, route: &str) -> Open {
            use opentelemetry::propagation::TextMapPropagator as _;
            let parent = TraceContextPropagator::new().extract(&Headers(headers));
            self.tracer
                .span_builder(format!("{method} {route}"))
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("http.request.method", method.to_string()),
                    KeyValue::new("http.route", route.to_string()),
                ])
                .start_with_context(&self.tracer, &parent)
        }

        pub fn parent(open: &Open) -> Parent {
            Some(open.span_context().clone())
        }

        pub fn answered(open: &mut Open, status: u16, client: &str) {
            open.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            open.set_attribute(KeyValue::new("llmclis.client", client.to_string()));
            if status >= 500 {
                open.set_status(Status::error(format!("HTTP {status}")));
            }
        }

        pub fn attempt(&self, parent: &Parent, a: &Attempt, c: &ModelCall) {
            let Some(parent) = parent else { return };
            let cx = Context::new().with_remote_span_context(parent.clone());
            let mut attributes = vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", c.model.clone()),
                KeyValue::new("llmclis.provider", c.provider.clone()),
                KeyValue::new("llmclis.role", c.role.clone()),
                KeyValue::new("llmclis.outcome", c.outcome.clone()),
            ];
            if c.outcome == "ok" {
                attributes.push(KeyValue::new("gen_ai.response.model", c.model.clone()));
            }
            let tokens = [
                ("gen_ai.usage.input_tokens", c.prompt_tokens),
                ("gen_ai.usage.output_tokens", c.completion_tokens),
                ("llmclis.usage.cached_input_tokens", c.cached_tokens),
                ("llmclis.usage.cache_write_tokens", c.cache_write_tokens),
            ];
            for (key, n) in tokens {
                if let Some(n) = n {
                    attributes.push(KeyValue::new(key, n as i64));
                }
            }
            if c.cost_usd > 0.0 {
                attributes.push(KeyValue::new("llmclis.cost_usd", c.cost_usd));
            }
            let mut span = self
                .tracer
                .span_builder(format!("chat {}", c.model))
                .with_kind(SpanKind::Client)
                .with_start_time(a.started_at)
                .with_attributes(attributes)
                .start_with_context(&self.tracer, &cx);
            if c.outcome == "error" {
                if let Some(kind) = a.error_kind {
                    span.set_attribute(KeyValue::new("error.type", kind));
                }
                span.set_status(Status::error(c.error.clone().unwrap_or_default()));
            }
            span.end_with_timestamp(a.started_at + Duration::from_millis(a.latency_ms));
        }

        /// Sends what is queued; waits for the collector (its timeout).
        pub fn shutdown(&self) {
            if let Err(e) = self.provider.shutdown() {
                tracing::warn!(error = %e, "OTLP export: the last spans may be lost");
            }
        }

        pub fn end(open: &mut Open) {
            open.end_with_timestamp(SystemTime::now());
        }
    }
}

/// The gateway's exporter, or none.
#[derive(Default)]
pub(crate) struct Tracing {
    #[cfg(feature = "otlp")]
    exporter: Option<on::Exporter>,
}

/// Where a request's model attempts hang: its span, when export is on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parent(#[cfg(feature = "otlp")] on::Parent);

impl Tracing {
    /// Export as `[serve]` or the environment asks; none otherwise.
    pub fn start(config: &ServeConfig) -> Result<Tracing> {
        let endpoint = config
            .otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if endpoint.is_none() && !env_endpoint() {
            return Ok(Tracing::default());
        }
        #[cfg(feature = "otlp")]
        {
            let exporter = on::Exporter::start(endpoint.map(traces_url))?;
            Ok(Tracing {
                exporter: Some(exporter),
            })
        }
        #[cfg(not(feature = "otlp"))]
        {
            Err(crate::error::Error::InvalidInput(format!(
                "OTLP export is asked for ({}) but this llmclis was built without it; remove it, or install with the default features (`cargo install llmclis`)",
                endpoint.map_or("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), |e| format!(
                    "[serve] otlp_endpoint = {e:?}"
                ))
            )))
        }
    }

    /// A request's span, begun now; `finish` ends it with the response.
    /// Probes (`/health`, `/metrics`) get none: a scraper every few seconds
    /// would bury the requests.
    pub fn request(&self, headers: &axum::http::HeaderMap, method: &str, route: &str) -> Request {
        #[cfg(feature = "otlp")]
        {
            let probe = matches!(route, "/health" | "/metrics");
            Request(
                self.exporter
                    .as_ref()
                    .filter(|_| !probe)
                    .map(|x| x.request(headers, method, route)),
            )
        }
        #[cfg(not(feature = "otlp"))]
        {
            let _ = (headers, method, route);
            Request()
        }
    }

    /// A model attempt's span, under the request's, from the attempt and
    /// its call record.
    pub fn attempt(&self, parent: &Parent, a: &Attempt, call: &ModelCall) {
        #[cfg(feature = "otlp")]
        if let Some(x) = &self.exporter {
            x.attempt(&parent.0, a, call);
        }
        #[cfg(not(feature = "otlp"))]
        let _ = (parent, a, call);
    }

    /// Sends the spans still queued (at the gateway's stop).
    pub fn shutdown(&self) {
        #[cfg(feature = "otlp")]
        if let Some(x) = &self.exporter {
            x.shutdown();
        }
    }
}

impl Parent {
    /// The request span as a W3C `traceparent`, for the upstream request.
    pub fn traceparent(&self) -> Option<String> {
        #[cfg(feature = "otlp")]
        {
            self.0.as_ref().map(|sc| {
                format!(
                    "00-{}-{}-{:02x}",
                    sc.trace_id(),
                    sc.span_id(),
                    sc.trace_flags().to_u8()
                )
            })
        }
        #[cfg(not(feature = "otlp"))]
        None
    }
}

/// A request's open span (nothing when export is off).
pub(crate) struct Request(#[cfg(feature = "otlp")] Option<on::Open>);

impl Request {
    pub fn parent(&self) -> Parent {
        #[cfg(feature = "otlp")]
        {
            Parent(self.0.as_ref().and_then(on::Exporter::parent))
        }
        #[cfg(not(feature = "otlp"))]
        Parent()
    }

    /// Ends the span when the response's body is done (a stream's last
    /// event sent, or the client gone), with its status and client.
    pub fn finish(self, response: Response) -> Response {
        #[cfg(feature = "otlp")]
        {
            let Some(mut open) = self.0 else {
                return response;
            };
            let client = client_of(&response);
            on::Exporter::answered(&mut open, response.status().as_u16(), client);
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, axum::body::Body::new(body::Traced::new(body, open)))
        }
        #[cfg(not(feature = "otlp"))]
        response
    }
}

#[cfg(feature = "otlp")]
mod body {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::body::{Body, Bytes};
    use http_body::{Frame, SizeHint};

    use super::on;

    /// A response body that ends its request's span when dropped; its
    /// size, and so its framing, are the inner body's.
    pub(super) struct Traced {
        inner: Body,
        span: Option<on::Open>,
    }

    impl Traced {
        pub fn new(inner: Body, span: on::Open) -> Traced {
            Traced {
                inner,
                span: Some(span),
            }
        }
    }

    impl Drop for Traced {
        fn drop(&mut self) {
            if let Some(mut s) = self.span.take() {
                on::Exporter::end(&mut s);
            }
        }
    }

    impl http_body::Body for Traced {
        type Data = Bytes;
        type Error = axum::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
            Pin::new(&mut self.inner).poll_frame(cx)
        }

        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path_once() {
        assert_eq!(
            traces_url("http://localhost:4318"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("https://c/otlp/v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }

    #[test]
    fn no_endpoint_means_no_export() {
        if env_endpoint() {
            return; // the environment asks for it
        }
        let t = Tracing::start(&ServeConfig::default()).unwrap();
        let r = t.request(
            &axum::http::HeaderMap::new(),
            "POST",
            "/v1/chat/completions",
        );
        #[cfg(feature = "otlp")]
        assert!(r.0.is_none() && t.exporter.is_none());
        let _ = r;
    }
}
