//! The built-in key-value state machine: put, get, delete and compare-and-set over byte strings.
//! It is one `StateMachine` among others: the node and the client protocol know nothing of keys;
//! a `KvOp` travels as the opaque payload of a command (put, delete, cas) or a query (get), and
//! the client helpers in `kv_client.rs` encode it and decode the `KvResult`.
//!
//! Every operation, reads included, is ordered through the log, so every acknowledged
//! operation is linearizable: it takes effect at its index, between the operations committed
//! before and after it. Retried requests are applied once by the node's session table before
//! they reach this machine (see `apply.rs`).
//!
//! Operation layout: `tag u8` (1 put, 2 get, 3 delete, 4 cas), then `key`, then for put the
//! value, for cas the optional expected and the optional new value (byte strings and options as
//! in `client_protocol`). Result layout: `tag u8` (1 written, 2 value, 3 deleted, 4 cas,
//! 5 invalid), then the fields. A get that arrives as a command (how a version 1 client sent it,
//! so old logs hold such entries) is answered like a query.
//!
//! Snapshots (rule S2): the map is cut into `SHARD_COUNT` ordered shards, each behind an `Arc`,
//! by a fixed hash of the key (FNV-1a, never `RandomState`). Taking a snapshot clones the shard
//! `Arc`s (O(shards)); the first write to a shard afterwards copies that shard alone
//! (`Arc::make_mut`). The image is the key count, then every key and value, shard by shard
//! and in key order within a shard: a function of the map's contents only.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use bytes::Bytes;

use alpo_core::LogIndex;

use crate::client_protocol::{Consistency, Op};
use crate::image_io::{get_bytes, get_u64, put_bytes, put_u64};
use crate::limits::KV_KEY_BYTES_MAX;
use crate::state_machine::{SnapshotImage, StateMachine};
use crate::wire::{DecodeError, Reader, Writer};

/// A key-value operation, as it travels in a log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: Bytes,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Set `key` to `new` (remove it when none) iff it holds `expected` (none: absent).
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must hold.
        expected: Option<Bytes>,
        /// The value to set.
        new: Option<Bytes>,
    },
}

/// The key-value machine's answer to one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvResult {
    /// `Put` took effect.
    Written,
    /// `Get`'s answer: the value, or none if the key is absent.
    Value(Option<Bytes>),
    /// `Delete` took effect; whether the key existed.
    Deleted {
        /// Whether there was a value to remove.
        existed: bool,
    },
    /// `Cas`'s outcome.
    Cas {
        /// Whether the expected value matched and the new value was set.
        swapped: bool,
        /// The key's value after the operation.
        current: Option<Bytes>,
    },
    /// The command was malformed or too large; nothing changed.
    Invalid(String),
}

/// The built-in key-value state machine: a map from byte strings to byte strings, in
/// copy-on-write shards so that a snapshot is taken without copying the map.
#[derive(Debug)]
pub struct KvStateMachine {
    shards: Vec<Shard>,
}

/// One shard of the map; shared with the snapshots taken since its last write.
type Shard = Arc<BTreeMap<Bytes, Bytes>>;

/// How many shards the map has: a write after a snapshot copies 1/`SHARD_COUNT` of the map.
const SHARD_COUNT: usize = 256;

/// The frozen shards of a [`KvStateMachine`] at a snapshot.
#[derive(Debug)]
struct KvImage {
    shards: Vec<Shard>,
}

impl KvOp {
    /// The operation's name in words: `put`, `get`, `delete` or `cas`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            KvOp::Put { .. } => "put",
            KvOp::Get { .. } => "get",
            KvOp::Delete { .. } => "delete",
            KvOp::Cas { .. } => "cas",
        }
    }

    /// The key the operation is about.
    #[must_use]
    pub fn key(&self) -> &Bytes {
        match self {
            KvOp::Put { key, .. }
            | KvOp::Get { key }
            | KvOp::Delete { key }
            | KvOp::Cas { key, .. } => key,
        }
    }

    /// Whether the operation only reads (a get), and so travels as a query.
    #[must_use]
    pub fn is_query(&self) -> bool {
        matches!(self, KvOp::Get { .. })
    }

    /// The client-protocol request that carries this operation: a linearizable query for a
    /// get, a command otherwise.
    #[must_use]
    pub fn to_op(&self) -> Op {
        self.to_op_with(Consistency::Linearizable)
    }

    /// Like [`KvOp::to_op`], with a get's consistency chosen (docs/operations.md, Reads).
    #[must_use]
    pub fn to_op_with(&self, consistency: Consistency) -> Op {
        let payload = self.encode();
        if self.is_query() {
            Op::Query {
                payload,
                consistency,
            }
        } else {
            Op::Command { payload }
        }
    }

    /// Encodes the operation as a state-machine command or query.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        match self {
            KvOp::Put { key, value } => w.u8(1).bytes(key).bytes(value),
            KvOp::Get { key } => w.u8(2).bytes(key),
            KvOp::Delete { key } => w.u8(3).bytes(key),
            KvOp::Cas { key, expected, new } => w
                .u8(4)
                .bytes(key)
                .optional_bytes(expected.as_deref())
                .optional_bytes(new.as_deref()),
        };
        w.finish()
    }

    /// Decodes an operation; never panics.
    pub fn decode(buf: Bytes) -> Result<KvOp, DecodeError> {
        let mut r = Reader::new(buf);
        let op = match r.u8("key-value operation")? {
            1 => KvOp::Put {
                key: r.bytes("key")?,
                value: r.bytes("value")?,
            },
            2 => KvOp::Get {
                key: r.bytes("key")?,
            },
            3 => KvOp::Delete {
                key: r.bytes("key")?,
            },
            4 => KvOp::Cas {
                key: r.bytes("key")?,
                expected: r.optional_bytes("expected value")?,
                new: r.optional_bytes("new value")?,
            },
            tag => return Err(r.unknown_tag("key-value operation", tag)),
        };
        r.finish("key-value operation")?;
        Ok(op)
    }
}

impl KvResult {
    /// Encodes the result as the state machine's answer.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        match self {
            KvResult::Written => w.u8(1),
            KvResult::Value(value) => w.u8(2).optional_bytes(value.as_deref()),
            KvResult::Deleted { existed } => w.u8(3).u8(u8::from(*existed)),
            KvResult::Cas { swapped, current } => w
                .u8(4)
                .u8(u8::from(*swapped))
                .optional_bytes(current.as_deref()),
            KvResult::Invalid(reason) => w.u8(5).bytes(reason.as_bytes()),
        };
        w.finish()
    }

    /// Decodes a result; never panics.
    pub fn decode(buf: Bytes) -> Result<KvResult, DecodeError> {
        let mut r = Reader::new(buf);
        let result = match r.u8("key-value result")? {
            1 => KvResult::Written,
            2 => KvResult::Value(r.optional_bytes("value")?),
            3 => KvResult::Deleted {
                existed: r.u8("existed")? != 0,
            },
            4 => KvResult::Cas {
                swapped: r.u8("swapped")? != 0,
                current: r.optional_bytes("current value")?,
            },
            5 => KvResult::Invalid(r.string("reason")?),
            tag => return Err(r.unknown_tag("key-value result", tag)),
        };
        r.finish("key-value result")?;
        Ok(result)
    }
}

impl Default for KvStateMachine {
    fn default() -> KvStateMachine {
        KvStateMachine {
            shards: (0..SHARD_COUNT).map(|_| Shard::default()).collect(),
        }
    }
}

impl KvStateMachine {
    /// An empty map.
    #[must_use]
    pub fn new() -> KvStateMachine {
        KvStateMachine::default()
    }

    fn shard(&self, key: &[u8]) -> &BTreeMap<Bytes, Bytes> {
        &self.shards[shard_of(key)]
    }

    /// The shard of `key`, for writing: copied first if a snapshot still shares it.
    fn shard_mut(&mut self, key: &[u8]) -> &mut BTreeMap<Bytes, Bytes> {
        Arc::make_mut(&mut self.shards[shard_of(key)])
    }

    /// Performs one operation.
    pub fn execute(&mut self, op: KvOp) -> KvResult {
        if KV_KEY_BYTES_MAX < op.key().len() {
            return too_large(op.key().len());
        }
        match op {
            KvOp::Put { key, value } => {
                self.shard_mut(&key).insert(key, value);
                KvResult::Written
            }
            KvOp::Get { key } => KvResult::Value(self.shard(&key).get(&key).cloned()),
            KvOp::Delete { key } => {
                // A delete of an absent key changes nothing, so it copies no shard.
                let existed = self.shard(&key).contains_key(&key);
                if existed {
                    self.shard_mut(&key).remove(&key);
                }
                KvResult::Deleted { existed }
            }
            KvOp::Cas { key, expected, new } => self.compare_and_set(key, expected, new),
        }
    }

    /// The value of `key`, without going through the log (local, possibly stale).
    #[must_use]
    pub fn get_local(&self, key: &[u8]) -> Option<&Bytes> {
        self.shard(key).get(key)
    }

    /// How many keys the map holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }

    /// Whether the map is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| shard.is_empty())
    }

    fn compare_and_set(
        &mut self,
        key: Bytes,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> KvResult {
        let current = self.shard(&key).get(&key).cloned();
        if current != expected {
            return KvResult::Cas {
                swapped: false,
                current,
            };
        }
        let shard = self.shard_mut(&key);
        match &new {
            Some(value) => shard.insert(key, value.clone()),
            None => shard.remove(&key),
        };
        KvResult::Cas {
            swapped: true,
            current: new,
        }
    }
}

impl StateMachine for KvStateMachine {
    fn apply(&mut self, _index: LogIndex, command: &[u8]) -> Vec<u8> {
        let result = match KvOp::decode(Bytes::copy_from_slice(command)) {
            Ok(op) => self.execute(op),
            Err(error) => KvResult::Invalid(format!("malformed key-value command: {error}")),
        };
        result.encode().to_vec()
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let result = match KvOp::decode(Bytes::copy_from_slice(query)) {
            Ok(KvOp::Get { key }) if KV_KEY_BYTES_MAX < key.len() => too_large(key.len()),
            Ok(KvOp::Get { key }) => KvResult::Value(self.shard(&key).get(&key).cloned()),
            Ok(op) => KvResult::Invalid(format!("a {} changes the map: not a query", op.name())),
            Err(error) => KvResult::Invalid(format!("malformed key-value query: {error}")),
        };
        result.encode().to_vec()
    }

    /// A get is one map lookup: the event loop answers reads itself (issue 14).
    fn queries_are_quick(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Box<dyn SnapshotImage> {
        Box::new(KvImage {
            shards: self.shards.clone(),
        })
    }

    fn restore(&mut self, image: &mut dyn io::Read) -> io::Result<()> {
        let mut restored = KvStateMachine::new();
        let count = get_u64(image, "the key count")?;
        let value_bytes_max =
            usize::try_from(alpo_core::limits::ENTRY_BYTES_MAX).unwrap_or(usize::MAX);
        for _ in 0..count {
            let key = get_bytes(image, "a key", KV_KEY_BYTES_MAX)?;
            let value = get_bytes(image, "a value", value_bytes_max)?;
            if restored
                .shard_mut(&key)
                .insert(key.clone(), value)
                .is_some()
            {
                let message = format!("key {key:?} appears twice in the image");
                return Err(crate::image_io::invalid(message));
            }
        }
        *self = restored;
        Ok(())
    }
}

impl SnapshotImage for KvImage {
    fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
        let count: usize = self.shards.iter().map(|shard| shard.len()).sum();
        put_u64(out, count as u64)?;
        for shard in &self.shards {
            for (key, value) in shard.iter() {
                put_bytes(out, key)?;
                put_bytes(out, value)?;
            }
        }
        Ok(())
    }
}

/// The shard a key lives in: FNV-1a of the key, the same on every node and every run.
fn shard_of(key: &[u8]) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % SHARD_COUNT as u64) as usize
}

fn too_large(size: usize) -> KvResult {
    KvResult::Invalid(format!(
        "key of {size} bytes is larger than the limit of {KV_KEY_BYTES_MAX} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Runs `op` as the node would: a query through `query`, a command through `apply`.
    fn run(kv: &mut KvStateMachine, op: KvOp) -> KvResult {
        let output = match op.to_op() {
            Op::Query { payload, .. } => kv.query(&payload),
            Op::Command { payload } => kv.apply(LogIndex(1), &payload),
            other => panic!("{other:?}"),
        };
        KvResult::decode(Bytes::from(output)).unwrap()
    }

    #[test]
    fn put_get_delete() {
        let mut kv = KvStateMachine::new();
        assert_eq!(
            run(&mut kv, KvOp::Get { key: b("a") }),
            KvResult::Value(None)
        );
        let put = KvOp::Put {
            key: b("a"),
            value: b("1"),
        };
        assert_eq!(run(&mut kv, put), KvResult::Written);
        assert_eq!(
            run(&mut kv, KvOp::Get { key: b("a") }),
            KvResult::Value(Some(b("1")))
        );
        let deleted = run(&mut kv, KvOp::Delete { key: b("a") });
        assert_eq!(deleted, KvResult::Deleted { existed: true });
        let deleted = run(&mut kv, KvOp::Delete { key: b("a") });
        assert_eq!(deleted, KvResult::Deleted { existed: false });
        assert!(kv.is_empty());
    }

    #[test]
    fn compare_and_set() {
        let mut kv = KvStateMachine::new();
        let cas = |expected: Option<&str>, new: Option<&str>| KvOp::Cas {
            key: b("k"),
            expected: expected.map(b),
            new: new.map(b),
        };
        let created = run(&mut kv, cas(None, Some("1")));
        assert_eq!(
            created,
            KvResult::Cas {
                swapped: true,
                current: Some(b("1"))
            }
        );
        let refused = run(&mut kv, cas(Some("0"), Some("2")));
        assert_eq!(
            refused,
            KvResult::Cas {
                swapped: false,
                current: Some(b("1"))
            }
        );
        let swapped = run(&mut kv, cas(Some("1"), Some("2")));
        assert_eq!(
            swapped,
            KvResult::Cas {
                swapped: true,
                current: Some(b("2"))
            }
        );
        let removed = run(&mut kv, cas(Some("2"), None));
        assert_eq!(
            removed,
            KvResult::Cas {
                swapped: true,
                current: None
            }
        );
        assert_eq!(kv.len(), 0);
    }

    #[test]
    fn malformed_and_oversized_commands_change_nothing() {
        let mut kv = KvStateMachine::new();
        let output = kv.apply(LogIndex(1), &[9, 9]);
        let result = KvResult::decode(Bytes::from(output)).unwrap();
        assert_eq!(
            result,
            KvResult::Invalid(
                "malformed key-value command: unknown key-value operation tag 9 at byte 0".into()
            )
        );
        let key = Bytes::from(vec![b'x'; KV_KEY_BYTES_MAX + 1]);
        let result = run(&mut kv, KvOp::Put { key, value: b("v") });
        assert!(matches!(result, KvResult::Invalid(reason) if reason.contains("larger than")));
        assert!(kv.is_empty());
    }

    #[test]
    fn a_get_logged_as_a_command_is_answered_and_a_write_is_no_query() {
        let mut kv = KvStateMachine::new();
        run(
            &mut kv,
            KvOp::Put {
                key: b("a"),
                value: b("1"),
            },
        );
        let get = KvOp::Get { key: b("a") }.encode();
        let output = KvResult::decode(Bytes::from(kv.apply(LogIndex(2), &get))).unwrap();
        assert_eq!(output, KvResult::Value(Some(b("1"))));
        let delete = KvOp::Delete { key: b("a") }.encode();
        let output = KvResult::decode(Bytes::from(kv.query(&delete))).unwrap();
        assert_eq!(
            output,
            KvResult::Invalid("a delete changes the map: not a query".into())
        );
        assert_eq!(kv.len(), 1);
        let key = Bytes::from(vec![b'x'; KV_KEY_BYTES_MAX + 1]);
        let result = run(&mut kv, KvOp::Get { key });
        assert!(matches!(result, KvResult::Invalid(reason) if reason.contains("larger than")));
    }

    #[test]
    fn results_round_trip() {
        let results = [
            KvResult::Written,
            KvResult::Value(None),
            KvResult::Value(Some(b("v"))),
            KvResult::Deleted { existed: true },
            KvResult::Cas {
                swapped: false,
                current: None,
            },
            KvResult::Invalid("bad".into()),
        ];
        for result in results {
            assert_eq!(KvResult::decode(result.encode()).unwrap(), result);
        }
    }

    fn image_of(kv: &KvStateMachine) -> Vec<u8> {
        let mut out = Vec::new();
        kv.snapshot().write_to(&mut out).unwrap();
        out
    }

    fn put(kv: &mut KvStateMachine, key: &str, value: &str) {
        let op = KvOp::Put {
            key: b(key),
            value: b(value),
        };
        assert_eq!(run(kv, op), KvResult::Written);
    }

    #[test]
    fn a_snapshot_restores_the_same_map_and_its_image_is_deterministic() {
        let mut kv = KvStateMachine::new();
        for i in 0..1000 {
            put(&mut kv, &format!("key{i}"), &format!("value{i}"));
        }
        let image = image_of(&kv);
        let mut restored = KvStateMachine::new();
        put(&mut restored, "stale", "gone after the restore");
        restored.restore(&mut image.as_slice()).unwrap();
        assert_eq!(restored.len(), 1000);
        assert_eq!(restored.get_local(b"key7"), Some(&b("value7")));
        assert_eq!(restored.get_local(b"stale"), None);
        // The same contents written in another order give the same bytes.
        let mut reversed = KvStateMachine::new();
        for i in (0..1000).rev() {
            put(&mut reversed, &format!("key{i}"), &format!("value{i}"));
        }
        assert_eq!(image_of(&reversed), image);
        assert_eq!(image_of(&restored), image);
    }

    #[test]
    fn a_snapshot_does_not_change_when_later_writes_land() {
        let mut kv = KvStateMachine::new();
        put(&mut kv, "a", "1");
        put(&mut kv, "b", "2");
        let frozen = kv.snapshot();
        let mut before = Vec::new();
        frozen.write_to(&mut before).unwrap();
        put(&mut kv, "a", "changed");
        run(&mut kv, KvOp::Delete { key: b("b") });
        put(&mut kv, "c", "3");
        let mut after = Vec::new();
        frozen.write_to(&mut after).unwrap();
        assert_eq!(before, after, "the image is frozen at the snapshot");
        let mut restored = KvStateMachine::new();
        restored.restore(&mut after.as_slice()).unwrap();
        assert_eq!(restored.get_local(b"a"), Some(&b("1")));
        assert_eq!(restored.get_local(b"b"), Some(&b("2")));
        assert_eq!(restored.get_local(b"c"), None);
        assert_eq!(kv.get_local(b"a"), Some(&b("changed")));
        // Only the shards written since were copied; the others are still shared.
        let shared = kv
            .shards
            .iter()
            .filter(|shard| Arc::strong_count(shard) == 2)
            .count();
        assert!(SHARD_COUNT - 3 <= shared, "{shared} shards shared");
    }

    #[test]
    fn a_damaged_image_is_an_error_and_leaves_the_map_alone() {
        let mut kv = KvStateMachine::new();
        put(&mut kv, "a", "1");
        let image = image_of(&kv);
        let mut target = KvStateMachine::new();
        put(&mut target, "kept", "yes");
        for cut in 0..image.len() {
            let error = target.restore(&mut &image[..cut]).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
        }
        assert_eq!(target.get_local(b"kept"), Some(&b("yes")));
        let mut twice = image.clone();
        twice[0] = 2;
        twice.extend_from_slice(&image[8..]);
        let error = target.restore(&mut twice.as_slice()).unwrap_err();
        assert!(error.to_string().contains("appears twice"), "{error}");
    }
}
