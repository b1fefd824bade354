//! The two hand-offs between callers and a connection's driver task: the request queue and the
//! reply slot.
//!
//! They do what tokio's unbounded `mpsc` and `oneshot` channels did here, for less: every call
//! passes through both, and those channels' general machinery (block lists, semaphores,
//! cooperative budgeting, several atomic state changes per poll) was a fifth of a call's
//! instructions. Here each operation takes one uncontended lock, the driver takes the whole queue
//! in one swap, and a queued request wakes the driver only when it waits.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Locks, ignoring poisoning: the state is a few plain fields, valid whatever panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stores `cx`'s waker unless the same task's is already there.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

struct Queue<T> {
    inner: Mutex<QueueState<T>>,
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// The driver's waker, while it waits for requests.
    waker: Option<Waker>,
    /// Live senders: the driver learns that every handle is gone when this drops to 0.
    senders: usize,
    /// The driver stopped taking requests.
    closed: bool,
}

/// A new request queue.
pub(crate) fn queue<T>() -> (QueueTx<T>, QueueRx<T>) {
    let queue = Arc::new(Queue {
        inner: Mutex::new(QueueState {
            items: VecDeque::new(),
            waker: None,
            senders: 1,
            closed: false,
        }),
    });
    (
        QueueTx {
            queue: Arc::clone(&queue),
        },
        QueueRx { queue },
    )
}

/// The callers' end of the request queue.
pub(crate) struct QueueTx<T> {
    queue: Arc<Queue<T>>,
}

impl<T> QueueTx<T> {
    /// Queues `item`, or gives it back when the driver no longer takes requests.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut q = lock(&self.queue.inner);
            if q.closed {
                return Err(item);
            }
            q.items.push_back(item);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        lock(&self.queue.inner).senders += 1;
        QueueTx {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl<T> Drop for QueueTx<T> {
    fn drop(&mut self) {
        let waker = {
            let mut q = lock(&self.queue.inner);
            q.senders -= 1;
            if q.senders > 0 {
                return;
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for QueueTx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueTx").finish_non_exhaustive()
    }
}

/// The driver's end of the request queue.
pub(crate) struct QueueRx<T> {
    queue: Arc<Queue<T>>,
}

impl<T> QueueRx<T> {
    /// Moves every queued request to the back of `into`. True while senders remain (or requests
    /// were moved); false once every sender is gone and nothing is left.
    pub(crate) fn drain_into(&mut self, into: &mut VecDeque<T>) -> bool {
        let mut q = lock(&self.queue.inner);
        if q.items.is_empty() {
            return q.senders > 0;
        }
        if into.is_empty() {
            // The common case: the two buffers trade places, nothing is moved.
            std::mem::swap(into, &mut q.items);
        } else {
            into.append(&mut q.items);
        }
        true
    }

    /// Waits until a request is queued (true) or every sender is gone with nothing queued
    /// (false). Cancel-safe: it takes nothing out of the queue.
    pub(crate) fn ready(&mut self) -> Ready<'_, T> {
        Ready { rx: self }
    }

    /// Requests queued right now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.queue.inner).items.len()
    }

    /// Stops taking requests: later sends fail; what is queued can still be drained.
    pub(crate) fn close(&mut self) {
        lock(&self.queue.inner).closed = true;
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        let items = {
            let mut q = lock(&self.queue.inner);
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        // Dropped outside the lock: a request's drop tells its caller.
        drop(items);
    }
}

impl<T> std::fmt::Debug for QueueRx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueRx").finish_non_exhaustive()
    }
}

/// The future of [`QueueRx::ready`].
pub(crate) struct Ready<'a, T> {
    rx: &'a mut QueueRx<T>,
}

impl<T> Future for Ready<'_, T> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut q = lock(&self.rx.queue.inner);
        if !q.items.is_empty() {
            return Poll::Ready(true);
        }
        if q.senders == 0 {
            return Poll::Ready(false);
        }
        register(&mut q.waker, cx);
        Poll::Pending
    }
}

struct Slot<T> {
    state: Mutex<SlotState<T>>,
    /// The receiver is gone: nobody waits for the value.
    abandoned: AtomicBool,
}

struct SlotState<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The sender was dropped without sending.
    dropped: bool,
}

/// A new reply slot: one value from the driver to one caller.
pub(crate) fn slot<T>() -> (SlotTx<T>, SlotRx<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(SlotState {
            value: None,
            waker: None,
            dropped: false,
        }),
        abandoned: AtomicBool::new(false),
    });
    (
        SlotTx {
            slot: Some(Arc::clone(&slot)),
        },
        SlotRx { slot },
    )
}

/// The driver's end of a reply slot.
pub(crate) struct SlotTx<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> SlotTx<T> {
    /// Hands the value over and wakes the caller; gives it back when the caller is gone.
    pub(crate) fn send(mut self, value: T) -> Result<(), T> {
        let Some(slot) = self.slot.take() else {
            return Err(value);
        };
        if slot.abandoned.load(Ordering::Acquire) {
            return Err(value);
        }
        let waker = {
            let mut s = lock(&slot.state);
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether the caller stopped waiting (dropped its future).
    pub(crate) fn is_closed(&self) -> bool {
        self.slot
            .as_ref()
            .is_none_or(|s| s.abandoned.load(Ordering::Acquire))
    }
}

impl<T> Drop for SlotTx<T> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let waker = {
            let mut s = lock(&slot.state);
            s.dropped = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for SlotTx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotTx")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The caller's end of a reply slot: a future of the value, or `Err(())` when the driver dropped
/// the slot without answering.
pub(crate) struct SlotRx<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Future for SlotRx<T> {
    type Output = Result<T, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, ()>> {
        let mut s = lock(&self.slot.state);
        if let Some(value) = s.value.take() {
            return Poll::Ready(Ok(value));
        }
        if s.dropped {
            return Poll::Ready(Err(()));
        }
        register(&mut s.waker, cx);
        Poll::Pending
    }
}

impl<T> Drop for SlotRx<T> {
    fn drop(&mut self) {
        self.slot.abandoned.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_delivers_once_and_reports_a_dropped_sender() {
        let (tx, rx) = slot::<u32>();
        assert!(!tx.is_closed());
        let waiter = tokio::spawn(rx);
        tokio::task::yield_now().await;
        tx.send(7).expect("the receiver waits");
        assert_eq!(waiter.await.expect("task"), Ok(7));

        let (tx, rx) = slot::<u32>();
        drop(tx);
        assert_eq!(rx.await, Err(()));
    }

    #[tokio::test]
    async fn a_slot_whose_receiver_left_refuses_the_value() {
        let (tx, rx) = slot::<String>();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send("late".into()), Err("late".to_string()));
    }

    #[tokio::test]
    async fn the_queue_wakes_its_driver_drains_whole_and_ends_with_its_senders() {
        let (tx, mut rx) = queue::<u32>();
        let tx2 = tx.clone();
        let mut got = VecDeque::new();
        assert!(rx.drain_into(&mut got));
        assert!(got.is_empty());
        let driver = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = VecDeque::new();
            while rx.ready().await {
                assert!(rx.len() > 0);
                rx.drain_into(&mut buf);
                seen.extend(buf.drain(..));
            }
            assert!(!rx.drain_into(&mut buf));
            seen
        });
        for i in 0..100 {
            tx.send(i).expect("open");
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        tx2.send(100).expect("open");
        drop(tx);
        drop(tx2);
        let seen = driver.await.expect("driver");
        assert_eq!(seen, (0..=100).collect::<Vec<_>>());
    }

    #[test]
    fn a_closed_queue_gives_requests_back() {
        let (tx, mut rx) = queue::<u32>();
        tx.send(1).expect("open");
        rx.close();
        assert_eq!(tx.send(2), Err(2));
        let mut got = VecDeque::new();
        assert!(rx.drain_into(&mut got));
        assert_eq!(got, VecDeque::from([1]));
    }
}
