//! The daemon's errors: why it could not start, and why a reload was
//! rejected (the running tables stay). Each names what failed and how.

use std::net::{Ipv4Addr, SocketAddr};

use podwire::config::SourceError;
use podwire::table::CompileError;

/// A failure that stops the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Compile(#[from] CompileError),
    #[error("cannot create TUN device {interface}: {source}")]
    Tun {
        interface: String,
        source: std::io::Error,
    },
    #[error(
        "cannot open the {what} socket: {source} (podwire needs CAP_NET_RAW and CAP_NET_ADMIN)"
    )]
    Socket {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot listen on the control socket {path}: {source}")]
    Control {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A thread, its poll or its netlink socket could not be set up.
    #[error("cannot start the {what}: {source}")]
    Thread {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Host(#[from] crate::host::HostError),
}

impl StartError {
    /// A `Thread` error for `what`.
    pub(crate) fn thread(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
        let what = what.into();
        move |source| StartError::Thread { what, source }
    }
}

/// Why a reload was rejected; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Compile(#[from] CompileError),
    #[error(
        "the node IP or the VXLAN port changed ({old_ip}:{old_port} to {new_ip}:{new_port}); restart podwire to apply it"
    )]
    NeedsRestart {
        old_ip: Ipv4Addr,
        old_port: u16,
        new_ip: Ipv4Addr,
        new_port: u16,
    },
    #[error("cannot create TUN device {interface}: {source}")]
    Tun {
        interface: String,
        source: std::io::Error,
    },
}

/// A TUN device that could not be created, while building a snapshot.
#[derive(Debug)]
pub struct TunError {
    pub interface: String,
    pub source: std::io::Error,
}

impl From<TunError> for StartError {
    fn from(e: TunError) -> StartError {
        StartError::Tun {
            interface: e.interface,
            source: e.source,
        }
    }
}

impl From<TunError> for ReloadError {
    fn from(e: TunError) -> ReloadError {
        ReloadError::Tun {
            interface: e.interface,
            source: e.source,
        }
    }
}
