//! What a node holds of the datastore: for each key it needs, the resources
//! its value parsed into — nothing for the keys it does not need (other
//! nodes' WorkloadEndpoints, IPAM handles and affinities, policies…), which
//! are recognised by the key alone and never parsed.
//!
//! A change (a watch event, a whole read) updates the held values and says
//! whether anything a snapshot is made of changed; [`Store::resources`]
//! assembles the snapshot and leaves out, with its key, any value that does
//! not validate beside the others, so that one bad value never takes the
//! node's other resources with it.

use std::collections::{BTreeMap, BTreeSet};

use podwire::config::{self, ConfigError, Resources};

use crate::decode::{self, DecodeError};

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The value is new or differs from the one held.
    Changed,
    /// The value parses to what is already held.
    Unchanged,
    /// The key is not one the node needs.
    Ignored,
    /// The value does not decode: it is left out, and so is the value the
    /// key held before (as a datastore client that cannot read an update
    /// treats the resource as gone).
    Rejected(DecodeError),
}

/// The held values of one node.
#[derive(Debug)]
pub struct Store {
    node: String,
    held: BTreeMap<String, Resources>,
}

/// A snapshot, with the keys left out of it.
#[derive(Debug)]
pub struct Assembled {
    pub resources: Resources,
    /// Keys whose value does not validate beside the others, and why.
    pub left_out: Vec<(String, ConfigError)>,
}

impl Store {
    pub fn new(node: impl Into<String>) -> Store {
        Store {
            node: node.into(),
            held: BTreeMap::new(),
        }
    }

    /// The node whose values are held.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether `key` holds a value.
    pub fn holds(&self, key: &str) -> bool {
        self.held.contains_key(key)
    }

    /// The held keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.held.keys().map(String::as_str)
    }

    /// A key was written with `value`.
    pub fn put(&mut self, key: &str, value: &[u8]) -> Applied {
        match decode::resources(key, value, &self.node) {
            Ok(None) => Applied::Ignored,
            Ok(Some(r)) => {
                if self.held.get(key) == Some(&r) {
                    Applied::Unchanged
                } else {
                    self.held.insert(key.to_string(), r);
                    Applied::Changed
                }
            }
            Err(e) => {
                self.held.remove(key);
                Applied::Rejected(e)
            }
        }
    }

    /// A key was deleted: whether it was held.
    pub fn delete(&mut self, key: &str) -> bool {
        self.held.remove(key).is_some()
    }

    /// A whole read: the keys and values of `kvs` replace everything held.
    /// Returns how many held keys changed (added, removed or other values)
    /// and the values rejected.
    pub fn replace<'a>(
        &mut self,
        kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> (usize, Vec<(String, DecodeError)>) {
        let mut fresh = Store::new(self.node.clone());
        let mut rejected = Vec::new();
        for (key, value) in kvs {
            if let Applied::Rejected(e) = fresh.put(key, value) {
                rejected.push((key.to_string(), e));
            }
        }
        (self.replace_with(fresh), rejected)
    }

    /// A whole read, already put into `fresh` (as it arrived, so that the
    /// read's raw values are never held all at once): it replaces
    /// everything held. Returns how many held keys changed.
    pub fn replace_with(&mut self, fresh: Store) -> usize {
        let keys: BTreeSet<&String> = self.held.keys().chain(fresh.held.keys()).collect();
        let changed = keys
            .into_iter()
            .filter(|k| self.held.get(*k) != fresh.held.get(*k))
            .count();
        self.held = fresh.held;
        changed
    }

    /// The snapshot of everything held. A value that does not validate
    /// beside the others (a second pool overlapping the first, a block
    /// outside every pool…) is left out, with its key and the reason, and
    /// the rest validated again.
    pub fn resources(&self) -> Assembled {
        let keys: Vec<&String> = self.held.keys().collect();
        let mut out: BTreeSet<usize> = BTreeSet::new();
        let mut left_out = Vec::new();
        loop {
            let mut r = Resources::default();
            for (i, k) in keys.iter().enumerate() {
                if !out.contains(&i) {
                    r.append(&self.held[*k], i + 1);
                }
            }
            match config::validate(&r) {
                Ok(()) => {
                    return Assembled {
                        resources: r,
                        left_out,
                    };
                }
                Err(e) => {
                    let doc = e.at().doc;
                    // Every error names a document it holds; one that did
                    // not could not be left out, and would loop.
                    if doc == 0 || doc > keys.len() || !out.insert(doc - 1) {
                        return Assembled {
                            resources: Resources::default(),
                            left_out: vec![(String::new(), e)],
                        };
                    }
                    left_out.push((keys[doc - 1].clone(), e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "/calico/resources/v3/projectcalico.org/ippools/p";
    const POOL2: &str = "/calico/resources/v3/projectcalico.org/ippools/q";

    fn pool(name: &str, cidr: &str) -> Vec<u8> {
        format!(r#"{{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{{"name":"{name}"}},"spec":{{"cidr":"{cidr}","vxlanMode":"Always"}}}}"#).into_bytes()
    }

    fn wep(name: &str, node: &str) -> (String, Vec<u8>) {
        (
            format!("/calico/resources/v3/projectcalico.org/workloadendpoints/default/{name}"),
            format!(r#"{{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"node":"{node}","interfaceName":"cali0","ipNetworks":["10.2.0.5/32"]}}}}"#).into_bytes(),
        )
    }

    #[test]
    fn puts_deletes_and_other_nodes_endpoints() {
        let mut s = Store::new("node-a");
        assert_eq!(s.put(POOL, &pool("p", "10.2.0.0/16")), Applied::Changed);
        assert_eq!(s.put(POOL, &pool("p", "10.2.0.0/16")), Applied::Unchanged);
        // Another node's endpoint is not held, and its value is not read:
        // even one that is not JSON is ignored, not rejected.
        let (k, _) = wep("node--b-k8s-pod-eth0", "node-b");
        assert_eq!(s.put(&k, b"{not json"), Applied::Ignored);
        let (k, v) = wep("node--a-k8s-pod-eth0", "node-a");
        assert_eq!(s.put(&k, &v), Applied::Changed);
        assert_eq!(s.len(), 2);
        // A value that becomes bad is left out, with the one held before.
        assert!(matches!(
            s.put(POOL, b"[1]"),
            Applied::Rejected(DecodeError::NotAnObject)
        ));
        assert_eq!(s.len(), 1);
        assert!(s.delete(&k));
        assert!(!s.delete(&k));
        assert!(s.is_empty());
    }

    #[test]
    fn a_whole_read_replaces_and_counts_changes() {
        let mut s = Store::new("n");
        s.put(POOL, &pool("p", "10.2.0.0/16"));
        let q = pool("q", "10.3.0.0/16");
        let (changed, rejected) = s.replace([
            (POOL, &pool("p", "10.2.0.0/16")[..]),
            (POOL2, &q[..]),
            (
                "/calico/resources/v3/projectcalico.org/nodes/x",
                &b"nonsense"[..],
            ),
        ]);
        assert_eq!(changed, 1, "q added, p the same");
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].0.ends_with("/nodes/x"));
        let (changed, _) = s.replace([(POOL2, &q[..])]);
        assert_eq!(changed, 1, "p removed");
        assert_eq!(s.keys().collect::<Vec<_>>(), vec![POOL2]);
    }

    #[test]
    fn a_value_that_conflicts_is_left_out_with_its_key_not_the_rest() {
        let mut s = Store::new("n");
        s.put(POOL, &pool("p", "10.2.0.0/16"));
        // Overlaps p: one of the two is left out, p stays.
        s.put(POOL2, &pool("q", "10.2.128.0/17"));
        s.put(
            "/calico/resources/v3/projectcalico.org/ippools/r",
            &pool("r", "10.9.0.0/16"),
        );
        let a = s.resources();
        assert_eq!(a.left_out.len(), 1, "{:?}", a.left_out);
        assert_eq!(a.left_out[0].0, POOL2);
        let names: Vec<&str> = a.resources.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p", "r"]);
        // The conflict gone, q is back.
        s.delete(POOL);
        let a = s.resources();
        assert!(a.left_out.is_empty());
        assert_eq!(a.resources.pools.len(), 2);
    }
}
