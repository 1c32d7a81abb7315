//! Address allocation as calico-ipam does it (SPEC §11), on Calico's own
//! keys: an address from a block affine to the node, a new block claimed
//! (with its affinity) when none has room, every change a compare-and-swap
//! on the key's revision, so that concurrent allocations on one node and
//! across nodes never hand out one address twice.
//!
//! The values are libcalico-go's `model.AllocationBlock` (the block key's
//! value: `cidr`, `affinity: host:<node>`, `allocations` — per ordinal, the
//! index of its entry in `attributes`, or null —, `unallocated` — the free
//! ordinals, in the order they are handed out —, `attributes` —
//! `{handle_id, secondary}` —, `strictAffinity`, `deleted`) and
//! `model.IPAMHandle` (`handleID`, `block`: addresses held per block CIDR,
//! `deleted`). The pure functions here change those values; the etcd side
//! (feature `client`) reads, changes and writes them back in transactions
//! that fail when the key changed since it was read, and retries.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde_json::{Map, Value, json};

/// A pool addresses are taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamPool {
    pub cidr: Ipv4Network,
    pub block_size: u8,
}

/// The pools of IPPool resources' values (JSON): enabled IPv4 pools, with
/// Calico's default block size (26).
pub fn pools<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<IpamPool> {
    let mut out: Vec<IpamPool> = values
        .into_iter()
        .filter_map(|v| serde_json::from_slice::<Value>(v).ok())
        .filter_map(|v| {
            let spec = v.get("spec")?;
            if spec.get("disabled").and_then(Value::as_bool) == Some(true) {
                return None;
            }
            let cidr: Ipv4Network = spec.get("cidr")?.as_str()?.parse().ok()?;
            let block_size = spec
                .get("blockSize")
                .and_then(Value::as_u64)
                .and_then(|b| u8::try_from(b).ok())
                .unwrap_or(26);
            (cidr.prefix() <= block_size && block_size <= 32)
                .then_some(IpamPool { cidr, block_size })
        })
        .collect();
    out.sort_by_key(|p| (u32::from(p.cidr.network()), p.cidr.prefix()));
    out
}

/// A new block `cidr` affine to `host`, every address free.
pub fn new_block(cidr: Ipv4Network, host: &str) -> Value {
    let size = 1usize << (32 - u32::from(cidr.prefix()));
    json!({
        "cidr": cidr.to_string(),
        "affinity": format!("host:{host}"),
        "allocations": vec![Value::Null; size],
        "unallocated": (0..size).collect::<Vec<_>>(),
        "attributes": [],
        "strictAffinity": false,
        "deleted": false,
    })
}

/// The first block of `pool` that no block in `taken` overlaps.
pub fn free_block(pool: &IpamPool, taken: &[Ipv4Network]) -> Option<Ipv4Network> {
    let step = 1u64 << (32 - u32::from(pool.block_size));
    let start = u64::from(u32::from(pool.cidr.network()));
    let end = start + (1u64 << (32 - u32::from(pool.cidr.prefix())));
    (0..)
        .map(|i| start + i * step)
        .take_while(|&a| a < end)
        .filter_map(|a| Ipv4Network::new(Ipv4Addr::from(a as u32), pool.block_size).ok())
        .find(|b| {
            !taken
                .iter()
                .any(|t| t.contains(b.network()) || b.contains(t.network()))
        })
}

/// Takes a free address of `block` (an AllocationBlock's JSON) for
/// `handle`, with `secondary` attributes (namespace, pod, node); returns it,
/// or None when the block is full (or not a block).
pub fn assign(block: &mut Value, handle: &str, secondary: Value) -> Option<Ipv4Addr> {
    let cidr: Ipv4Network = block.get("cidr")?.as_str()?.parse().ok()?;
    let b = block.as_object_mut()?;
    let ordinal = {
        let free = b.get_mut("unallocated")?.as_array_mut()?;
        if free.is_empty() {
            return None;
        }
        free.remove(0).as_u64()?
    };
    allocate(b, ordinal, handle, secondary)?;
    Some(Ipv4Addr::from(
        u32::from(cidr.network()).wrapping_add(ordinal as u32),
    ))
}

/// Records ordinal `ordinal` (already out of `unallocated`) as `handle`'s,
/// with its attributes; None when the slot is not free.
fn allocate(
    b: &mut Map<String, Value>,
    ordinal: u64,
    handle: &str,
    secondary: Value,
) -> Option<()> {
    let attributes = b
        .entry("attributes")
        .or_insert_with(|| json!([]))
        .as_array_mut()?;
    let index = attributes.len();
    attributes.push(json!({ "handle_id": handle, "secondary": secondary }));
    let slot = b
        .get_mut("allocations")?
        .as_array_mut()?
        .get_mut(usize::try_from(ordinal).ok()?)?;
    if !slot.is_null() {
        return None;
    }
    *slot = json!(index);
    Some(())
}

/// Takes address `ip` of `block` for `handle` (calico-ipam's `AssignIP`,
/// for a pod that asks for its address: `IP=` in `CNI_ARGS`); None when
/// `ip` is not in the block or is not free.
pub fn assign_ip(block: &mut Value, ip: Ipv4Addr, handle: &str, secondary: Value) -> Option<()> {
    let cidr: Ipv4Network = block.get("cidr")?.as_str()?.parse().ok()?;
    if !cidr.contains(ip) {
        return None;
    }
    let ordinal = u64::from(u32::from(ip) - u32::from(cidr.network()));
    let b = block.as_object_mut()?;
    let free = b.get_mut("unallocated")?.as_array_mut()?;
    let at = free.iter().position(|o| o.as_u64() == Some(ordinal))?;
    free.remove(at);
    allocate(b, ordinal, handle, secondary)
}

/// Frees every address of `block` that `handle` holds; returns them.
/// Attributes no address refers to any more are dropped (the others
/// renumbered), as libcalico-go does.
pub fn release(block: &mut Value, handle: &str) -> Vec<Ipv4Addr> {
    let Some(cidr) = block
        .get("cidr")
        .and_then(Value::as_str)
        .and_then(|c| c.parse::<Ipv4Network>().ok())
    else {
        return Vec::new();
    };
    let Some(b) = block.as_object_mut() else {
        return Vec::new();
    };
    let attributes: Vec<Value> = b
        .get("attributes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut allocations: Vec<Value> = b
        .get("allocations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut freed = Vec::new();
    for (ordinal, a) in allocations.iter_mut().enumerate() {
        let held = a
            .as_u64()
            .and_then(|i| attributes.get(usize::try_from(i).ok()?))
            .and_then(|at| at.get("handle_id"))
            .and_then(Value::as_str)
            == Some(handle);
        if held {
            *a = Value::Null;
            freed.push(ordinal);
        }
    }
    if freed.is_empty() {
        return Vec::new();
    }
    // Renumber the attributes still referred to.
    let mut renumber: Map<String, Value> = Map::new();
    let mut kept = Vec::new();
    for a in allocations.iter_mut() {
        if let Some(i) = a.as_u64() {
            let key = i.to_string();
            let new = match renumber.get(&key) {
                Some(n) => n.clone(),
                None => {
                    let n = json!(kept.len());
                    kept.push(attributes.get(i as usize).cloned().unwrap_or(Value::Null));
                    renumber.insert(key, n.clone());
                    n
                }
            };
            *a = new;
        }
    }
    b.insert("allocations".into(), Value::Array(allocations));
    b.insert("attributes".into(), Value::Array(kept));
    if let Some(free) = b.get_mut("unallocated").and_then(Value::as_array_mut) {
        free.extend(freed.iter().map(|&o| json!(o)));
    }
    freed
        .into_iter()
        .map(|o| Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(o as u32)))
        .collect()
}

/// A handle's value (`model.IPAMHandle`) after `delta` addresses more (or
/// fewer) in `block`; None when it holds nothing any more (delete it).
pub fn handle_value(
    old: Option<&Value>,
    id: &str,
    block: Ipv4Network,
    delta: i64,
) -> Option<Value> {
    let mut blocks: Map<String, Value> = old
        .and_then(|v| v.get("block"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let key = block.to_string();
    let n = blocks.get(&key).and_then(Value::as_i64).unwrap_or(0) + delta;
    if n > 0 {
        blocks.insert(key, json!(n));
    } else {
        blocks.remove(&key);
    }
    (!blocks.is_empty()).then(|| json!({ "handleID": id, "block": blocks, "deleted": false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_asked_for_is_taken_once_and_only_in_its_block() {
        let mut b = new_block(net("10.2.36.64/30"), "n1");
        let sec = json!({"node": "n1"});
        let ip = Ipv4Addr::new(10, 2, 36, 66);
        assert!(assign_ip(&mut b, ip, "k8s-pod-network.c1", sec.clone()).is_some());
        assert_eq!(b["allocations"], json!([null, null, 0, null]));
        assert_eq!(b["unallocated"], json!([0, 1, 3]));
        let mut again = b.clone();
        assert!(assign_ip(&mut again, ip, "k8s-pod-network.c2", sec.clone()).is_none());
        let outside = Ipv4Addr::new(10, 2, 36, 68);
        assert!(assign_ip(&mut b.clone(), outside, "k8s-pod-network.c2", sec.clone()).is_none());
        // The next automatic address skips it; release gives it back.
        assert_eq!(
            assign(&mut b, "k8s-pod-network.c3", sec).unwrap(),
            Ipv4Addr::new(10, 2, 36, 64)
        );
        assert_eq!(release(&mut b, "k8s-pod-network.c1"), [ip]);
    }

    #[test]
    fn addresses_are_taken_in_order_and_freed_by_handle() {
        let mut b = new_block(net("10.2.36.64/30"), "n1");
        assert_eq!(b["affinity"], "host:n1");
        let sec = json!({"namespace": "default", "pod": "p"});
        let a = assign(&mut b, "k8s-pod-network.c1", sec.clone()).unwrap();
        let c = assign(&mut b, "k8s-pod-network.c2", sec.clone()).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 2, 36, 64));
        assert_eq!(c, Ipv4Addr::new(10, 2, 36, 65));
        assert_eq!(b["allocations"], json!([0, 1, null, null]));
        assert_eq!(b["unallocated"], json!([2, 3]));
        assert_eq!(b["attributes"][1]["handle_id"], "k8s-pod-network.c2");
        // c1 released: its attribute goes, c2's is renumbered.
        assert_eq!(
            release(&mut b, "k8s-pod-network.c1"),
            [Ipv4Addr::new(10, 2, 36, 64)]
        );
        assert_eq!(b["allocations"], json!([null, 0, null, null]));
        assert_eq!(b["attributes"].as_array().unwrap().len(), 1);
        assert_eq!(b["attributes"][0]["handle_id"], "k8s-pod-network.c2");
        assert_eq!(b["unallocated"], json!([2, 3, 0]));
        assert!(release(&mut b, "k8s-pod-network.c1").is_empty(), "twice");
        // Full: None.
        for h in ["a", "b", "c"] {
            assert!(assign(&mut b, h, Value::Null).is_some());
        }
        assert_eq!(assign(&mut b, "d", Value::Null), None);
    }

    #[test]
    fn a_free_block_is_one_no_block_overlaps() {
        let p = IpamPool {
            cidr: net("10.2.0.0/24"),
            block_size: 26,
        };
        assert_eq!(free_block(&p, &[]), Some(net("10.2.0.0/26")));
        assert_eq!(
            free_block(&p, &[net("10.2.0.0/26"), net("10.2.0.128/26")]),
            Some(net("10.2.0.64/26"))
        );
        let all: Vec<_> = ["0", "64", "128", "192"]
            .iter()
            .map(|o| net(&format!("10.2.0.{o}/26")))
            .collect();
        assert_eq!(free_block(&p, &all), None);
        // A block of another size inside counts too.
        assert_eq!(
            free_block(&p, &[net("10.2.0.8/29")]),
            Some(net("10.2.0.64/26"))
        );
    }

    #[test]
    fn pools_and_handles_read_and_write_calicos_values() {
        let a = br#"{"spec":{"cidr":"10.2.0.0/16","blockSize":26}}"#;
        let b = br#"{"spec":{"cidr":"10.3.0.0/16","disabled":true}}"#;
        let c = br#"{"spec":{"cidr":"10.4.0.0/16"}}"#;
        let got = pools([&a[..], &b[..], &c[..]]);
        assert_eq!(
            got,
            [
                IpamPool {
                    cidr: net("10.2.0.0/16"),
                    block_size: 26
                },
                IpamPool {
                    cidr: net("10.4.0.0/16"),
                    block_size: 26
                }
            ]
        );
        let h = handle_value(None, "k8s-pod-network.c1", net("10.2.36.64/26"), 1).unwrap();
        assert_eq!(
            h,
            json!({"handleID": "k8s-pod-network.c1", "block": {"10.2.36.64/26": 1}, "deleted": false})
        );
        assert_eq!(
            handle_value(Some(&h), "k8s-pod-network.c1", net("10.2.36.64/26"), -1),
            None
        );
    }
}
