//! Reloads: the daemon takes [`Resources`](podwire::config::Resources)
//! snapshots from its [`ConfigSource`], compiles each into tables, builds a
//! new snapshot (reusing the devices of endpoints that stay) and swaps it in
//! atomically; workers pick it up at their next batch. A source that cannot
//! give a valid snapshot, or tables that do not compile, are rejected with a
//! log line, and the running snapshot is kept.
//!
//! A watcher thread asks the source once a second (a file source only reads
//! the file when its stamp changed), at once on SIGHUP, and at once when the
//! source says it has a change (a datastore watch); the source gives each
//! change once, so a write followed by SIGHUP is one reload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;

use super::error::ReloadError;
use super::{Options, Shared, compile_for, snapshot};
use podwire::config::ConfigSource;

/// The running daemon, as the watcher, the signal loop and the control
/// socket see it.
pub struct Daemon {
    pub(crate) opts: Options,
    pub(crate) shared: Arc<Shared>,
    pub(crate) wakers: Vec<Arc<Waker>>,
    /// One reload at a time, each asking the source.
    pub(crate) source: Mutex<Box<dyn ConfigSource>>,
    /// Set by SIGHUP: the watcher asks the source even if nothing changed.
    pub(crate) hup: AtomicBool,
}

impl Daemon {
    /// Asks the source for a new snapshot (`force`: even if nothing
    /// suggests a change) and applies it, or keeps the running one. Returns
    /// whether a new configuration was applied.
    pub fn reload(&self, force: bool) -> Result<bool, ReloadError> {
        let result = self.try_reload(force);
        match &result {
            Ok(true) => {
                self.shared.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {
                if force {
                    tracing::info!("the configuration has not changed");
                }
            }
            Err(e) => {
                self.shared.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!("reload rejected, keeping the running configuration: {e}");
            }
        }
        result
    }

    fn try_reload(&self, force: bool) -> Result<bool, ReloadError> {
        let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
        let Some(resources) = source.poll(force)? else {
            return Ok(false);
        };
        let tables = compile_for(&self.opts, &resources)?;
        let guard = self.shared.swap.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.shared.snapshot.load_full();
        // The underlay's neighbours are the kernel's, not the configuration's.
        let tables = tables.with_next_hops(old.tables.next_hops().clone());
        let (a, b) = (old.tables.local(), tables.local());
        if a.ip != b.ip || old.tables.vxlan().port != tables.vxlan().port {
            return Err(ReloadError::NeedsRestart {
                old_ip: a.ip,
                old_port: old.tables.vxlan().port,
                new_ip: b.ip,
                new_port: tables.vxlan().port,
            });
        }
        // Devices a CNI ADD made are taken by their endpoint's snapshot.
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let snap = snapshot(
            tables,
            old.generation + 1,
            self.wakers.len(),
            self.opts.tun_offload,
            Some(&old),
            &mut pending,
        )?;
        drop(pending);
        let (routes, endpoints) = (snap.tables.routes().len(), snap.endpoints.len());
        let generation = snap.generation;
        self.shared.snapshot.store(Arc::new(snap));
        // Forwarding goes on with what the kernel has; the next reload
        // tries again.
        let applied = &self.shared.snapshot.load().tables;
        if let Some(h) = &self.shared.host {
            if let Err(e) = h.apply(applied) {
                tracing::error!("{e}");
            }
        }
        if let Err(e) = self.shared.blackholes.apply(applied) {
            tracing::error!("{e}");
        }
        drop(guard);
        self.wake();
        if let Some(t) = self.shared.state_thread.get() {
            t.unpark();
        }
        // A removed endpoint's device goes when its last reference does,
        // and closing a TUN queue takes tens of milliseconds (the kernel
        // detaches the queue and unregisters the device under RTNL): let
        // that be this thread, not a worker, whose other endpoints' queues
        // would go unread meanwhile. The workers let go of the old snapshot
        // when they move to the new one.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self
            .shared
            .worker_generations
            .iter()
            .any(|g| g.load(Ordering::Acquire) < generation)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(old);
        tracing::info!(routes, endpoints, "configuration reloaded");
        Ok(true)
    }

    pub(crate) fn wake(&self) {
        for w in &self.wakers {
            let _ = w.wake();
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Starts the watcher: it asks the source once a second, and at once when
/// unparked after SIGHUP set `hup`; it ends when the daemon stops (unpark
/// it then).
pub(crate) fn start_watcher(daemon: Arc<Daemon>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("podwire-config".into())
        .spawn(move || {
            let me = std::thread::current();
            daemon
                .source
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_notify(Arc::new(move || me.unpark()));
            while !daemon.shared.stop.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_secs(1));
                if daemon.shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let force = daemon.hup.swap(false, Ordering::Relaxed);
                let _ = daemon.reload(force);
            }
        })
}
