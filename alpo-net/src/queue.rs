//! A bounded queue whose producer never blocks: when the queue is full, the oldest item is
//! dropped to make room (and the caller counts it).
//!
//! Invariant: `push` returns after a bounded number of non-blocking channel operations, so the
//! node's event loop never waits on a slow or dead peer. The producer keeps a receiver clone only
//! to discard the oldest item; the consumer thread owns the real receiving end.

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};

/// How often `push` tries to make room before it drops the new item instead (other producers or
/// the consumer may race it; two or three rounds settle any real race).
const PUSH_ATTEMPT_COUNT_MAX: u32 = 4;

/// The producer side.
#[derive(Debug, Clone)]
pub(crate) struct DropOldestSender<T> {
    sender: Sender<T>,
    discard: Receiver<T>,
}

/// What `push` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued without dropping anything.
    Queued,
    /// Queued after dropping this many items (the oldest, or in a lost race the new one).
    QueuedDropping(u64),
    /// The consumer is gone; the item was dropped.
    Disconnected,
}

/// A queue of `capacity` items: the producer and the consumer's receiver.
pub(crate) fn drop_oldest_queue<T>(capacity: usize) -> (DropOldestSender<T>, Receiver<T>) {
    let (sender, receiver) = bounded(capacity);
    let producer = DropOldestSender {
        sender,
        discard: receiver.clone(),
    };
    (producer, receiver)
}

impl<T> DropOldestSender<T> {
    /// Queues `item`, dropping the oldest queued item if the queue is full. Never blocks.
    #[cfg(test)]
    pub(crate) fn push(&self, item: T) -> Pushed {
        self.push_with(item, |_| {})
    }

    /// Like `push`, and shows each dropped item to `on_drop` first.
    pub(crate) fn push_with(&self, item: T, mut on_drop: impl FnMut(&T)) -> Pushed {
        let mut item = item;
        let mut dropped = 0;
        for _ in 0..PUSH_ATTEMPT_COUNT_MAX {
            match self.sender.try_send(item) {
                Ok(()) if dropped == 0 => return Pushed::Queued,
                Ok(()) => return Pushed::QueuedDropping(dropped),
                Err(TrySendError::Disconnected(_)) => return Pushed::Disconnected,
                Err(TrySendError::Full(back)) => {
                    item = back;
                    match self.discard.try_recv() {
                        Ok(oldest) => {
                            on_drop(&oldest);
                            dropped += 1;
                        }
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => return Pushed::Disconnected,
                    }
                }
            }
        }
        // Lost every race: drop the new item rather than wait.
        on_drop(&item);
        Pushed::QueuedDropping(dropped + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_the_oldest() {
        let (producer, consumer) = drop_oldest_queue(2);
        assert_eq!(producer.push(1), Pushed::Queued);
        assert_eq!(producer.push(2), Pushed::Queued);
        assert_eq!(producer.push(3), Pushed::QueuedDropping(1));
        assert_eq!(consumer.try_recv(), Ok(2));
        assert_eq!(consumer.try_recv(), Ok(3));
        assert!(consumer.try_recv().is_err());
    }

    #[test]
    fn push_with_shows_each_dropped_item() {
        let (producer, consumer) = drop_oldest_queue(1);
        let mut dropped = Vec::new();
        assert_eq!(
            producer.push_with('a', |item| dropped.push(*item)),
            Pushed::Queued
        );
        let pushed = producer.push_with('b', |item| dropped.push(*item));
        assert_eq!(pushed, Pushed::QueuedDropping(1));
        assert_eq!(dropped, vec!['a']);
        assert_eq!(consumer.try_recv(), Ok('b'));
    }
}
