//! The `podwire` command: argument parsing and printing only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use podwire::config;
use podwire::io::netdev;
use podwire::table::{self, Underlay};

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
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// Calico resources: a multi-document YAML file (IPPool, Node, IPAMBlock,
    /// WorkloadEndpoint, FelixConfiguration), as `calicoctl get -o yaml` prints them.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The local node: the `metadata.name` of one of the file's Node resources.
    #[arg(long, value_name = "NAME")]
    node: String,
    /// The underlay device [default: the interface holding the node's IP in
    /// this network namespace, else eth0].
    #[arg(long, value_name = "DEV")]
    underlay: Option<String>,
    /// The underlay MTU [default: read from the device, else 1500].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u16).range(68..))]
    underlay_mtu: Option<u16>,
}

/// Finds the underlay device and its MTU, warning on stderr where it guesses.
fn underlay(args: &NodeArgs, node_ip: Option<std::net::Ipv4Addr>) -> Underlay {
    let name = match &args.underlay {
        Some(name) => name.clone(),
        None => node_ip
            .and_then(|ip| netdev::interface_with_addr(ip).ok().flatten())
            .unwrap_or_else(|| "eth0".to_string()),
    };
    let mtu = match args.underlay_mtu {
        Some(mtu) => mtu,
        None => match netdev::mtu(&name) {
            Ok(mtu) => mtu,
            Err(e) => {
                eprintln!(
                    "podwire: warning: cannot read the MTU of {name} ({e}); assuming 1500 (set --underlay-mtu)"
                );
                1500
            }
        },
    };
    Underlay { name, mtu }
}

fn check(args: &NodeArgs) -> Result<String, String> {
    let resources = config::load(&args.config).map_err(|e| e.to_string())?;
    let node_ip = resources.node(&args.node).and_then(|n| n.ip());
    let underlay = underlay(args, node_ip);
    let tables = table::compile(&resources, &args.node, &underlay)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    Ok(tables.report())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { node } => match check(&node) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("podwire: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
