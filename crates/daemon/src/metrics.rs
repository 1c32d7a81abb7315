//! `--metrics ADDR`: the counters in the OpenMetrics text format
//! (prometheus-client's encoder; Prometheus reads it), over
//! HTTP/1.0 (as Felix serves its own on port 9091), many clients at once
//! on threads of their own (`listen`: an idle or slow scraper delays no
//! other). Every GET gets the metrics; nothing else is served.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Shared, listen};

/// How many scrapers at once, and how long each has.
const LIMITS: listen::Limits = listen::Limits {
    max_clients: 64,
    max_request: 4096,
    deadline: Duration::from_secs(5),
    answerers: 1,
};

struct Metrics {
    shared: Arc<Shared>,
}

/// OpenMetrics' media type (what prometheus-client encodes; Prometheus
/// reads it).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl listen::Service for Metrics {
    fn complete(&self, buf: &[u8]) -> bool {
        buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
    }

    fn answer(&self, request: &[u8]) -> Vec<u8> {
        if request.starts_with(b"GET ") {
            response("200 OK", OPENMETRICS, &self.shared.totals().prometheus())
        } else {
            response("405 Method Not Allowed", "text/plain", "only GET\n")
        }
    }

    fn busy(&self) -> Vec<u8> {
        response(
            "503 Service Unavailable",
            "text/plain",
            "too many scrapers\n",
        )
    }
}

/// Starts serving on `addr`.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<listen::Running> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tracing::info!(%addr, "serving metrics");
    listen::start(
        "podwire-metrics",
        listen::Listener::Tcp(mio::net::TcpListener::from_std(listener)),
        Arc::new(Metrics { shared }),
        LIMITS,
    )
}
