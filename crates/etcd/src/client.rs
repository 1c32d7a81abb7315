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

/// What a node reads and watches: every v3 resource (most are dropped by
/// their key) and the IPAM blocks; not the handles and affinities, which
/// grow with the pods of the whole cluster and are IPAM's business.
pub fn prefixes() -> [String; 2] {
    [RESOURCES.to_string(), format!("{IPAM}assignment/")]
}

/// Keys per page of a read: a large cluster never arrives as one response.
pub const PAGE: i64 = 500;

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
}

impl From<etcd_client::Error> for Error {
    fn from(e: etcd_client::Error) -> Error {
        Error::Etcd(match e {
            etcd_client::Error::GRpcStatus(s) => {
                format!("{:?}: {}", s.code(), s.message())
            }
            other => other.to_string(),
        })
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
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
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

/// Reads every key under `prefixes`, page by page, all at one revision
/// (that of the first page, or `at` when given), calling `each` with every
/// key and value; returns the revision. Keys that are not UTF-8 are not
/// Calico's and are skipped.
pub async fn list(
    client: &mut Client,
    prefixes: &[String],
    at: Option<i64>,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<i64, Error> {
    let mut revision = at.unwrap_or(0);
    for prefix in prefixes {
        let end = prefix_end(prefix);
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let key = from.clone();
            let mut r = deadline(TIMEOUT, async { Ok(client.get(key, Some(opts)).await?) }).await?;
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

/// Watches `prefixes` on one stream from revision `from`, with previous
/// values; the watches' IDs are those of their creation responses.
pub async fn watch(
    client: &mut Client,
    prefixes: &[String],
    from: i64,
) -> Result<WatchStream, Error> {
    let opts = |p: &str| {
        WatchOptions::new()
            .with_range(prefix_end(p))
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(from)
    };
    let Some((first, rest)) = prefixes.split_first() else {
        return Err(Error::Etcd("nothing to watch".into()));
    };
    let mut stream = deadline(TIMEOUT, async {
        Ok(client.watch(first.clone(), Some(opts(first))).await?)
    })
    .await?;
    for p in rest {
        stream.watch(p.clone(), Some(opts(p))).await?;
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

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
