//! From etcd's keys and values to the documents podwire's configuration
//! parser reads (SPEC §9). A v3 resource's value is already such a
//! document (JSON of `kind`, `apiVersion`, `metadata`, `spec`); an IPAM
//! block's is libcalico-go's `model.AllocationBlock` (`cidr`, `affinity`,
//! `allocations`, `unallocated`, `attributes`, `deleted`, …), which becomes
//! the `spec` of an `IPAMBlock`, as Calico's CRD of the same name holds it.
//!
//! Routing needs pools, nodes, Felix configuration, blocks and this node's
//! workloads: other nodes' WorkloadEndpoints are dropped by their key before
//! their value is read (borrowed addresses come from the blocks), affinity
//! and handle keys are IPAM's business (the CNI plugin's), and every other
//! key is ignored.

use podwire::config::{Resources, parse_documents};

use crate::layout::{self, Key};

/// Why a value was left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the value is not UTF-8")]
    NotUtf8,
    #[error("the value is not JSON: {0}")]
    NotJson(String),
    #[error("the value is not a JSON object")]
    NotAnObject,
    #[error("the value is a {found:?}, but the key is for a {expected}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The kind a resource key's plural holds, for the kinds podwire reads.
fn kind_of(plural: &str) -> Option<&'static str> {
    match plural {
        "ippools" => Some("IPPool"),
        "nodes" => Some("Node"),
        "felixconfigurations" => Some("FelixConfiguration"),
        "workloadendpoints" => Some("WorkloadEndpoint"),
        _ => None,
    }
}

/// Whether node `node` needs the value of `key`: the kinds it reads, and
/// of the WorkloadEndpoints only its own (told by the key alone).
pub fn wanted(key: &str, node: &str) -> bool {
    match layout::parse_key(key) {
        Key::Resource { plural, name, .. } => {
            kind_of(plural).is_some()
                && (plural != "workloadendpoints" || layout::endpoint_is_on(name, node))
        }
        Key::Block(_) => true,
        Key::Affinity { .. } | Key::Handle(_) | Key::Other => false,
    }
}

/// The document for `key` and `value` as node `node` needs it, or `None`
/// for a key it does not need.
pub fn document(key: &str, value: &[u8], node: &str) -> Result<Option<String>, DecodeError> {
    Ok(parsed(key, value, node)?.map(|(text, _)| text))
}

/// The resources `key` and `value` hold for node `node` (one, or none for
/// a key it does not need), parsed on their own.
pub fn resources(key: &str, value: &[u8], node: &str) -> Result<Option<Resources>, DecodeError> {
    Ok(parsed(key, value, node)?.map(|(_, r)| r))
}

fn parsed(key: &str, value: &[u8], node: &str) -> Result<Option<(String, Resources)>, DecodeError> {
    if !wanted(key, node) {
        return Ok(None);
    }
    let doc = match layout::parse_key(key) {
        Key::Resource { plural, .. } => {
            let Some(expected) = kind_of(plural) else {
                return Ok(None);
            };
            let v = json(value)?;
            let found = v.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
            if found != expected {
                return Err(DecodeError::WrongKind {
                    expected,
                    found: found.to_string(),
                });
            }
            v
        }
        Key::Block(cidr) => {
            let spec = json(value)?;
            serde_json::json!({
                "apiVersion": "crd.projectcalico.org/v1",
                "kind": "IPAMBlock",
                "metadata": {"name": format!("{}-{}", cidr.network(), cidr.prefix()).replace('.', "-")},
                "spec": spec,
            })
        }
        Key::Affinity { .. } | Key::Handle(_) | Key::Other => return Ok(None),
    };
    let text = doc.to_string();
    // Each value on its own, so that one bad value is left out, not the read.
    let r = parse_documents(&text).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    Ok(Some((text, r)))
}

fn json(value: &[u8]) -> Result<serde_json::Value, DecodeError> {
    let text = std::str::from_utf8(value).map_err(|_| DecodeError::NotUtf8)?;
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(DecodeError::NotAnObject);
    }
    Ok(v)
}

/// A read of the datastore, as the documents of one configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The documents, as a multi-document stream the parser reads.
    pub text: String,
    /// How many keys gave a document.
    pub documents: usize,
    /// Keys whose value was left out, and why.
    pub skipped: Vec<(String, DecodeError)>,
}

/// The snapshot node `node` compiles from `kvs` (keys and values).
pub fn snapshot<'a>(kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>, node: &str) -> Snapshot {
    let mut s = Snapshot::default();
    for (key, value) in kvs {
        match document(key, value, node) {
            Ok(Some(doc)) => {
                if s.documents > 0 {
                    s.text.push_str("---\n");
                }
                s.text.push_str(&doc);
                s.text.push('\n');
                s.documents += 1;
            }
            Ok(None) => {}
            Err(e) => s.skipped.push((key.to_string(), e)),
        }
    }
    s
}
