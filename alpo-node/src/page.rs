//! The live cluster page served at `/` of the metrics address (issue 15): one self-contained
//! HTML file (inline CSS and JS, no external assets, no build step) that polls `/cluster.json`
//! once a second and draws each member's role and term, its log as a bar (first, applied,
//! committed, durable, last), each follower's replication lag, the leader changes it saw on a
//! timeline, and the commit throughput.
//!
//! Invariant: the page only reads; the DOM carries what tests check (`#leader` holds the
//! current leader's id, each member's card has `data-role`).

/// The page's HTML.
pub(crate) const PAGE: &str = include_str!("page.html");
