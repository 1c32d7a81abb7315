//! `--metrics ADDR`: the counters in the Prometheus text format, over a
//! minimal HTTP/1.0 responder on a thread of its own (as Felix serves its
//! own on port 9091). Every GET gets the metrics; nothing else is served.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::Shared;

/// Starts serving on `addr`.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    tracing::info!(%addr, "serving metrics");
    std::thread::Builder::new()
        .name("podwire-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = serve(conn, &shared) {
                    tracing::debug!("metrics request failed: {e}");
                }
            }
        })?;
    Ok(())
}

fn serve(mut conn: TcpStream, shared: &Shared) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = [0u8; 1024];
    let n = conn.read(&mut req)?;
    let (status, body) = if req[..n].starts_with(b"GET ") {
        ("200 OK", shared.totals().prometheus())
    } else {
        ("405 Method Not Allowed", String::from("only GET\n"))
    };
    write!(
        conn,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
