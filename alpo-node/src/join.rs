//! Issue 12: a node that joins a running cluster (`alpo node --join`, [`crate::Server::join`]).
//!
//! The operator first adds the new node with `alpo member add ID PEER_ADDR,CLIENT_ADDR` (the
//! leader replicates its addresses, etcd's order), then starts it with `--join`: it asks the
//! cluster for its members and their addresses (`Op::Members`), and starts with an empty data
//! directory and an **empty bootstrap configuration** (rule M11): it never campaigns before a
//! configuration names it as a voter, and learns the cluster's state from the leader's
//! Appends or InstallSnapshot.
//!
//! The join is marked by the file `JOINED` in the data directory, holding the address book the
//! cluster gave (`address_book.rs`); every later start of that directory (with or without
//! `--join`) keeps the empty bootstrap configuration and links to those addresses until the
//! log or a snapshot tells it more.
//!
//! Refusals, each naming what and where: `--join` with a data directory that is not empty;
//! an id the cluster does not list (not added yet); a directory of another cluster (alpo-log
//! refuses its files' cluster id at open, the peers refuse the handshake); a directory whose
//! configuration in force no longer lists this node (removed: an old incarnation), at start
//! (`refuse_removed`).

use std::path::Path;

use alpo_core::{Configuration, NodeId};

use crate::address_book::AddressBook;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::member_protocol::Members;

/// The marker of a joined data directory.
pub(crate) const JOINED_FILE_NAME: &str = "JOINED";

/// Checks that `dir` is empty (or missing) for a join, naming the first file found.
pub(crate) fn check_empty(dir: &Path) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                what: format!("listing the data directory {}", dir.display()),
                source,
            });
        }
    };
    if let Some(entry) = entries.flatten().next() {
        return Err(Error::Config {
            field: "data_dir".into(),
            problem: format!(
                "{} is not empty (it holds {}): a node joins with an empty data directory; \
                 restart an existing node without --join, or wipe the directory and join under \
                 a new id",
                dir.display(),
                entry.file_name().to_string_lossy()
            ),
        });
    }
    Ok(())
}

/// The peers of `config` for a join, from the cluster's answer to `Op::Members`: every member
/// but this node, at the peer and client addresses the cluster gave. Refuses an id the
/// cluster does not list, and a member listed without addresses.
pub(crate) fn peers_from_members(
    config: &NodeConfig,
    members: &Members,
) -> Result<Vec<crate::config::PeerConfig>, Error> {
    let me = config.node_id();
    let listed: Vec<String> = members.members.iter().map(|m| m.id.to_string()).collect();
    if !members.members.iter().any(|m| m.id == me) {
        return Err(Error::Config {
            field: "id".into(),
            problem: format!(
                "node {me} is not a member of the cluster (members {}): add it first with \
                 `alpo member add {me} {},{}`",
                listed.join(","),
                config.peer_addr,
                config.client_addr
            ),
        });
    }
    let mut peers = Vec::new();
    for member in members.members.iter().filter(|m| m.id != me) {
        let parse = |text: &str, what: &str| {
            text.parse().map_err(|_| Error::Config {
                field: "join".into(),
                problem: format!("the cluster gave member {} {what} {text:?}", member.id),
            })
        };
        peers.push(crate::config::PeerConfig {
            id: member.id.0,
            peer_addr: parse(&member.peer_addr, "the peer address")?,
            client_addr: parse(&member.client_addr, "the client address")?,
        });
    }
    Ok(peers)
}

/// Marks `config.data_dir` joined, with `config`'s peers as the addresses to start from.
pub(crate) fn mark_joined(config: &NodeConfig) -> Result<(), Error> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: format!("creating the data directory {}", dir.display()),
        source,
    })?;
    let book = AddressBook::from_config(config);
    let path = dir.join(JOINED_FILE_NAME);
    let temporary = dir.join(format!("{JOINED_FILE_NAME}.tmp"));
    let write = || -> std::io::Result<()> {
        std::fs::write(&temporary, book.encode())?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// The address book of a joined directory, `None` if `dir` was not joined.
pub(crate) fn joined_book(dir: &Path) -> Result<Option<AddressBook>, Error> {
    let path = dir.join(JOINED_FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    };
    AddressBook::decode(&bytes)
        .map(Some)
        .map_err(|error| Error::Corrupt {
            what: format!("{}: {error}", path.display()),
        })
}

/// `config` with the joined directory's peers added (those its flags lack).
pub(crate) fn with_joined_peers(mut config: NodeConfig, book: &AddressBook) -> NodeConfig {
    for peer in book.peers_but(config.node_id()) {
        if !config.peers.iter().any(|p| p.id == peer.id) {
            config.peers.push(peer);
        }
    }
    config
}

/// A node whose directory's configuration in force does not list it was removed (an old
/// incarnation): it must not start. A joined directory that has not seen its own add yet has
/// an empty configuration, or one before its add (`joined`: then not refused).
pub(crate) fn refuse_removed(
    config: &NodeConfig,
    configuration: Configuration,
    joined: bool,
) -> Result<(), Error> {
    let me = NodeId(config.id);
    if joined || configuration.is_empty() || configuration.contains(me) {
        return Ok(());
    }
    Err(Error::Config {
        field: "id".into(),
        problem: format!(
            "the data directory {} shows node {me} removed from cluster {} (configuration in \
             force: {configuration}); a removed node does not come back: wipe the directory \
             and join under a new id (`alpo member add`, then `alpo node --join`)",
            config.data_dir.display(),
            config.cluster_id
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member_protocol::{MemberInfo, MemberRole};

    #[test]
    fn a_join_needs_an_empty_directory_and_the_cluster_listing_this_node() {
        let dir = tempfile::tempdir().unwrap();
        check_empty(&dir.path().join("missing")).unwrap();
        check_empty(dir.path()).unwrap();
        std::fs::write(dir.path().join("x"), b"").unwrap();
        let error = check_empty(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("not empty") && error.contains('x'),
            "{error}"
        );

        let peers: Vec<crate::config::PeerConfig> = (1..=2)
            .map(|id: u16| crate::config::PeerConfig {
                id: u64::from(id),
                peer_addr: ([127, 0, 0, 1], 7100 + id).into(),
                client_addr: ([127, 0, 0, 1], 7200 + id).into(),
            })
            .collect();
        let config = NodeConfig::for_members(3, dir.path(), &peers).remove(0);
        let info = |id: u64| MemberInfo {
            id: NodeId(id),
            role: MemberRole::Voter,
            match_index: None,
            client_addr: format!("127.0.0.1:{}", 7200 + id),
            peer_addr: format!("127.0.0.1:{}", 7100 + id),
        };
        let mut members = Members {
            leader: None,
            last_index: alpo_core::LogIndex(0),
            members: vec![info(2)],
        };
        let error = peers_from_members(&config, &members)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a member"), "{error}");
        members.members.push(info(1));
        let found = peers_from_members(&config, &members).unwrap();
        assert_eq!(found, vec![peers[1].clone()]);

        let mut joined = config.clone();
        joined.data_dir = dir.path().join("joined");
        joined.peers = found;
        assert_eq!(joined_book(&joined.data_dir).unwrap(), None);
        mark_joined(&joined).unwrap();
        let book = joined_book(&joined.data_dir).unwrap().unwrap();
        let mut bare = joined.clone();
        bare.peers.clear();
        assert_eq!(with_joined_peers(bare, &book).peers, joined.peers);
        std::fs::write(joined.data_dir.join(JOINED_FILE_NAME), b"\x07").unwrap();
        assert!(joined_book(&joined.data_dir).is_err());

        let without = Configuration::new(&[NodeId(2)], &[]).unwrap();
        let error = refuse_removed(&config, without, false).unwrap_err();
        assert!(error.to_string().contains("removed"), "{error}");
        refuse_removed(&config, without, true).unwrap();
        refuse_removed(&config, Configuration::default(), false).unwrap();
    }
}
