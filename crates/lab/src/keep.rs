//! `podwire lab --keep` and `--down`: a cluster left running, recorded in a
//! state file, and removed later.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::netns::{Error, Harness, err, run};

/// Where a kept lab records what to remove.
pub const STATE_FILE: &str = "/run/podwire-lab/state.json";

/// What a kept lab left behind.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    dir: PathBuf,
}

/// Leaves `w` running: records it for `--down` and prints how to explore it.
pub(crate) fn keep(mut w: Harness, exe: &str, say: &mut dyn FnMut(String)) -> Result<(), Error> {
    let (namespaces, procs) = w.detach();
    // The daemons keep running, and on etcd the member (the capture has
    // stopped); `--down` stops them.
    let state = State {
        namespaces,
        pids: procs
            .iter()
            .filter(|(t, _)| t.starts_with("podwire-") || t.starts_with("etcd-"))
            .map(|(_, pid)| *pid)
            .collect(),
        dir: w.dir.clone(),
    };
    std::fs::create_dir_all(Path::new(STATE_FILE).parent().unwrap_or(Path::new("/")))
        .map_err(|e| err(e.to_string()))?;
    let json = serde_json::to_string_pretty(&state).map_err(|e| err(e.to_string()))?;
    std::fs::write(STATE_FILE, json).map_err(|e| err(e.to_string()))?;
    let p = w.prefix().trim_end_matches('-');
    let control = w
        .dir
        .join(format!("{}-k8s-node1.sock", mode_of(p)))
        .display()
        .to_string();
    say(String::new());
    say("The last cluster is still up. Explore it with, for example:".into());
    say(format!("  ip netns exec {p}-p1a ping 10.2.169.138"));
    say(format!("  ip netns exec {p}-p1a ip route"));
    say(format!("  {exe} show routes --control {control}"));
    say(format!("  {exe} show stats --control {control}"));
    say(format!("  ip netns list | grep {p}"));
    say(format!("and remove it with: {exe} lab --down"));
    Ok(())
}

fn mode_of(prefix: &str) -> &'static str {
    match prefix.chars().last() {
        Some('i') => "ipip",
        Some('v') => "vxlan",
        _ => "direct",
    }
}

/// `podwire lab --down`: removes a lab kept with `--keep`.
pub fn down(out: &mut dyn std::io::Write) -> Result<(), Error> {
    let text = match std::fs::read_to_string(STATE_FILE) {
        Ok(t) => t,
        Err(_) => {
            let _ = writeln!(out, "no lab is up ({STATE_FILE} does not exist)");
            return Ok(());
        }
    };
    let state: State =
        serde_json::from_str(&text).map_err(|e| err(format!("{STATE_FILE}: {e}")))?;
    for pid in &state.pids {
        // Only our own processes: a PID may have been reused since (the
        // lab's etcd has a `podwire-` cluster token and its data in the
        // lab's directory).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("podwire") {
            let _ = run("kill", &["-TERM", &pid.to_string()]);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for ns in state.namespaces.iter().rev() {
        let _ = run("ip", &["netns", "del", ns]);
    }
    let _ = std::fs::remove_file(STATE_FILE);
    let _ = writeln!(
        out,
        "removed {} namespaces and {} processes (their logs and pcaps stay in {})",
        state.namespaces.len(),
        state.pids.len(),
        state.dir.display()
    );
    Ok(())
}
