//! Replays the committed corpus (`corpus/<target>/seed-*`) and the saved
//! regressions (`regressions/<target>-*`) through the fuzz targets' checks,
//! on any toolchain and without libFuzzer:
//!
//! ```text
//! cd fuzz && cargo test
//! ```

use std::fs;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use podwire_fuzz::targets::{self, FragInput};

fn run(target: &str, data: &[u8]) {
    match target {
        "ingress" => targets::ingress(data),
        "egress" => targets::egress(data),
        "config" => targets::config(data),
        "control" => targets::control(data),
        "etcd" => targets::etcd(data),
        "frag" => {
            // As libfuzzer-sys feeds a structured target.
            if let Ok(input) = FragInput::arbitrary_take_rest(Unstructured::new(data)) {
                targets::frag(input);
            }
        }
        other => panic!("no target {other}"),
    }
}

fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            keep(&name).then(|| (name, fs::read(e.path()).expect("readable")))
        })
        .collect();
    v.sort();
    v
}

fn replay_corpus(target: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let seeds = files(&dir, |n| n.starts_with("seed-"));
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for (name, data) in seeds {
        eprintln!("{target}: {name}");
        run(target, &data);
    }
}

#[test]
fn ingress_seeds() {
    replay_corpus("ingress");
}

#[test]
fn egress_seeds() {
    replay_corpus("egress");
}

#[test]
fn config_seeds() {
    replay_corpus("config");
}

#[test]
fn etcd_seeds() {
    replay_corpus("etcd");
}

#[test]
fn control_seeds() {
    replay_corpus("control");
}

#[test]
fn frag_seeds() {
    replay_corpus("frag");
}

#[test]
fn regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut failed = Vec::new();
    let mut count = 0;
    for target in ["ingress", "egress", "config", "frag", "control", "etcd"] {
        for (name, data) in files(&dir, |n| n.starts_with(&format!("{target}-"))) {
            eprintln!("regression {name}");
            count += 1;
            if std::panic::catch_unwind(|| run(target, &data)).is_err() {
                failed.push(name);
            }
        }
    }
    assert!(count > 0, "no regressions in {}", dir.display());
    assert!(failed.is_empty(), "regressions failing: {failed:?}");
}
