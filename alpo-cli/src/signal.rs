//! How a long-running command (`alpo node`, `alpo dev`) learns that it should stop: Ctrl-C
//! (SIGINT) or SIGTERM, delivered as one message on a channel.
//!
//! Invariants: the handler is installed once per process (the `ctrlc` crate refuses a second
//! one); it never blocks, so a signal that arrives while nobody waits is kept, and later ones
//! are dropped.

use std::sync::mpsc::Receiver;

use anyhow::Context;

/// A channel that receives once on Ctrl-C (SIGINT) or SIGTERM.
pub(crate) fn stop_signal() -> anyhow::Result<Receiver<()>> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    ctrlc::set_handler(move || {
        let _ = sender.try_send(());
    })
    .context("installing the Ctrl-C handler")?;
    Ok(receiver)
}
