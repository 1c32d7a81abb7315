//! The etcd side of [`ipam`](crate::ipam): reads Calico's IPAM keys,
//! changes them with the pure functions there, and writes them back in
//! transactions that succeed only when every key read is unchanged (its
//! `mod_revision`, or absence by `create_revision == 0`). A transaction
//! that fails is retried from a fresh read, after a short pause that
//! differs between callers, so that concurrent allocations converge.

use std::net::Ipv4Addr;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use ipnetwork::Ipv4Network;
use serde_json::{Value, json};

use crate::client::{Error, TIMEOUT, deadline};
use crate::ipam::{self, IpamPool};
use crate::layout::{self, IPAM, Key, RESOURCES};
use crate::settings::Settings;

/// Transactions tried before giving up.
const ATTEMPTS: u32 = 200;

/// An address handed out, and the block it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub address: Ipv4Addr,
    pub block: Ipv4Network,
}

/// A key's value (JSON) and `mod_revision`; `None` when absent.
async fn get(c: &mut Client, key: &str) -> Result<Option<(Value, i64)>, Error> {
    let r = deadline(TIMEOUT, async { Ok(c.get(key, None).await?) }).await?;
    Ok(r.kvs().first().map(|kv| {
        (
            serde_json::from_slice(kv.value()).unwrap_or(Value::Null),
            kv.mod_revision(),
        )
    }))
}

/// Every key under `prefix` with its value.
async fn list(
    c: &mut Client,
    prefix: &str,
    keys_only: bool,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut o = GetOptions::new().with_prefix();
    if keys_only {
        o = o.with_keys_only();
    }
    let r = deadline(TIMEOUT, async { Ok(c.get(prefix, Some(o)).await?) }).await?;
    Ok(r.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
            )
        })
        .collect())
}

/// The comparison that `key` is as read: at `rev`, or absent.
fn unchanged(key: &str, rev: Option<i64>) -> Compare {
    match rev {
        Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    }
}

async fn commit(c: &mut Client, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, Error> {
    let txn = Txn::new().when(when).and_then(ops);
    Ok(deadline(TIMEOUT, async { Ok(c.txn(txn).await?) })
        .await?
        .succeeded())
}

/// A pause after a lost race: a few milliseconds, more the more often it
/// was lost, different for every caller.
async fn back_off(attempt: u32, salt: u64) {
    let spread = u64::from(attempt.min(10) + 1) * 4;
    let ms = 1
        + (salt
            .wrapping_mul(6364136223846793005)
            .wrapping_add(u64::from(attempt))
            >> 33)
            % spread;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn salt(handle: &str) -> u64 {
    handle.bytes().fold(u64::from(std::process::id()), |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    })
}

/// The enabled IPv4 pools in the datastore.
pub async fn pools(c: &mut Client) -> Result<Vec<IpamPool>, Error> {
    let kvs = list(c, &format!("{RESOURCES}ippools/"), false).await?;
    Ok(ipam::pools(kvs.iter().map(|(_, v)| v.as_slice())))
}

/// Hands out one address to `handle` on `node` (calico-ipam's
/// `AutoAssign` for one IPv4 address): from a block affine to the node
/// with room, else from a block claimed for it now. `secondary` is stored
/// with the allocation (namespace, pod, node).
pub async fn assign(
    c: &mut Client,
    node: &str,
    handle: &str,
    secondary: Value,
) -> Result<Assigned, Error> {
    let salt = salt(handle);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            back_off(attempt, salt).await;
        }
        let pools = pools(c).await?;
        if pools.is_empty() {
            return Err(Error::Etcd(
                "no enabled IPv4 IPPool to allocate from".into(),
            ));
        }
        let in_pools = |b: &Ipv4Network| pools.iter().any(|p| p.cidr.contains(b.network()));
        let mut affine: Vec<Ipv4Network> = list(c, &format!("{IPAM}host/{node}/ipv4/block/"), true)
            .await?
            .iter()
            .filter_map(|(k, _)| match layout::parse_key(k) {
                Key::Affinity { host, cidr } if host == node => Some(cidr),
                _ => None,
            })
            .filter(in_pools)
            .collect();
        affine.sort_by_key(|b| u32::from(b.network()));
        let mut raced = false;
        for cidr in affine {
            let key = layout::block_key(cidr);
            let Some((mut block, rev)) = get(c, &key).await? else {
                continue;
            };
            if block.get("deleted").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let Some(address) = ipam::assign(&mut block, handle, secondary.clone()) else {
                continue;
            };
            if write_assignment(c, cidr, &block, rev, handle).await? {
                return Ok(Assigned {
                    address,
                    block: cidr,
                });
            }
            raced = true;
            break;
        }
        if raced {
            continue;
        }
        // No affine block has room: claim the first free block of a pool.
        let taken: Vec<Ipv4Network> = list(c, &format!("{IPAM}assignment/ipv4/block/"), true)
            .await?
            .iter()
            .filter_map(|(k, _)| match layout::parse_key(k) {
                Key::Block(cidr) => Some(cidr),
                _ => None,
            })
            .collect();
        let Some(cidr) = pools.iter().find_map(|p| ipam::free_block(p, &taken)) else {
            return Err(Error::Etcd("every block of every IP pool is taken".into()));
        };
        claim(c, node, cidr).await?;
    }
    Err(Error::Etcd(format!(
        "no address for {handle} after {ATTEMPTS} attempts (too much contention)"
    )))
}

/// Hands address `ip` to `handle` on `node` (calico-ipam's `AssignIP`: a
/// pod asking for its address with `IP=` in `CNI_ARGS`): `ip` must be in
/// an enabled pool and free; its block is claimed for `node` if nobody has
/// it yet (as calico-ipam does), else it is used whoever it is affine to.
pub async fn assign_ip(
    c: &mut Client,
    node: &str,
    ip: Ipv4Addr,
    handle: &str,
    secondary: Value,
) -> Result<Assigned, Error> {
    let salt = salt(handle);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            back_off(attempt, salt).await;
        }
        let pools = pools(c).await?;
        let Some(pool) = pools.iter().find(|p| p.cidr.contains(ip)) else {
            return Err(Error::Refused(format!("{ip} is in no enabled IPv4 IPPool")));
        };
        let cidr = Ipv4Network::new(ip, pool.block_size)
            .ok()
            .and_then(|n| Ipv4Network::new(n.network(), pool.block_size).ok())
            .ok_or_else(|| Error::Etcd(format!("bad block size /{}", pool.block_size)))?;
        let key = layout::block_key(cidr);
        let Some((mut block, rev)) = get(c, &key).await? else {
            claim(c, node, cidr).await?;
            continue;
        };
        if ipam::assign_ip(&mut block, ip, handle, secondary.clone()).is_none() {
            return Err(Error::Refused(format!("{ip} is not free in block {cidr}")));
        }
        if write_assignment(c, cidr, &block, rev, handle).await? {
            return Ok(Assigned {
                address: ip,
                block: cidr,
            });
        }
    }
    Err(Error::Etcd(format!(
        "{ip} for {handle} not assigned after {ATTEMPTS} attempts (too much contention)"
    )))
}

/// Frees every address `handle` holds and deletes the handle; returns the
/// addresses freed (none when the handle does not exist: releasing twice
/// is not an error).
pub async fn release(c: &mut Client, handle: &str) -> Result<Vec<Ipv4Addr>, Error> {
    let salt = salt(handle);
    let hkey = layout::handle_key(handle);
    let mut freed = Vec::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            back_off(attempt, salt).await;
        }
        let Some((hval, hrev)) = get(c, &hkey).await? else {
            return Ok(freed);
        };
        let blocks: Vec<Ipv4Network> = hval
            .get("block")
            .and_then(Value::as_object)
            .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default();
        let Some(cidr) = blocks.first().copied() else {
            // Holds nothing: delete it.
            commit(
                c,
                vec![unchanged(&hkey, Some(hrev))],
                vec![TxnOp::delete(hkey.as_str(), None)],
            )
            .await?;
            continue;
        };
        // One block at a time, the block and the handle in one transaction.
        let key = layout::block_key(cidr);
        let (mut block, rev) = get(c, &key).await?.unwrap_or((Value::Null, 0));
        let gone = ipam::release(&mut block, handle);
        let rest = ipam::handle_value(Some(&hval), handle, cidr, -i64::MAX);
        let mut ops = Vec::new();
        let mut when = vec![unchanged(&hkey, Some(hrev))];
        if !gone.is_empty() {
            ops.push(TxnOp::put(key.as_str(), block.to_string(), None));
            when.push(unchanged(&key, Some(rev)));
        }
        ops.push(match rest {
            Some(v) => TxnOp::put(hkey.as_str(), v.to_string(), None),
            None => TxnOp::delete(hkey.as_str(), None),
        });
        if commit(c, when, ops).await? {
            freed.extend(gone);
        }
    }
    Err(Error::Etcd(format!(
        "could not release {handle} after {ATTEMPTS} attempts (too much contention)"
    )))
}

/// Runs `f` with a client of the first member of `settings` that
/// answers, on a runtime of its own, blocking.
fn with_client<T>(
    settings: &Settings,
    f: impl AsyncFnOnce(&mut Client) -> Result<T, Error>,
) -> Result<T, Error> {
    crate::source::block_on(async {
        let mut c = crate::client::connect_first(settings).await?;
        f(&mut c).await
    })?
}

/// [`assign`], blocking.
pub fn assign_blocking(
    settings: &Settings,
    node: &str,
    handle: &str,
    secondary: Value,
) -> Result<Assigned, Error> {
    with_client(settings, async |c| assign(c, node, handle, secondary).await)
}

/// Claims block `cidr` for `node` (the block and its affinity, unless
/// someone wrote the block first).
async fn claim(c: &mut Client, node: &str, cidr: Ipv4Network) -> Result<(), Error> {
    let key = layout::block_key(cidr);
    let affinity = layout::affinity_key(node, cidr);
    let ops = vec![
        TxnOp::put(key.as_str(), ipam::new_block(cidr, node).to_string(), None),
        TxnOp::put(
            affinity.as_str(),
            json!({"state": "confirmed", "deleted": false}).to_string(),
            None,
        ),
    ];
    if commit(c, vec![unchanged(&key, None)], ops).await? {
        tracing::info!(%cidr, node, "claimed an IPAM block");
    }
    Ok(())
}

/// Writes `block` (read at `rev`, with one more address of it now
/// `handle`'s) and the handle, unless either changed meanwhile (false).
async fn write_assignment(
    c: &mut Client,
    cidr: Ipv4Network,
    block: &Value,
    rev: i64,
    handle: &str,
) -> Result<bool, Error> {
    let key = layout::block_key(cidr);
    let hkey = layout::handle_key(handle);
    let old = get(c, &hkey).await?;
    let Some(hval) = ipam::handle_value(old.as_ref().map(|(v, _)| v), handle, cidr, 1) else {
        return Ok(false);
    };
    let when = vec![
        unchanged(&key, Some(rev)),
        unchanged(&hkey, old.map(|(_, r)| r)),
    ];
    let ops = vec![
        TxnOp::put(key.as_str(), block.to_string(), None),
        TxnOp::put(hkey.as_str(), hval.to_string(), None),
    ];
    commit(c, when, ops).await
}

/// [`assign_ip`], blocking.
pub fn assign_ip_blocking(
    settings: &Settings,
    node: &str,
    ip: Ipv4Addr,
    handle: &str,
    secondary: Value,
) -> Result<Assigned, Error> {
    with_client(settings, async |c| {
        assign_ip(c, node, ip, handle, secondary).await
    })
}

/// [`release`], blocking.
pub fn release_blocking(settings: &Settings, handle: &str) -> Result<Vec<Ipv4Addr>, Error> {
    with_client(settings, async |c| release(c, handle).await)
}

/// Whether `handle` holds an address (for CNI CHECK).
pub fn holds_blocking(settings: &Settings, handle: &str) -> Result<bool, Error> {
    with_client(settings, async |c| {
        Ok(get(c, &layout::handle_key(handle)).await?.is_some())
    })
}

/// Writes `value` under `key` (a WorkloadEndpoint a CNI ADD made),
/// blocking.
pub fn put_blocking(settings: &Settings, key: &str, value: &str) -> Result<(), Error> {
    with_client(settings, async |c| {
        deadline(TIMEOUT, async { Ok(c.put(key, value, None).await?) }).await?;
        Ok(())
    })
}

/// Every key under `prefix` with its value, blocking (CNI GC's look at
/// the node's endpoints and allocations).
pub fn list_blocking(settings: &Settings, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    with_client(settings, async |c| {
        let mut kvs = Vec::new();
        crate::client::list(c, &[prefix.to_string()], None, |k, v| {
            kvs.push((k.to_string(), v.to_vec()))
        })
        .await?;
        Ok(kvs)
    })
}

/// Deletes `key`; a key that is not there is not an error. Blocking.
pub fn delete_blocking(settings: &Settings, key: &str) -> Result<(), Error> {
    with_client(settings, async |c| {
        deadline(TIMEOUT, async { Ok(c.delete(key, None).await?) }).await?;
        Ok(())
    })
}
