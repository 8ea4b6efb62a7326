//! Issue 12: the address book, every node id this node knows with its peer and client
//! addresses, so the transport can link to the members of any configuration.
//!
//! Where addresses come from: this node's own flags (`id`, `peers`), the annex of every `Config`
//! entry (`alpo_core::Node::set_config_annex`: the leader puts its whole book there, so the
//! entry that adds a member carries that member's addresses), the annex of a snapshot's
//! membership bytes (the book when it was taken), and, for a node started with `--join`, the
//! addresses the cluster gave it (`join.rs`). docs/formats.md, "Address book", gives the bytes.
//!
//! Invariants: entries are never removed, so the book also remembers every id the cluster
//! has used, members removed since included (an id is never reused: `member add` refuses an
//! id the book knows that is not in the configuration); an id's addresses are those it was
//! added with (a later source never changes them, it only adds ids); decoding never panics and
//! names what is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use alpo_core::NodeId;

use crate::config::{NodeConfig, PeerConfig};
use crate::wire::{DecodeError, Reader, Writer};

/// The first byte of an encoded book (its format version).
const BOOK_VERSION: u8 = 1;

/// A member's two addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Addresses {
    /// Where it listens for other nodes.
    pub(crate) peer_addr: SocketAddr,
    /// Where it listens for clients.
    pub(crate) client_addr: SocketAddr,
}

/// Every node id known, with its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AddressBook {
    entries: BTreeMap<NodeId, Addresses>,
}

impl AddressBook {
    /// This node and its `--peer` flags.
    pub(crate) fn from_config(config: &NodeConfig) -> AddressBook {
        let mut book = AddressBook::default();
        book.insert(
            config.node_id(),
            Addresses {
                peer_addr: config.peer_addr,
                client_addr: config.client_addr,
            },
        );
        for peer in &config.peers {
            book.insert(
                NodeId(peer.id),
                Addresses {
                    peer_addr: peer.peer_addr,
                    client_addr: peer.client_addr,
                },
            );
        }
        book
    }

    /// Adds `id` unless it is known (its first addresses stay). Whether it was new.
    pub(crate) fn insert(&mut self, id: NodeId, addresses: Addresses) -> bool {
        if self.entries.contains_key(&id) {
            return false;
        }
        self.entries.insert(id, addresses);
        true
    }

    /// Adds every id of `other` this book lacks. Whether any was new.
    pub(crate) fn merge(&mut self, other: &AddressBook) -> bool {
        let mut changed = false;
        for (id, addresses) in &other.entries {
            changed |= self.insert(*id, *addresses);
        }
        changed
    }

    /// The addresses of `id`, if known.
    pub(crate) fn get(&self, id: NodeId) -> Option<Addresses> {
        self.entries.get(&id).copied()
    }

    /// The id already using `addr` as a peer or client address, if any.
    pub(crate) fn user_of(&self, addr: SocketAddr) -> Option<NodeId> {
        self.entries
            .iter()
            .find(|(_, a)| a.peer_addr == addr || a.client_addr == addr)
            .map(|(id, _)| *id)
    }

    /// Every entry but `me`, as `PeerConfig`s.
    pub(crate) fn peers_but(&self, me: NodeId) -> Vec<PeerConfig> {
        let others = self.entries.iter().filter(|(id, _)| **id != me);
        others
            .map(|(id, a)| PeerConfig {
                id: id.0,
                peer_addr: a.peer_addr,
                client_addr: a.client_addr,
            })
            .collect()
    }

    /// The book's bytes (docs/formats.md, "Address book").
    pub(crate) fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        w.u8(BOOK_VERSION);
        #[allow(
            clippy::cast_possible_truncation,
            reason = "ids are few (checked below)"
        )]
        w.u32(self.entries.len() as u32);
        for (id, a) in &self.entries {
            w.u64(id.0)
                .bytes(a.peer_addr.to_string().as_bytes())
                .bytes(a.client_addr.to_string().as_bytes());
        }
        w.finish()
    }

    /// Reads a book; an empty slice is an empty book (entries and snapshots written before
    /// issue 12's annex carry none).
    pub(crate) fn decode(bytes: &[u8]) -> Result<AddressBook, DecodeError> {
        let mut book = AddressBook::default();
        if bytes.is_empty() {
            return Ok(book);
        }
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        let version = r.u8("address book version")?;
        if version != BOOK_VERSION {
            return Err(r.unknown_tag("address book version", version));
        }
        let count = r.u32("address book count")?;
        for _ in 0..count {
            let id = NodeId(r.u64("address book id")?);
            let peer_addr = r.socket_addr("address book peer address")?;
            let client_addr = r.socket_addr("address book client address")?;
            book.insert(
                id,
                Addresses {
                    peer_addr,
                    client_addr,
                },
            );
        }
        r.finish("address book")?;
        Ok(book)
    }

    /// The book in the annex of a `Config` entry's payload or a snapshot's membership bytes
    /// (after `Configuration::encode`); `None` (logged) if the annex does not decode.
    pub(crate) fn of_annex(payload: &[u8], what: &str) -> Option<AddressBook> {
        let annex = match alpo_core::Configuration::decode_with_annex(payload) {
            Ok((_, annex)) => annex,
            Err(problem) => {
                tracing::warn!(
                    what,
                    problem,
                    "configuration unreadable; its addresses ignored"
                );
                return None;
            }
        };
        match AddressBook::decode(annex) {
            Ok(book) => Some(book),
            Err(error) => {
                tracing::warn!(what, %error, "address book unreadable; its addresses ignored");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(port: u16) -> Addresses {
        Addresses {
            peer_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            client_addr: SocketAddr::from(([127, 0, 0, 1], port + 100)),
        }
    }

    #[test]
    fn a_book_round_trips_keeps_first_addresses_and_refuses_garbage() {
        let mut book = AddressBook::default();
        assert!(book.insert(NodeId(2), addrs(7002)));
        assert!(book.insert(NodeId(1), addrs(7001)));
        assert!(!book.insert(NodeId(1), addrs(7009)), "first addresses stay");
        assert_eq!(book.get(NodeId(1)), Some(addrs(7001)));
        let bytes = book.encode();
        assert_eq!(AddressBook::decode(&bytes), Ok(book.clone()));
        assert_eq!(AddressBook::decode(&[]), Ok(AddressBook::default()));
        assert_eq!(book.user_of(addrs(7002).client_addr), Some(NodeId(2)));
        assert_eq!(book.peers_but(NodeId(1)).len(), 1);
        for cut in 1..bytes.len() {
            assert!(AddressBook::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_version = bytes.to_vec();
        bad_version[0] = 9;
        assert!(AddressBook::decode(&bad_version).is_err());
        let configuration =
            alpo_core::Configuration::new(&[NodeId(1)], &[NodeId(2)]).expect("valid");
        let mut payload = configuration.encode().to_vec();
        payload.extend_from_slice(&bytes);
        assert_eq!(AddressBook::of_annex(&payload, "test"), Some(book.clone()));
        let mut other = AddressBook::default();
        other.insert(NodeId(3), addrs(7003));
        assert!(other.merge(&book));
        assert!(!other.merge(&book));
        assert_eq!(other.peers_but(NodeId(3)).len(), 2);
    }
}
