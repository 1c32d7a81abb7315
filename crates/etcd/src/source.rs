//! The etcdv3 [`ConfigSource`] (SPEC §9): one consistent read of what the
//! node needs, then a watch from the next revision with previous values;
//! changes are coalesced and handed to the daemon, which compiles them and
//! swaps its tables as on a reload.
//!
//! The client and its async runtime (tokio, current-thread) live on their
//! own thread, `podwire-etcd`; the daemon's threads never wait for etcd. A
//! watch that fails, is cancelled or starts at a compacted revision is
//! followed by a new read whose differences are applied (a relist); a
//! connection that fails is retried on the next endpoint, with a backoff
//! from 100 ms to 5 s. Meanwhile the daemon keeps forwarding with its last
//! tables.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use etcd_client::{Client, EventType};
use podwire::config::{ConfigSource, Notify, Resources, SourceError, SourceStatus};
use tokio::time::Instant;

use crate::client::{self, Error};
use crate::decode;
use crate::settings::Settings;
use crate::store::{Applied, Assembled, Store};

/// After a change, how long to wait for the next before handing them over…
/// (a pod's CNI ADD waits for its endpoint to be served: this is most of
/// that wait: at 50 ms, 100 ADDs took 72.5 ms each (median), at 15, 42.1.)
const QUIET: Duration = Duration::from_millis(15);
/// …and at most, after the first (SPEC §9: applied within a second).
const MOST: Duration = Duration::from_millis(250);
/// How often the watch asks for progress, and how long a member may stay
/// silent before the session is given up.
const PROBE: Duration = Duration::from_secs(2);
const SILENT: Duration = Duration::from_secs(5);
/// The backoff between connection attempts.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MOST: Duration = Duration::from_secs(5);

/// What the source's thread and the daemon share.
struct Inner {
    status: Arc<SourceStatus>,
    /// The latest snapshot not yet taken by a poll.
    slot: Mutex<Option<Resources>>,
    ready: Condvar,
    notify: Mutex<Option<Notify>>,
    stop: AtomicBool,
    /// Read everything again (SIGHUP).
    relist: AtomicBool,
    wake: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn publish(&self, r: Resources) {
        *lock(&self.slot) = Some(r);
        self.ready.notify_all();
        if let Some(n) = lock(&self.notify).as_ref() {
            n();
        }
    }
}

/// Calico's etcdv3 datastore, watched.
pub struct EtcdSource {
    settings: Settings,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    started: bool,
}

impl EtcdSource {
    /// A source of node `node`'s resources; it connects on the first poll.
    pub fn new(settings: Settings, node: impl Into<String>) -> std::io::Result<EtcdSource> {
        let inner = Arc::new(Inner {
            status: Arc::new(SourceStatus::new("etcdv3")),
            slot: Mutex::new(None),
            ready: Condvar::new(),
            notify: Mutex::new(None),
            stop: AtomicBool::new(false),
            relist: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        let node = node.into();
        let (s, i) = (settings.clone(), Arc::clone(&inner));
        let thread = std::thread::Builder::new()
            .name("podwire-etcd".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("etcd: cannot start the client's runtime: {e}");
                        i.status.error(format!("no runtime: {e}"), true);
                        return;
                    }
                };
                rt.block_on(follow(&i, &s, &node));
            })?;
        Ok(EtcdSource {
            settings,
            inner,
            thread: Some(thread),
            started: false,
        })
    }
}

impl Drop for EtcdSource {
    fn drop(&mut self) {
        self.inner.stop.store(true, Relaxed);
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ConfigSource for EtcdSource {
    fn describe(&self) -> String {
        self.settings.describe()
    }

    fn poll(&mut self, force: bool) -> Result<Option<Resources>, SourceError> {
        let mut slot = lock(&self.inner.slot);
        if !self.started {
            // The daemon starts on the datastore's first snapshot: wait for
            // it, however long etcd takes to be reachable (each failure is
            // logged by the source's thread).
            self.started = true;
            while slot.is_none() {
                if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                    let why = self.inner.status.state().last_error;
                    return Err(SourceError::Datastore(format!(
                        "{}: {}",
                        self.describe(),
                        why.unwrap_or_else(|| "the client stopped".into())
                    )));
                }
                slot = self
                    .inner
                    .ready
                    .wait_timeout(slot, Duration::from_millis(200))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        } else if force {
            self.inner.relist.store(true, Relaxed);
            self.inner.wake.notify_one();
        }
        Ok(slot.take())
    }

    fn set_notify(&mut self, notify: Notify) {
        *lock(&self.inner.notify) = Some(notify);
    }

    fn status(&self) -> Option<Arc<SourceStatus>> {
        Some(Arc::clone(&self.inner.status))
    }
}

/// How a session with one member ended.
enum End {
    Stopped,
    /// It failed; `synced` says whether it got as far as a snapshot.
    Failed {
        error: Error,
        synced: bool,
    },
}

/// What the thread keeps across sessions.
struct State {
    store: Store,
    /// Whether a snapshot was ever handed over.
    published: bool,
    /// Keys left out of the last snapshot (logged and counted once each).
    left_out: BTreeSet<String>,
    /// Keys whose value did not decode (logged and counted once each).
    rejected: BTreeSet<String>,
}

impl State {
    /// Logs and counts a value left out, unless it was already.
    fn reject(&mut self, status: &SourceStatus, key: &str, why: &dyn std::fmt::Display) {
        if self.rejected.insert(key.to_string()) {
            tracing::warn!("etcd: {key}: left out: {why}");
            status.values_rejected.fetch_add(1, Relaxed);
        }
    }
}

async fn follow(inner: &Inner, settings: &Settings, node: &str) {
    let mut state = State {
        store: Store::new(node),
        published: false,
        left_out: BTreeSet::new(),
        rejected: BTreeSet::new(),
    };
    let mut backoff = BACKOFF_FIRST;
    let mut turn = 0usize;
    while !inner.stop.load(Relaxed) {
        let endpoint = &settings.endpoints[turn % settings.endpoints.len()];
        turn += 1;
        *lock(&inner.status.endpoint) = endpoint.clone();
        match session(inner, settings, endpoint, &mut state).await {
            End::Stopped => return,
            End::Failed { error, synced } => {
                inner.status.error(format!("{endpoint}: {error}"), true);
                tracing::warn!(
                    "etcd {endpoint}: {error}; forwarding goes on with the last tables, retrying in {backoff:?}"
                );
                if synced {
                    backoff = BACKOFF_FIRST;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = inner.wake.notified() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MOST);
    }
}

/// Connects to `endpoint`, reads, and follows the watch until it fails.
async fn session(inner: &Inner, settings: &Settings, endpoint: &str, state: &mut State) -> End {
    let status = &inner.status;
    // The client connects lazily: a member that cannot be reached fails
    // the first read, which counts as a failed connection.
    let mut c = match client::connect(settings, endpoint).await {
        Ok(c) => c,
        Err(error) => {
            status.connect_failures.fetch_add(1, Relaxed);
            return End::Failed {
                error,
                synced: false,
            };
        }
    };
    let mut synced = false;
    loop {
        if inner.stop.load(Relaxed) {
            return End::Stopped;
        }
        let revision = match relist(inner, &mut c, state).await {
            Ok(r) => r,
            Err(error) => {
                if !synced {
                    status.connect_failures.fetch_add(1, Relaxed);
                }
                return End::Failed { error, synced };
            }
        };
        synced = true;
        match watch(inner, &mut c, state, revision).await {
            Ok(true) => return End::Stopped,
            // Compacted or asked for: read again on this connection.
            Ok(false) => continue,
            Err(error) => return End::Failed { error, synced },
        }
    }
}

/// A whole read, applied as differences; returns its revision.
async fn relist(inner: &Inner, c: &mut Client, state: &mut State) -> Result<i64, Error> {
    let status = &inner.status;
    let node = state.store.node().to_string();
    // Each value is parsed as it arrives and only its resources kept.
    let mut fresh = Store::new(node.clone());
    let mut rejected = Vec::new();
    let mut read = 0usize;
    let revision = client::read_node(
        c,
        |k| decode::wanted(k, &node),
        |k, v| {
            read += 1;
            if let Applied::Rejected(e) = fresh.put(k, v) {
                rejected.push((k.to_string(), e));
            }
        },
    )
    .await?;
    let changed = state.store.replace_with(fresh);
    let before = std::mem::take(&mut state.rejected);
    for (key, e) in &rejected {
        if before.contains(key) {
            state.rejected.insert(key.clone());
        } else {
            state.reject(status, key, e);
        }
    }
    status.connected.store(true, Relaxed);
    if state.published {
        status.relists.fetch_add(1, Relaxed);
    }
    status.revision.store(revision, Relaxed);
    tracing::info!(
        "etcd: read {read} key(s) at revision {revision}: {} held, {changed} changed",
        state.store.len()
    );
    if !state.published || changed > 0 {
        publish(inner, state);
    }
    status.in_sync.store(true, Relaxed);
    Ok(revision)
}

/// Hands the held values over as a snapshot.
fn publish(inner: &Inner, state: &mut State) {
    let Assembled {
        resources,
        left_out,
    } = state.store.resources();
    let now: BTreeSet<String> = left_out.iter().map(|(k, _)| k.clone()).collect();
    for (key, e) in &left_out {
        if !state.left_out.contains(key) {
            tracing::warn!("etcd: {key}: left out: {e}");
            inner.status.values_rejected.fetch_add(1, Relaxed);
        }
    }
    state.left_out = now;
    state.published = true;
    inner.publish(resources);
}

/// Follows a watch from `revision + 1`. `Ok(true)`: stopped; `Ok(false)`:
/// read everything again (compacted, or asked for).
async fn watch(
    inner: &Inner,
    c: &mut Client,
    state: &mut State,
    revision: i64,
) -> Result<bool, Error> {
    let status = &inner.status;
    let mut stream = client::watch(c, client::watched(), revision + 1).await?;
    // The first and last unpublished change.
    let mut pending: Option<(Instant, Instant)> = None;
    // Liveness: a progress request every PROBE; a member that answers
    // nothing (no event, no progress) for SILENT is gone — a partition is
    // noticed in seconds, whatever the TCP connection believes.
    let mut probe = tokio::time::interval(PROBE);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    // What the unpublished changes touched, for the log line of the publish.
    let mut touched = Touched::default();
    loop {
        let due = pending.map(|(first, last)| (last + QUIET).min(first + MOST));
        tokio::select! {
            _ = probe.tick() => {
                if heard.elapsed() > SILENT {
                    return Err(Error::Timeout(SILENT));
                }
                stream.request_progress().await?;
            }
            m = stream.message() => {
                let Some(r) = m? else { return Err(Error::Ended) };
                heard = Instant::now();
                if r.canceled() {
                    if r.compact_revision() > 0 {
                        tracing::warn!("etcd: watch from {} compacted (now {}): reading everything again", revision + 1, r.compact_revision());
                        return Ok(false);
                    }
                    return Err(Error::Cancelled(r.cancel_reason().to_string()));
                }
                if let Some(h) = r.header() {
                    status.revision.fetch_max(h.revision(), Relaxed);
                }
                let mut changed = false;
                let revision = r.header().map_or(0, |h| h.revision());
                for ev in r.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
                    status.events.fetch_add(1, Relaxed);
                    status.revision.fetch_max(kv.mod_revision(), Relaxed);
                    match ev.event_type() {
                        EventType::Put => {
                            let held = state.store.holds(key);
                            match state.store.put(key, kv.value()) {
                                Applied::Changed => {
                                    state.rejected.remove(key);
                                    touched.add(key, revision);
                                    changed = true;
                                }
                                Applied::Unchanged | Applied::Ignored => {}
                                Applied::Rejected(e) => {
                                    state.reject(status, key, &e);
                                    // What the key held before is gone.
                                    changed |= held;
                                }
                            }
                        }
                        EventType::Delete => {
                            state.rejected.remove(key);
                            if state.store.delete(key) {
                                touched.add(key, revision);
                                changed = true;
                            }
                        }
                    }
                }
                if changed {
                    let now = Instant::now();
                    pending = Some((pending.map_or(now, |(first, _)| first), now));
                }
            }
            _ = sleep_until(due), if due.is_some() => {
                pending = None;
                tracing::info!("etcd: {}", std::mem::take(&mut touched));
                publish(inner, state);
            }
            _ = inner.wake.notified() => {
                if inner.stop.load(Relaxed) {
                    return Ok(true);
                }
                if inner.relist.swap(false, Relaxed) {
                    return Ok(false);
                }
            }
        }
    }
}

/// The keys a batch of watched changes touched: how many, the first few,
/// and the revisions they came in (one revision is one transaction).
#[derive(Default)]
struct Touched {
    count: usize,
    first: Vec<String>,
    revisions: BTreeSet<i64>,
}

impl Touched {
    const NAMED: usize = 3;

    fn add(&mut self, key: &str, revision: i64) {
        self.count += 1;
        if self.first.len() < Self::NAMED {
            self.first.push(key.to_string());
        }
        if self.revisions.len() < 64 {
            self.revisions.insert(revision);
        }
    }
}

impl std::fmt::Display for Touched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} key(s) changed", self.count)?;
        if !self.revisions.is_empty() {
            let r: Vec<String> = self.revisions.iter().map(|r| r.to_string()).collect();
            write!(f, " at revision(s) {}", r.join(","))?;
        }
        write!(f, ", applying: {}", self.first.join(" "))?;
        if self.count > self.first.len() {
            write!(f, " and {} more", self.count - self.first.len())?;
        }
        Ok(())
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(d) = due {
        tokio::time::sleep_until(d).await;
    }
}

/// One read of the datastore, for `podwire check`: the snapshot node
/// `node` would start on, with the values left out of it, and the revision.
pub struct Read {
    pub assembled: Assembled,
    pub rejected: Vec<(String, decode::DecodeError)>,
    pub revision: i64,
    pub endpoint: String,
}

/// Reads the datastore once, trying each endpoint in turn.
pub fn read_once(settings: &Settings, node: &str) -> Result<Read, Error> {
    block_on(async {
        let mut last = Error::Etcd("no endpoints".into());
        for endpoint in &settings.endpoints {
            let attempt = async {
                let mut c = client::connect(settings, endpoint).await?;
                let mut store = Store::new(node);
                let mut kvs: Vec<(String, Vec<u8>)> = Vec::new();
                let revision = client::read_node(
                    &mut c,
                    |k| decode::wanted(k, node),
                    |k, v| kvs.push((k.to_string(), v.to_vec())),
                )
                .await?;
                let (_, rejected) =
                    store.replace(kvs.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
                Ok::<_, Error>(Read {
                    assembled: store.resources(),
                    rejected,
                    revision,
                    endpoint: endpoint.clone(),
                })
            };
            match attempt.await {
                Ok(r) => return Ok(r),
                Err(e) => last = Error::Etcd(format!("{endpoint}: {e}")),
            }
        }
        Err(last)
    })?
}

/// Runs `f` on a runtime of its own (the command line's one-shot calls).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Etcd(format!("cannot start the client's runtime: {e}")))?;
    Ok(rt.block_on(f))
}
