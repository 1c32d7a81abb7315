//! The etcd v3 client podwire uses (`etcd-client`: etcd's own gRPC API,
//! with HTTP/2 keep-alives, so that a partition is noticed in seconds, not
//! at the next write): one member at a time, reads paginated at one
//! revision, and watches of the prefixes a node needs.

use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions, WatchOptions,
    WatchStream,
};

use crate::layout::{IPAM, RESOURCES};
use crate::settings::Settings;

/// What a node reads: every v3 resource (most are dropped by
/// their key) and the IPAM blocks; not the handles and affinities, which
/// grow with the pods of the whole cluster and are IPAM's business.
pub fn prefixes() -> [String; 2] {
    [RESOURCES.to_string(), format!("{IPAM}assignment/")]
}

/// What a node watches: one range, `[from, to)`, from the IPAM blocks to
/// the end of the v3 resources, so that one watcher gives each transaction
/// in one response. (Two watchers, one per prefix, give a transaction that
/// touches both, a pod's block and its endpoint, as two responses, which a
/// loaded machine can deliver far enough apart to be applied as two
/// changes.) The range also holds the IPAM handles and affinities, whose
/// events are dropped by their key: a handle changes with an allocation,
/// as its block does, and is a small fraction of the block's size.
pub fn watched() -> (String, Vec<u8>) {
    (format!("{IPAM}assignment/"), prefix_end(RESOURCES))
}

/// Keys per page of a read: a large cluster never arrives as one response.
/// A page whose response exceeds [`MAX_MESSAGE`] (500 large IPAM blocks
/// can) is asked for again in halves.
pub const PAGE: i64 = 500;

/// Keys per page of a keys-only read. Larger than [`PAGE`]: etcd 3.4
/// counts every key from a page's start to the range's end to answer each
/// page, so the number of pages, not their size, is what a read of 550,000
/// endpoint keys costs (`podwire bench --scale`, 5,000 nodes: the first
/// snapshot took 87 s reading the endpoints' keys in 1,100 pages of 500,
/// 13 s in 55 pages of 10,000).
pub const PAGE_KEYS: i64 = 10_000;

/// The largest gRPC message the client decodes (tonic's default is 4 MiB:
/// 500 `/25` blocks with their allocations' attributes are 11 MiB).
pub const MAX_MESSAGE: usize = 64 << 20;

/// How long a connection or a request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A client error, worded for a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Etcd(String),
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the watch from revision {from} was compacted (oldest revision now {compacted})")]
    Compacted { from: i64, compacted: i64 },
    #[error("the watch was cancelled: {0}")]
    Cancelled(String),
    #[error("the watch ended")]
    Ended,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("a response was too large: {0}")]
    TooLarge(String),
    /// The datastore answered, and the request cannot be met (an address
    /// asked for that is taken, or in no pool).
    #[error("{0}")]
    Refused(String),
}

impl From<etcd_client::Error> for Error {
    fn from(e: etcd_client::Error) -> Error {
        match e {
            // tonic's "decoded message length too large".
            etcd_client::Error::GRpcStatus(s) if format!("{:?}", s.code()) == "OutOfRange" => {
                Error::TooLarge(s.message().to_string())
            }
            etcd_client::Error::GRpcStatus(s) => {
                Error::Etcd(format!("{:?}: {}", s.code(), s.message()))
            }
            other => Error::Etcd(other.to_string()),
        }
    }
}

/// Runs `f` with a deadline.
pub async fn deadline<T>(
    d: Duration,
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(d, f)
        .await
        .unwrap_or(Err(Error::Timeout(d)))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The connection options `settings` ask for.
pub fn options(settings: &Settings) -> Result<ConnectOptions, Error> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(TIMEOUT)
        // HTTP/2 pings as a backstop: no more often than etcd's
        // `--grpc-keepalive-min-time` (5 s) allows, or it closes the
        // connection ("too many pings"). The watch's own progress requests
        // notice a partition sooner (`source.rs`).
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true)
        // A member cut off from its cluster's leader cancels the watch
        // instead of serving it stale.
        .with_require_leader(true);
    if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
        o = o.with_user(u.clone(), p.clone());
    }
    if let Some(ca) = &settings.ca_cert_file {
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let (Some(c), Some(k)) = (&settings.cert_file, &settings.key_file) {
            tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

/// A client of one member, `endpoint`.
pub async fn connect(settings: &Settings, endpoint: &str) -> Result<Client, Error> {
    let o = options(settings)?;
    deadline(TIMEOUT, async {
        Ok(Client::connect([endpoint], Some(o)).await?)
    })
    .await
}

/// A client of the first member that answers.
pub async fn connect_first(settings: &Settings) -> Result<Client, Error> {
    let mut last = Error::Etcd("no endpoints".into());
    for endpoint in &settings.endpoints {
        let attempt = async {
            let mut c = connect(settings, endpoint).await?;
            deadline(TIMEOUT, async { Ok(c.status().await?) }).await?;
            Ok::<_, Error>(c)
        };
        match attempt.await {
            Ok(c) => return Ok(c),
            Err(e) => last = Error::Etcd(format!("{endpoint}: {e}")),
        }
    }
    Err(last)
}

/// The key just past every key that begins with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A range of keys to read: `[from, to)`, with values or keys only.
struct Span {
    from: Vec<u8>,
    to: Vec<u8>,
    keys_only: bool,
}

impl Span {
    fn prefix(p: &str) -> Span {
        Span {
            from: p.as_bytes().to_vec(),
            to: prefix_end(p),
            keys_only: false,
        }
    }
}

/// Reads `spans` page by page, all at one revision (that of the first
/// page, or `at` when given), calling `each` with every key and its value
/// (empty for keys only); returns the revision. Keys that are not UTF-8
/// are not Calico's and are skipped.
async fn read_spans(
    client: &mut Client,
    spans: &[Span],
    at: Option<i64>,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<i64, Error> {
    let mut revision = at.unwrap_or(0);
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    for span in spans {
        let mut page = if span.keys_only { PAGE_KEYS } else { PAGE };
        let mut from = span.from.clone();
        loop {
            let mut opts = GetOptions::new()
                .with_range(span.to.clone())
                .with_limit(page);
            if span.keys_only {
                opts = opts.with_keys_only();
            }
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let key = from.clone();
            let got = deadline(TIMEOUT, async { Ok(kv.get(key, Some(opts)).await?) }).await;
            let mut r = match got {
                Err(Error::TooLarge(_)) if page > 1 => {
                    page = (page / 2).max(1);
                    continue;
                }
                other => other?,
            };
            if revision == 0 {
                revision = r.header().map_or(0, |h| h.revision());
            }
            let more = r.more();
            let kvs = r.take_kvs();
            for kv in &kvs {
                if let Ok(k) = std::str::from_utf8(kv.key()) {
                    each(k, kv.value());
                }
            }
            match kvs.last() {
                Some(last) if more => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
    }
    Ok(revision)
}

/// Reads every key under `prefixes`, page by page, all at one revision
/// (that of the first page, or `at` when given), calling `each` with every
/// key and value; returns the revision.
pub async fn list(
    client: &mut Client,
    prefixes: &[String],
    at: Option<i64>,
    each: impl FnMut(&str, &[u8]),
) -> Result<i64, Error> {
    let spans: Vec<Span> = prefixes.iter().map(|p| Span::prefix(p)).collect();
    read_spans(client, &spans, at, each).await
}

/// Reads what a node needs, at one revision: the v3 resources and the
/// IPAM blocks with their values, but the WorkloadEndpoints — most of the
/// datastore, and nearly all other nodes' — keys only; the values of the
/// keys `wanted` keeps are then read one by one at the same revision. So
/// the read grows with the cluster's keys, not with its endpoints' values.
/// Calls `each` with the keys `wanted` keeps and their values; returns the
/// revision.
pub async fn read_node(
    client: &mut Client,
    wanted: impl Fn(&str) -> bool,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<i64, Error> {
    let endpoints = format!("{RESOURCES}workloadendpoints/");
    let spans = [
        Span {
            from: RESOURCES.as_bytes().to_vec(),
            to: endpoints.as_bytes().to_vec(),
            keys_only: false,
        },
        Span {
            from: prefix_end(&endpoints),
            to: prefix_end(RESOURCES),
            keys_only: false,
        },
        Span::prefix(&format!("{IPAM}assignment/")),
    ];
    let revision = read_spans(client, &spans, None, |k, v| {
        if wanted(k) {
            each(k, v);
        }
    })
    .await?;
    let mine = [Span {
        keys_only: true,
        ..Span::prefix(&endpoints)
    }];
    let mut keys = Vec::new();
    read_spans(client, &mine, Some(revision), |k, _| {
        if wanted(k) {
            keys.push(k.to_string());
        }
    })
    .await?;
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    for key in keys {
        let opts = GetOptions::new().with_revision(revision);
        let r = deadline(TIMEOUT, async {
            Ok(kv.get(key.clone(), Some(opts)).await?)
        })
        .await?;
        if let Some(v) = r.kvs().first() {
            each(&key, v.value());
        }
    }
    Ok(revision)
}

/// Watches the keys `[key, end)` from revision `from`, with previous
/// values and progress notifications, as one watcher.
pub async fn watch(
    client: &mut Client,
    (key, end): (String, Vec<u8>),
    from: i64,
) -> Result<WatchStream, Error> {
    let opts = WatchOptions::new()
        .with_range(end)
        .with_prev_key()
        .with_progress_notify()
        .with_start_revision(from);
    let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    deadline(TIMEOUT, async { Ok(watcher.watch(key, Some(opts)).await?) }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_holds_every_key_a_node_follows_and_no_felix_or_bgp_key() {
        let (from, to) = watched();
        let inside = |k: &str| k.as_bytes() >= from.as_bytes() && k.as_bytes() < &to[..];
        for k in [
            "/calico/ipam/v2/assignment/ipv4/block/10.2.37.0-26",
            "/calico/resources/v3/projectcalico.org/ippools/default-pool",
            "/calico/resources/v3/projectcalico.org/nodes/k8s-node1",
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/k8s--node1-k8s-pod-eth0",
        ] {
            assert!(inside(k), "{k} is not watched");
        }
        for k in [
            "/calico/felix/v2/default/host/k8s-node1/status",
            "/calico/bgp/v1/host/k8s-node1/ip_addr_v4",
            "/calico/resources/v3/projectcalico.org0",
            "/calico/ipam/v2/assignment",
        ] {
            assert!(!inside(k), "{k} is watched");
        }
        // Every key of both prefixes a node reads is in the one range.
        for p in prefixes() {
            assert!(inside(&p) && inside(&format!("{p}\u{7f}")), "{p}");
        }
    }

    #[test]
    fn a_prefix_ends_where_its_last_byte_steps() {
        assert_eq!(
            prefix_end("/calico/ipam/v2/assignment/"),
            b"/calico/ipam/v2/assignment0"
        );
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80");
        assert_eq!(prefix_end(""), vec![0]);
    }
}
