//! The `podwire` command: argument parsing and printing only.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use podwire::config;
use podwire::table;
use podwire_daemon::{self as daemon, control};
use podwire_etcd::settings::{self, Datastore, SettingsError};
use podwire_etcd::{source, transfer};

/// The control socket when `--control` is not given.
const DEFAULT_CONTROL: &str = "/run/podwire/podwire.sock";

/// podwire: a userspace pod-network dataplane for Calico clusters
/// (IP-in-IP, VXLAN and direct routing, without kernel tunnel modules).
#[derive(Parser, Debug)]
#[command(name = "podwire", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the dataplane: create the endpoints' TUN devices, open the
    /// underlay sockets and forward until SIGINT or SIGTERM. SIGHUP reloads
    /// the configuration, as does a change of the file (a bad one is rejected
    /// and the running one kept).
    /// Needs CAP_NET_ADMIN and CAP_NET_RAW. Logs go to stderr; RUST_LOG sets
    /// the level (default info).
    #[command(
        after_help = "Example:\n  podwire run --config cluster.yaml --node k8s-node1 --control /run/podwire/node1.sock"
    )]
    Run {
        #[command(flatten)]
        node: NodeArgs,
        /// Worker threads (each gets a queue of every TUN device).
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        threads: u16,
        /// Pin the workers to these CPUs (comma-separated; worker i on the
        /// i-th, round robin). On a small machine, the CPU the pods' traffic
        /// runs on: a request/response then never waits for another CPU to
        /// wake up (docs/performance.md). Default: not pinned.
        #[arg(long, value_name = "CPU,...", value_delimiter = ',')]
        cpus: Vec<usize>,
        /// The control socket `podwire show` asks.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
        control: PathBuf,
        /// Serve the counters in the Prometheus text format on this address
        /// (for example 127.0.0.1:9091).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Turn off the TUN offloads (IFF_VNET_HDR with checksum and TSO):
        /// every packet then crosses the TUN device on its own. For kernels
        /// known to mangle GSO.
        #[arg(long)]
        no_tun_offload: bool,
        /// Send VXLAN through the raw socket, one packet per datagram with a
        /// software checksum, instead of per-flow UDP sockets with
        /// UDP_SEGMENT and checksum offload.
        #[arg(long)]
        no_udp_segment: bool,
        /// In direct mode, send each TCP super-packet from a pod as one
        /// frame segmented by the kernel, and take coalesced frames whole
        /// (PACKET_VNET_HDR), no more: segment in userspace. Needs the TUN
        /// offloads.
        #[arg(long)]
        no_packet_gso: bool,
        /// In VXLAN, send each TCP super-packet from a pod whole into the
        /// node's kernel through a TAP device (podwire.tx: Linux 6.17's GSO
        /// over UDP tunnels), which cuts it into VXLAN segments as its own
        /// VXLAN device would, instead of segmenting in userspace; in IPIP,
        /// the same through a TUN device (podwire.ipip) whose eBPF program
        /// has the kernel cut it as IPIP (needs CAP_BPF, Linux 6.6). Probed
        /// at start (older kernels fall back by themselves); needs the TUN
        /// offloads and net.ipv4.conf.all.rp_filter 0. Off by default for
        /// now: the segments leave with the inner TCP checksum for the NIC
        /// to complete, and a receiver on the same host behind a veth (a
        /// lab) gets it incomplete unless the underlay's tx checksumming is
        /// off (ethtool -K eth0 tx off). See docs/performance.md.
        #[arg(long)]
        tunnel_gso: bool,
        /// Receive VXLAN and IPIP through packet sockets on the underlay
        /// with PACKET_VNET_HDR (the UDP and raw sockets stay open and take
        /// nothing): a super-frame from this host (another node in a lab, a
        /// tunnel device) goes whole to the pod, and a segment whose inner
        /// checksum was left for a NIC is completed. Every ingress check
        /// still applies. One worker receives it all. Needs the TUN
        /// offloads.
        #[arg(long, alias = "vxlan-packet-rx")]
        packet_rx: bool,
        /// The host path (SPEC §10): a TUN device of this name in the
        /// node's namespace through which the node's kernel reaches pods
        /// and pods reach what is outside every pool (the node itself,
        /// Services, natOutgoing); podwire gives it the node's tunnel
        /// address, a route per pool and its own nftables table (`table ip
        /// podwire`, masquerading natOutgoing pools), and removes them at
        /// stop. Needs `ip` and `nft`. Off when not given.
        #[arg(long, value_name = "NAME", value_parser = interface_name)]
        host_interface: Option<String>,
    },
    /// Validate a configuration, then print the node's compiled tables
    /// (`# routes`, `# neigh`, `# fdb`, as `ip route`, `ip neigh` and
    /// `bridge fdb` print them) and exit. Exit status 1 on a bad configuration.
    #[command(
        after_help = "Example:\n  podwire check --config examples/vxlan.yaml --node k8s-node1"
    )]
    Check {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Build a three-node Calico cluster in network namespaces on this
    /// machine (two pods per node, each node running podwire), and show
    /// each mode working: tables, pings, a TCP transfer beside the kernel's
    /// VXLAN, and a pcap of the underlay per mode. As root. Everything is
    /// removed at the end, on failure and on Ctrl-C.
    #[command(
        after_help = "Examples:\n  sudo podwire lab\n  sudo podwire lab --datastore etcd --mode vxlan\n  sudo podwire lab --mode vxlan --keep   # then explore, and: sudo podwire lab --down"
    )]
    Lab {
        /// Which modes to show.
        #[arg(long, value_parser = ["ipip", "vxlan", "direct", "all"], default_value = "all")]
        mode: String,
        /// Where the pcaps (lab-<mode>.pcap), cluster files and logs go.
        #[arg(long, value_name = "DIR", default_value = "lab-out")]
        out: PathBuf,
        /// Leave the last mode's cluster running, and print how to explore it.
        #[arg(long)]
        keep: bool,
        /// Remove a cluster left running by --keep, and exit.
        #[arg(long, conflicts_with_all = ["keep", "mode"])]
        down: bool,
        /// Seconds of each TCP transfer.
        #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=60))]
        seconds: u32,
        /// Where the nodes read the cluster: a file, or one etcd in the lab
        /// (needs etcd-server and etcd-client), where k8s-node2 joins while
        /// the others run.
        #[arg(long, value_parser = ["file", "etcd"], default_value = "file")]
        datastore: String,
    },
    /// Measure throughput on the lab's topology: the kernel's VXLAN and
    /// routing, and podwire's VXLAN, IPIP and direct modes, with iperf3
    /// (one TCP stream, four, and 64-byte UDP), alternating the paths in
    /// each round; prints the medians with each podwire path's ratio to its
    /// kernel baseline. As root.
    #[command(
        after_help = "Examples:\n  sudo podwire bench\n  sudo podwire bench --rounds 3 --json --plot bench.svg\n  sudo podwire bench --paths kernel-vxlan,podwire-ipip,podwire-ipip-tun --tests tcp1"
    )]
    Bench {
        /// Rounds; each runs every path once.
        #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
        rounds: u16,
        /// Seconds of each iperf3 test.
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=60))]
        seconds: u32,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also draw the medians as a bar chart in this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
        /// Where the daemons' logs and cluster files go.
        #[arg(long, value_name = "DIR", default_value = "bench-out")]
        out: PathBuf,
        /// Worker threads of each podwire daemon (`podwire run --threads`):
        /// more than one shows whether flows stay in order across workers.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        threads: u16,
        /// Only these paths (comma-separated; default: all but the
        /// ablation's, podwire-vxlan-no-offload, -no-segment, -rx and
        /// podwire-ipip-rx). A podwire path's ratio needs its kernel
        /// baseline in the list too.
        #[arg(long, value_name = "PATH,...", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(podwire_lab::bench::all_paths()))]
        paths: Vec<String>,
        /// Only these tests (comma-separated; default: all).
        #[arg(long, value_name = "TEST,...", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(podwire_lab::bench::TESTS))]
        tests: Vec<String>,
        /// Run everything on this CPU: iperf3 and sockperf at both ends and
        /// the podwire workers (`podwire run --cpus`), for every path alike.
        #[arg(long, value_name = "CPU")]
        pin: Option<usize>,
        /// Pod pairs, k8s-node1 to k8s-node2, that the throughput tests
        /// run on at once (one iperf3 each, summed; up to 110, Kubernetes'
        /// pods a node) on the pod-to-pod paths; request/response runs on
        /// the first pair.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=110))]
        pods: u16,
        /// Instead of throughput: one node of a large cluster on a real etcd
        /// (needs etcd-server and etcd-client). Reports the time to the first
        /// snapshot, resident memory, the time to apply one change and the
        /// CPU under other nodes' pod churn, beside the file source's.
        #[arg(long)]
        scale: bool,
        /// --scale: nodes in the cluster, one IPAM block each.
        #[arg(long, value_name = "N", default_value_t = 5000, requires = "scale")]
        nodes: usize,
        /// --scale: pods per node (WorkloadEndpoints in etcd: nodes × this).
        #[arg(long, value_name = "N", default_value_t = 110, value_parser = clap::value_parser!(u16).range(1..=120), requires = "scale")]
        pods_per_node: u16,
        /// --scale: other nodes' endpoint updates per second during the churn.
        #[arg(long, value_name = "N", default_value_t = 1000, requires = "scale")]
        churn_rate: usize,
        /// Instead of throughput: the latency of CNI ADD with podwire-cni
        /// (on a real etcd and a podwire node) beside the kernel-veth
        /// plugin ptp (needs containernetworking-plugins, etcd-server and
        /// etcd-client); median and worst of --adds ADDs each.
        #[arg(long, conflicts_with = "scale")]
        cni: bool,
        /// --cni: ADDs of each plugin.
        #[arg(long, value_name = "N", default_value_t = 100, requires = "cni")]
        adds: usize,
    },
    /// Move resources between a YAML file and Calico's etcdv3 datastore.
    #[command(
        after_help = "Examples:\n  podwire datastore import examples/vxlan.yaml --etcd-endpoints http://127.0.0.1:2379\n  ETCD_ENDPOINTS=http://127.0.0.1:2379 podwire datastore export > cluster.yaml"
    )]
    Datastore {
        #[command(subcommand)]
        action: DatastoreAction,
    },
    /// Ask a running daemon for its tables or counters.
    #[command(
        after_help = "Examples:\n  podwire show routes\n  podwire show stats --json --control /run/podwire/node1.sock"
    )]
    Show {
        /// What to show.
        #[arg(value_parser = control::TOPICS)]
        topic: String,
        /// The daemon's control socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
        control: PathBuf,
        /// Print JSON (shaped as `ip -j` and `bridge -j` print tables).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DatastoreAction {
    /// Write the resources of a YAML file (the --config format) into etcd in
    /// Calico's layout, as `calicoctl apply` would: each v3 resource under its
    /// key, each IPAMBlock with its affinity and handles. The file is
    /// validated first; nothing is written from a bad one. Existing keys
    /// are overwritten (keeping their uid and creation time), keys that
    /// already hold the same value left alone.
    Import {
        /// The YAML file.
        file: PathBuf,
        /// Also delete the pools, nodes, Felix configurations, endpoints and
        /// IPAM keys the file does not name, all in one transaction, so that
        /// the datastore holds exactly the file.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        etcd: DatastoreArgs,
    },
    /// Print the datastore's pools, nodes, Felix configurations, IPAM
    /// blocks and WorkloadEndpoints as YAML that --config reads.
    Export {
        #[command(flatten)]
        etcd: DatastoreArgs,
    },
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// Calico resources: a multi-document YAML file (IPPool, Node, IPAMBlock,
    /// WorkloadEndpoint, FelixConfiguration), as `calicoctl get -o yaml` prints them.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    datastore: DatastoreArgs,
    /// The local node: the `metadata.name` of one of the Node resources.
    #[arg(long, value_name = "NAME")]
    node: String,
    /// The underlay device [default: the interface holding the node's IP in
    /// this network namespace, else eth0].
    #[arg(long, value_name = "DEV")]
    underlay: Option<String>,
    /// The underlay MTU [default: read from the device, else 1500].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(68..))]
    underlay_mtu: Option<u16>,
    /// With the etcdv3 datastore, `run` does calico-node's start-up: it
    /// writes this node's Node resource with this address (`IP/LEN`), or
    /// `autodetect`ed from the underlay device (else the default route's);
    /// [default: the address the Node has, else autodetected]. It also
    /// allocates the node's tunnel addresses from IPAM for its pools'
    /// overlays.
    #[arg(long, value_name = "IP/LEN|autodetect")]
    node_ip: Option<String>,
}

/// Calico's etcdv3 datastore; each flag overrides the environment variable
/// calicoctl reads.
#[derive(clap::Args, Debug, Clone)]
struct DatastoreArgs {
    /// Where the resources come from: `file` (--config) or `etcdv3`
    /// [env: DATASTORE_TYPE; default: file when --config is given].
    #[arg(long, value_name = "TYPE", value_parser = ["file", "etcdv3"])]
    datastore: Option<String>,
    /// etcd's client URLs, tried in turn [env: ETCD_ENDPOINTS].
    #[arg(long, value_name = "URL[,URL...]")]
    etcd_endpoints: Option<String>,
    /// The CA certificate that signed etcd's (PEM) [env: ETCD_CA_CERT_FILE].
    #[arg(long, value_name = "FILE")]
    etcd_ca_cert_file: Option<PathBuf>,
    /// A client certificate (PEM) [env: ETCD_CERT_FILE].
    #[arg(long, value_name = "FILE")]
    etcd_cert_file: Option<PathBuf>,
    /// Its key (PEM) [env: ETCD_KEY_FILE].
    #[arg(long, value_name = "FILE")]
    etcd_key_file: Option<PathBuf>,
    /// etcd user [env: ETCD_USERNAME].
    #[arg(long, value_name = "NAME")]
    etcd_username: Option<String>,
    /// Its password [env: ETCD_PASSWORD].
    #[arg(long, value_name = "PASSWORD")]
    etcd_password: Option<String>,
}

impl DatastoreArgs {
    /// The datastore these flags, `--config` and the environment ask for.
    fn resolve(&self, config_given: bool) -> Result<Datastore, SettingsError> {
        let flags = settings::Flags {
            datastore: self.datastore.clone(),
            config_given,
            endpoints: self.etcd_endpoints.clone(),
            ca_cert_file: self.etcd_ca_cert_file.clone(),
            cert_file: self.etcd_cert_file.clone(),
            key_file: self.etcd_key_file.clone(),
            username: self.etcd_username.clone(),
            password: self.etcd_password.clone(),
        };
        settings::resolve(&flags, |k| std::env::var(k).ok())
    }
}

/// Why `podwire check` failed.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("{0}")]
    Load(#[from] config::LoadError),
    #[error("{0}")]
    Etcd(#[from] podwire_etcd::client::Error),
    #[error("{path}: {source}")]
    Compile {
        path: String,
        source: table::CompileError,
    },
}

/// The resources `args` name, and what to call them in messages.
fn read(args: &NodeArgs) -> Result<(config::Resources, String), CheckError> {
    match args.datastore.resolve(args.config.is_some())? {
        Datastore::File => {
            let path = args.config.clone().unwrap_or_default();
            Ok((config::load(&path)?, path.display().to_string()))
        }
        Datastore::Etcd(s) => {
            let r = source::read_once(&s, &args.node)?;
            for (key, e) in &r.rejected {
                eprintln!("podwire: warning: {key}: left out: {e}");
            }
            for (key, e) in &r.assembled.left_out {
                eprintln!("podwire: warning: {key}: left out: {e}");
            }
            let what = format!("{} (revision {})", r.endpoint, r.revision);
            Ok((r.assembled.resources, what))
        }
    }
}

fn check(args: &NodeArgs) -> Result<String, CheckError> {
    let (resources, what) = read(args)?;
    let node_ip = resources.node(&args.node).and_then(|n| n.ip());
    let underlay = daemon::underlay(args.underlay.as_deref(), args.underlay_mtu, node_ip);
    let tables = table::compile(&resources, &args.node, &underlay)
        .map_err(|source| CheckError::Compile { path: what, source })?;
    Ok(tables.report())
}

/// The source `podwire run` reads.
fn source_for(args: &NodeArgs) -> Result<Box<dyn config::ConfigSource>, String> {
    match args.datastore.resolve(args.config.is_some()) {
        Ok(Datastore::File) => Ok(Box::new(config::FileSource::new(
            args.config.clone().unwrap_or_default(),
        ))),
        Ok(Datastore::Etcd(s)) => {
            node_startup(&s, args)?;
            source::EtcdSource::new(s, args.node.clone())
                .map(|s| Box::new(s) as Box<dyn config::ConfigSource>)
                .map_err(|e| format!("cannot start the etcd client's thread: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// calico-node's start-up on this node (SPEC §11): its Node resource with
/// its address and tunnel addresses.
fn node_startup(s: &settings::Settings, args: &NodeArgs) -> Result<(), String> {
    let found = autodetect(args.underlay.as_deref());
    let address = match args.node_ip.as_deref() {
        None => None,
        Some("autodetect") => Some(found.ok_or(
            "--node-ip autodetect: no global IPv4 address on the underlay device or the default route's",
        )?),
        Some(cidr) => Some(
            cidr.parse()
                .map_err(|e| format!("--node-ip {cidr:?}: {e} (expected IP/LEN or autodetect)"))?,
        ),
    };
    let mac = podwire::table::vtep_mac_for(&args.node).to_string();
    let done = podwire_etcd::startup::start_blocking(s, &args.node, address, found, &mac)
        .map_err(|e| format!("node start-up on {}: {e}", s.describe()))?;
    if done.created {
        tracing::info!(node = %args.node, changes = ?done.changes, "created this node's Node resource");
    } else if !done.changes.is_empty() {
        tracing::info!(node = %args.node, changes = ?done.changes, "updated this node's Node resource");
    }
    Ok(())
}

/// The node's address as calico-node's `IP=autodetect` finds it: the
/// first global IPv4 address (with its prefix length) of `underlay`, else
/// of the default route's device, else of any device.
fn autodetect(underlay: Option<&str>) -> Option<ipnetwork::Ipv4Network> {
    let ip = |args: &[&str]| -> String {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let first = |text: String| -> Option<ipnetwork::Ipv4Network> {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|&x| x == "inet")?;
            w.next()?.parse().ok()
        })
    };
    let default_dev = ip(&["-4", "-o", "route", "show", "default"])
        .split_whitespace()
        .skip_while(|&w| w != "dev")
        .nth(1)
        .map(str::to_string);
    underlay
        .map(str::to_string)
        .into_iter()
        .chain(default_dev)
        .find_map(|d| {
            first(ip(&[
                "-4", "-o", "addr", "show", "dev", &d, "scope", "global",
            ]))
        })
        .or_else(|| first(ip(&["-4", "-o", "addr", "show", "scope", "global"])))
}

/// `podwire datastore import` and `export`.
fn datastore(action: DatastoreAction) -> Result<(), String> {
    let settings = |args: &DatastoreArgs| -> Result<settings::Settings, String> {
        let mut args = args.clone();
        args.datastore.get_or_insert_with(|| "etcdv3".into());
        match args.resolve(false).map_err(|e| e.to_string())? {
            Datastore::Etcd(s) => Ok(s),
            Datastore::File => Err("import and export move resources to and from etcd".into()),
        }
    };
    match action {
        DatastoreAction::Import {
            file,
            replace,
            etcd,
        } => {
            let s = settings(&etcd)?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let done = transfer::import(&s, &text, replace)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            println!(
                "wrote {} key(s) to {} ({} unchanged, {} deleted)",
                done.written,
                s.describe(),
                done.unchanged,
                done.deleted
            );
            Ok(())
        }
        DatastoreAction::Export { etcd } => {
            let s = settings(&etcd)?;
            let (yaml, bad) = transfer::export(&s).map_err(|e| e.to_string())?;
            for (key, e) in bad {
                eprintln!("podwire datastore: warning: {key}: left out: {e}");
            }
            print!("{yaml}");
            Ok(())
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { node } => {
            init_logging();
            match check(&node) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("podwire: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            node,
            threads,
            cpus,
            control,
            metrics,
            no_tun_offload,
            no_udp_segment,
            no_packet_gso,
            tunnel_gso,
            packet_rx,
            host_interface,
        } => {
            init_logging();
            let source = match source_for(&node) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("podwire: error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = daemon::Options {
                node: node.node,
                underlay: node.underlay,
                underlay_mtu: node.underlay_mtu,
                threads: usize::from(threads),
                cpus,
                control,
                metrics,
                tun_offload: !no_tun_offload,
                udp_segment: !no_udp_segment,
                packet_gso: !no_tun_offload && !no_packet_gso,
                tunnel_gso: !no_tun_offload && tunnel_gso,
                packet_rx: !no_tun_offload && packet_rx,
                host_interface,
            };
            match daemon::run(opts, source) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("podwire: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Lab {
            mode,
            out,
            keep,
            down,
            seconds,
            datastore,
        } => {
            let mut stdout = std::io::stdout();
            let result = if down {
                podwire_lab::down(&mut stdout)
            } else {
                let modes = match mode.as_str() {
                    "ipip" => vec![podwire_lab::Mode::Ipip],
                    "vxlan" => vec![podwire_lab::Mode::Vxlan],
                    "direct" => vec![podwire_lab::Mode::Direct],
                    _ => podwire_lab::Mode::ALL.to_vec(),
                };
                let opts = podwire_lab::Options {
                    modes,
                    out,
                    keep,
                    seconds,
                    datastore: if datastore == "etcd" {
                        podwire_lab::Datastore::Etcd
                    } else {
                        podwire_lab::Datastore::File
                    },
                };
                podwire_lab::run_lab(&opts, &mut stdout)
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("podwire lab: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            rounds,
            seconds,
            json,
            plot,
            out,
            threads,
            paths,
            tests,
            pin,
            pods,
            scale,
            nodes,
            pods_per_node,
            churn_rate,
            cni,
            adds,
        } => {
            if cni {
                let opts = podwire_lab::cni_bench::Options { adds, out, json };
                return match podwire_lab::cni_bench::run(&opts, &mut std::io::stdout()) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("podwire bench --cni: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            if scale {
                let opts = podwire_lab::scale::Options {
                    nodes,
                    pods_per_node: usize::from(pods_per_node),
                    churn_rate,
                    churn_seconds: seconds.max(5),
                    out,
                    json,
                };
                return match podwire_lab::scale::run(&opts, &mut std::io::stdout()) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("podwire bench --scale: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            let opts = podwire_lab::bench::Options {
                rounds: usize::from(rounds),
                seconds,
                json,
                plot,
                out,
                threads: usize::from(threads),
                paths,
                tests,
                pin,
                pods: usize::from(pods),
            };
            match podwire_lab::bench::run(&opts, &mut std::io::stdout(), &mut std::io::stderr()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("podwire bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Datastore { action } => match datastore(action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("podwire datastore: error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Show {
            topic,
            control,
            json,
        } => match control::request(&control, &topic, json) {
            Ok(answer) if answer.starts_with("error: ") => {
                eprint!("podwire: {answer}");
                ExitCode::FAILURE
            }
            Ok(answer) => {
                print!("{answer}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "podwire: error: cannot reach the daemon at {}: {e} (is `podwire run` running with this --control?)",
                    control.display()
                );
                ExitCode::FAILURE
            }
        },
    }
}

/// A Linux interface name: 1 to 15 bytes, no `/`, no whitespace.
fn interface_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 || s.contains('/') || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "{s:?} is not an interface name (1 to 15 bytes, no '/' or spaces)"
        ));
    }
    Ok(s.to_string())
}
