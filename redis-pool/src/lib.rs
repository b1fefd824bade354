//! A generic async pool of reusable resources, with a hard cap on how many exist.
//!
//! The pool knows nothing of Redis (or of any protocol): a [`Manager`] says how to create a
//! resource, check its health, recycle it and tell whether it is broken. `redis-conn` provides the
//! Redis manager; the pool itself only manages lifetimes, fairness and bounds.
//!
//! # What it guarantees
//! - **A hard cap**: at most `max_size` resources exist at any time, those being created
//!   included, so concurrent dials never exceed it and file descriptors never run out.
//! - **Fairness**: callers that have to wait are served first come, first served.
//! - **Bounded waits**: [`Pool::get`] gives up at the acquire timeout with
//!   [`PoolError::Timeout`], which says which phase took too long (waiting, creating, checking).
//! - **Health**: a resource idle longer than a threshold is checked before it is handed out; idle
//!   resources are checked in the background; broken, expired or failed ones are dropped and
//!   replaced; a lease marked broken by its user never goes back.
//! - **Cancel safety**: a caller that gives up while waiting frees its place; a lease dropped
//!   anywhere returns its resource (or its slot).
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use redis_pool::{Manager, Pool, PoolConfig};
//!
//! struct Numbers;
//!
//! impl Manager for Numbers {
//!     type Resource = u32;
//!     type Error = Infallible;
//!     async fn create(&self) -> Result<u32, Infallible> { Ok(7) }
//!     async fn check(&self, _n: &mut u32) -> Result<(), Infallible> { Ok(()) }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pool = Pool::new(Numbers, PoolConfig::default().max_size(2));
//! let lease = pool.get().await.unwrap();
//! assert_eq!(*lease, 7);
//! assert_eq!(pool.status().in_use, 1);
//! drop(lease);
//! assert_eq!(pool.status().idle, 1);
//! # });
//! ```

#![deny(missing_docs)]

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

/// How to create, check and recycle one kind of resource.
pub trait Manager: Send + Sync + 'static {
    /// What the pool holds.
    type Resource: Send + 'static;
    /// What creating or checking can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates a resource.
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Checks that an idle resource still works (for a connection: a round trip).
    fn check(
        &self,
        resource: &mut Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether a returned resource must be recycled (by [`Manager::recycle`]) before reuse.
    fn needs_recycle(&self, _resource: &Self::Resource) -> bool {
        false
    }

    /// Resets a returned resource's state so that the next user starts clean. Runs in the
    /// background after the lease is dropped; the resource is only reused once it succeeds.
    fn recycle(
        &self,
        _resource: &mut Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// A cheap, synchronous test: true when the resource is known to be unusable (its connection
    /// closed). Checked on return and before every checkout.
    fn is_broken(&self, _resource: &Self::Resource) -> bool {
        false
    }
}

/// Pool settings. Every setter documents its default.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    max_size: usize,
    min_idle: usize,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    check_after_idle: Duration,
    check_interval: Option<Duration>,
    recycle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 10,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(1),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            check_after_idle: Duration::from_secs(5),
            check_interval: Some(Duration::from_secs(30)),
            recycle_timeout: Duration::from_secs(1),
        }
    }
}

impl PoolConfig {
    /// Most resources that may exist at once, those being created included. Defaults to 10.
    ///
    /// # Panics
    /// When `n` is 0.
    #[must_use]
    pub fn max_size(mut self, n: usize) -> Self {
        assert!(n > 0, "a pool needs room for at least one resource");
        self.max_size = n;
        self
    }

    /// Idle resources kept ready (created at start and replenished). Defaults to 0; at most
    /// `max_size`.
    #[must_use]
    pub fn min_idle(mut self, n: usize) -> Self {
        self.min_idle = n;
        self
    }

    /// How long [`Pool::get`] may take in all (waiting, creating, checking). Defaults to 1 s.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Idle resources beyond `min_idle` are closed after this long unused. Defaults to 10 min.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Resources are closed after this long in all, minus up to 10% random jitter so that they do
    /// not all expire together. Defaults to 30 min.
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// A resource idle at least this long is checked before it is handed out. Defaults to 5 s;
    /// `Duration::ZERO` checks on every checkout.
    #[must_use]
    pub fn check_after_idle(mut self, idle: Duration) -> Self {
        self.check_after_idle = idle;
        self
    }

    /// Idle resources are checked in the background this often. Defaults to 30 s.
    #[must_use]
    pub fn check_interval(mut self, interval: Option<Duration>) -> Self {
        self.check_interval = interval;
        self
    }

    /// Bound on [`Manager::recycle`]. Defaults to 1 s.
    #[must_use]
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.recycle_timeout = timeout;
        self
    }
}

/// Reading the settings back, each getter named as its setter (a layer above holds a
/// `PoolConfig` and shows what it holds).
impl PoolConfig {
    /// The configured [`PoolConfig::max_size`].
    #[must_use]
    pub fn get_max_size(&self) -> usize {
        self.max_size
    }

    /// The configured [`PoolConfig::min_idle`] (a pool keeps at most `max_size`).
    #[must_use]
    pub fn get_min_idle(&self) -> usize {
        self.min_idle
    }

    /// The configured [`PoolConfig::acquire_timeout`].
    #[must_use]
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The configured [`PoolConfig::idle_timeout`].
    #[must_use]
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The configured [`PoolConfig::max_lifetime`].
    #[must_use]
    pub fn get_max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// The configured [`PoolConfig::check_after_idle`].
    #[must_use]
    pub fn get_check_after_idle(&self) -> Duration {
        self.check_after_idle
    }

    /// The configured [`PoolConfig::check_interval`].
    #[must_use]
    pub fn get_check_interval(&self) -> Option<Duration> {
        self.check_interval
    }

    /// The configured [`PoolConfig::recycle_timeout`].
    #[must_use]
    pub fn get_recycle_timeout(&self) -> Duration {
        self.recycle_timeout
    }
}

/// The phase of [`Pool::get`] that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Waiting for a resource to be returned (the pool was at `max_size`).
    Wait,
    /// Creating a new resource.
    Create,
    /// Checking an idle resource's health.
    Check,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Wait => "waiting for a free resource",
            TimeoutPhase::Create => "creating a resource",
            TimeoutPhase::Check => "checking a resource's health",
        })
    }
}

/// Why [`Pool::get`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E: std::error::Error + 'static> {
    /// The acquire timeout passed.
    #[error("no resource within {timeout:?}: timed out while {phase}")]
    Timeout {
        /// What the pool was doing.
        phase: TimeoutPhase,
        /// The acquire timeout in force.
        timeout: Duration,
    },
    /// The manager failed to create a resource.
    #[error("creating a resource failed: {0}")]
    Backend(#[source] E),
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
}

/// Why a resource was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Its user marked it broken, or the manager found it broken.
    Broken,
    /// Unused longer than the idle timeout.
    IdleTimeout,
    /// Older than the maximum lifetime.
    MaxLifetime,
    /// It failed a health check.
    HealthCheck,
    /// Recycling it failed.
    RecycleFailed,
    /// The pool was closed.
    PoolClosed,
}

/// Something that happened in a pool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A resource was created.
    Created,
    /// A resource was closed.
    Closed(CloseReason),
    /// A health check failed (the resource was then closed).
    HealthCheckFailed(String),
    /// A caller had to wait: every resource was in use and the pool at `max_size`.
    Exhausted {
        /// Callers waiting, this one included.
        waiting: usize,
    },
}

/// A snapshot of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The cap.
    pub max_size: usize,
    /// Resources that exist, those being created included.
    pub size: usize,
    /// Resources ready to be handed out.
    pub idle: usize,
    /// Resources leased (or being checked, created or recycled).
    pub in_use: usize,
    /// Callers waiting for a resource.
    pub waiting: usize,
}

/// A resource and its dates.
struct Entry<R> {
    resource: R,
    expires: Option<Instant>,
    /// Last returned by a user (for the idle timeout).
    idle_since: Instant,
    /// Last known to work: returned by a user, or passed a health check.
    checked_at: Instant,
}

/// What a waiter is given: a resource, or the right to create one (a reserved slot).
enum Handoff<R> {
    Resource(Entry<R>),
    Create,
}

/// A handoff in transit to a waiter. If the waiter is gone by the time it would take it (its
/// future dropped after the send), dropping the delivery gives the resource or slot back.
struct Delivery<M: Manager> {
    handoff: Option<Handoff<M::Resource>>,
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Delivery<M> {
    fn take(mut self) -> Option<Handoff<M::Resource>> {
        self.handoff.take()
    }
}

impl<M: Manager> Drop for Delivery<M> {
    fn drop(&mut self) {
        match self.handoff.take() {
            Some(Handoff::Resource(entry)) => self.inner.put_back(entry),
            Some(Handoff::Create) => self.inner.release_slot(),
            None => {}
        }
    }
}

struct Waiter<M: Manager> {
    id: u64,
    tx: oneshot::Sender<Delivery<M>>,
}

struct State<M: Manager> {
    idle: VecDeque<Entry<M::Resource>>,
    /// Resources that exist or are being created.
    size: usize,
    /// Resources (or slots) out of the idle list.
    in_use: usize,
    waiters: VecDeque<Waiter<M>>,
    next_waiter: u64,
    closed: bool,
}

struct Inner<M: Manager> {
    manager: M,
    config: PoolConfig,
    state: Mutex<State<M>>,
    events: broadcast::Sender<PoolEvent>,
    /// Itself, for deliveries (set right after creation).
    this: Weak<Inner<M>>,
}

/// A pool of resources made by a [`Manager`]. Cheap to clone; clones share the pool.
pub struct Pool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish()
    }
}

impl<M: Manager> Inner<M> {
    fn lock(&self) -> MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: PoolEvent) {
        let _ = self.events.send(event);
    }

    fn expiry(&self) -> Option<Instant> {
        self.config.max_lifetime.map(|life| {
            let jitter = life.mul_f64(rand::random::<f64>() * 0.1);
            Instant::now() + life - jitter
        })
    }

    /// Gives an entry back: to the first live waiter, else to the idle list.
    fn put_back(&self, mut entry: Entry<M::Resource>) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let mut st = self.lock();
        if st.closed {
            st.size -= 1;
            st.in_use -= 1;
            drop(st);
            self.emit(PoolEvent::Closed(CloseReason::PoolClosed));
            return;
        }
        while let Some(waiter) = st.waiters.pop_front() {
            let delivery = Delivery {
                handoff: Some(Handoff::Resource(entry)),
                inner: Arc::clone(&this),
            };
            match waiter.tx.send(delivery) {
                // Stays counted as in use: the waiter has it now.
                Ok(()) => return,
                Err(back) => match back.take() {
                    Some(Handoff::Resource(e)) => entry = e,
                    _ => return,
                },
            }
        }
        st.in_use -= 1;
        st.idle.push_back(entry);
    }

    /// Frees one slot (a resource closed or a creation that failed) and, when someone waits,
    /// hands them the right to create in its place.
    fn release_slot(&self) {
        let this = self.this.upgrade();
        let mut st = self.lock();
        if let Some(this) = this {
            while let Some(waiter) = st.waiters.pop_front() {
                let delivery = Delivery {
                    handoff: Some(Handoff::Create),
                    inner: Arc::clone(&this),
                };
                match waiter.tx.send(delivery) {
                    Ok(()) => return,
                    Err(back) => {
                        // Defuse it: the slot is still ours to pass on.
                        let _ = back.take();
                    }
                }
            }
        }
        st.size -= 1;
        st.in_use -= 1;
    }

    fn close_entry(&self, entry: Entry<M::Resource>, reason: CloseReason) {
        drop(entry);
        self.release_slot();
        self.emit(PoolEvent::Closed(reason));
    }
}

/// Returns a reserved slot if creation is abandoned (an error, or the caller's future dropped).
struct SlotGuard<'a, M: Manager> {
    inner: &'a Inner<M>,
    armed: bool,
}

impl<M: Manager> Drop for SlotGuard<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.release_slot();
        }
    }
}

impl<M: Manager> Pool<M> {
    /// A pool; starts its background maintenance (idle timeout, lifetimes, health checks,
    /// `min_idle`) when called inside a tokio runtime.
    pub fn new(manager: M, mut config: PoolConfig) -> Pool<M> {
        config.min_idle = config.min_idle.min(config.max_size);
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new_cyclic(|this| Inner {
            this: this.clone(),
            manager,
            config,
            state: Mutex::new(State {
                idle: VecDeque::new(),
                size: 0,
                in_use: 0,
                waiters: VecDeque::new(),
                next_waiter: 0,
                closed: false,
            }),
            events,
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(maintain(Arc::downgrade(&inner)));
        }
        Pool { inner }
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.inner.manager
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// A stream of the pool's events.
    pub fn events(&self) -> broadcast::Receiver<PoolEvent> {
        self.inner.events.subscribe()
    }

    /// Sizes right now.
    pub fn status(&self) -> Status {
        let st = self.inner.lock();
        Status {
            max_size: self.inner.config.max_size,
            size: st.size,
            idle: st.idle.len(),
            in_use: st.in_use,
            waiting: st.waiters.iter().filter(|w| !w.tx.is_closed()).count(),
        }
    }

    /// Closes the pool: idle resources are closed at once, leased ones when returned, and
    /// waiting callers get [`PoolError::Closed`].
    pub fn close(&self) {
        let (idle, waiters) = {
            let mut st = self.inner.lock();
            st.closed = true;
            let idle: Vec<_> = st.idle.drain(..).collect();
            st.size -= idle.len();
            let waiters: Vec<_> = st.waiters.drain(..).collect();
            (idle, waiters)
        };
        for _ in &idle {
            self.inner.emit(PoolEvent::Closed(CloseReason::PoolClosed));
        }
        drop(idle);
        drop(waiters);
    }

    /// Leases a resource: an idle one (checked first when it has been idle a while), a new one
    /// when the pool is below `max_size`, or the next one returned, first come first served.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] at the acquire timeout (with the phase), [`PoolError::Backend`] when
    /// creation fails, [`PoolError::Closed`].
    pub async fn get(&self) -> Result<Lease<M>, PoolError<M::Error>> {
        let inner = &*self.inner;
        let timeout = inner.config.acquire_timeout;
        let deadline = Instant::now() + timeout;
        let timed_out = |phase| PoolError::Timeout { phase, timeout };
        loop {
            let handoff = {
                let mut st = inner.lock();
                if st.closed {
                    return Err(PoolError::Closed);
                }
                // Newcomers never jump the queue: idle resources go to waiters first (returns
                // hand them over directly), so only take one when nobody waits.
                let nobody_waits = st.waiters.iter().all(|w| w.tx.is_closed());
                if nobody_waits {
                    st.waiters.clear();
                }
                if nobody_waits && !st.idle.is_empty() {
                    st.in_use += 1;
                    // Most recently used first: it is the warmest, and the others can age out.
                    st.idle.pop_back().map(Handoff::Resource)
                } else if nobody_waits && st.size < inner.config.max_size {
                    st.size += 1;
                    st.in_use += 1;
                    Some(Handoff::Create)
                } else {
                    None
                }
            };
            let handoff = match handoff {
                Some(h) => h,
                None => {
                    let (tx, mut rx) = oneshot::channel();
                    let (id, waiting) = {
                        let mut st = inner.lock();
                        let id = st.next_waiter;
                        st.next_waiter += 1;
                        st.waiters.push_back(Waiter { id, tx });
                        (id, st.waiters.len())
                    };
                    inner.emit(PoolEvent::Exhausted { waiting });
                    match tokio::time::timeout_at(deadline, &mut rx).await {
                        Ok(Ok(delivery)) => match delivery.take() {
                            Some(h) => h,
                            None => continue,
                        },
                        Ok(Err(_)) => return Err(PoolError::Closed),
                        Err(_) => {
                            let removed = {
                                let mut st = inner.lock();
                                let before = st.waiters.len();
                                st.waiters.retain(|w| w.id != id);
                                before != st.waiters.len()
                            };
                            // Something may have been handed over just before we withdrew:
                            // dropping the delivery gives it back.
                            if !removed {
                                drop(rx.try_recv());
                            }
                            return Err(timed_out(TimeoutPhase::Wait));
                        }
                    }
                }
            };
            match handoff {
                Handoff::Create => {
                    let mut guard = SlotGuard { inner, armed: true };
                    match tokio::time::timeout_at(deadline, inner.manager.create()).await {
                        Ok(Ok(resource)) => {
                            guard.armed = false;
                            inner.emit(PoolEvent::Created);
                            let now = Instant::now();
                            return Ok(Lease::new(
                                &self.inner,
                                Entry {
                                    resource,
                                    expires: inner.expiry(),
                                    idle_since: now,
                                    checked_at: now,
                                },
                            ));
                        }
                        Ok(Err(e)) => return Err(PoolError::Backend(e)),
                        Err(_) => return Err(timed_out(TimeoutPhase::Create)),
                    }
                }
                Handoff::Resource(entry) => {
                    let now = Instant::now();
                    if entry.expires.is_some_and(|e| e <= now) {
                        inner.close_entry(entry, CloseReason::MaxLifetime);
                        continue;
                    }
                    if inner.manager.is_broken(&entry.resource) {
                        inner.close_entry(entry, CloseReason::Broken);
                        continue;
                    }
                    let check =
                        now.duration_since(entry.checked_at) >= inner.config.check_after_idle;
                    let mut lease = Lease::new(&self.inner, entry);
                    if check {
                        let resource = lease.resource_mut();
                        match tokio::time::timeout_at(deadline, inner.manager.check(resource)).await
                        {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                inner.emit(PoolEvent::HealthCheckFailed(e.to_string()));
                                lease.close(CloseReason::HealthCheck);
                                continue;
                            }
                            Err(_) => {
                                lease.close(CloseReason::HealthCheck);
                                return Err(timed_out(TimeoutPhase::Check));
                            }
                        }
                    }
                    return Ok(lease);
                }
            }
        }
    }
}

/// A leased resource. Derefs to the resource; returned to the pool when dropped (after a
/// background recycle when the manager asks for one), or closed if marked broken.
pub struct Lease<M: Manager> {
    entry: Option<Entry<M::Resource>>,
    inner: Arc<Inner<M>>,
    broken: bool,
}

impl<M: Manager> fmt::Debug for Lease<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: Manager> Lease<M> {
    fn new(inner: &Arc<Inner<M>>, entry: Entry<M::Resource>) -> Lease<M> {
        Lease {
            entry: Some(entry),
            inner: Arc::clone(inner),
            broken: false,
        }
    }

    fn resource_mut(&mut self) -> &mut M::Resource {
        match self.entry.as_mut() {
            Some(e) => &mut e.resource,
            None => unreachable_lease(),
        }
    }

    /// Marks the resource unusable (its user saw a fatal error): it is closed, not returned.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Closes the resource now instead of returning it.
    fn close(mut self, reason: CloseReason) {
        if let Some(entry) = self.entry.take() {
            self.inner.close_entry(entry, reason);
        }
    }
}

#[cold]
fn unreachable_lease() -> ! {
    // `entry` is only taken in `close` and `drop`, which consume the lease.
    panic!("a lease was used after it was given back")
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Resource;

    fn deref(&self) -> &M::Resource {
        match self.entry.as_ref() {
            Some(e) => &e.resource,
            None => unreachable_lease(),
        }
    }
}

impl<M: Manager> DerefMut for Lease<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        self.resource_mut()
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        let inner = &self.inner;
        let now = Instant::now();
        entry.idle_since = now;
        entry.checked_at = now;
        if self.broken || inner.manager.is_broken(&entry.resource) {
            return inner.close_entry(entry, CloseReason::Broken);
        }
        if entry.expires.is_some_and(|e| e <= now) {
            return inner.close_entry(entry, CloseReason::MaxLifetime);
        }
        if !inner.manager.needs_recycle(&entry.resource) {
            return inner.put_back(entry);
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return inner.close_entry(entry, CloseReason::RecycleFailed);
        };
        let inner = Arc::clone(inner);
        handle.spawn(async move {
            let mut entry = entry;
            let timeout = inner.config.recycle_timeout;
            match tokio::time::timeout(timeout, inner.manager.recycle(&mut entry.resource)).await {
                Ok(Ok(())) => inner.put_back(entry),
                _ => inner.close_entry(entry, CloseReason::RecycleFailed),
            }
        });
    }
}

/// Background upkeep: idle timeout, lifetimes, health checks of idle resources, `min_idle`.
async fn maintain<M: Manager>(pool: Weak<Inner<M>>) {
    let period = {
        let Some(inner) = pool.upgrade() else { return };
        let c = &inner.config;
        [
            c.idle_timeout.map(|d| d / 2),
            c.check_interval,
            c.max_lifetime.map(|d| d / 10),
            Some(Duration::from_secs(1)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(10))
    };
    let mut last_check = Instant::now();
    loop {
        let Some(inner) = pool.upgrade() else { return };
        let now = Instant::now();
        let config = &inner.config;
        // Evictions, and the idle resources due for a health check (taken out while checked).
        let (evicted, to_check) = {
            let mut st = inner.lock();
            if st.closed {
                return;
            }
            let mut evicted = Vec::new();
            let mut keep = VecDeque::with_capacity(st.idle.len());
            let check_due = config
                .check_interval
                .is_some_and(|i| now.duration_since(last_check) >= i);
            let mut to_check = Vec::new();
            let idle_total = st.idle.len();
            for entry in st.idle.drain(..) {
                let expired = entry.expires.is_some_and(|e| e <= now);
                let stale = config
                    .idle_timeout
                    .is_some_and(|t| now.duration_since(entry.idle_since) >= t);
                if expired {
                    evicted.push((entry, CloseReason::MaxLifetime));
                } else if stale && idle_total - evicted.len() > config.min_idle {
                    evicted.push((entry, CloseReason::IdleTimeout));
                } else if check_due {
                    to_check.push(entry);
                } else {
                    keep.push_back(entry);
                }
            }
            st.idle = keep;
            st.in_use += evicted.len() + to_check.len();
            (evicted, to_check)
        };
        if config
            .check_interval
            .is_some_and(|i| now.duration_since(last_check) >= i)
        {
            last_check = now;
        }
        for (entry, reason) in evicted {
            inner.close_entry(entry, reason);
        }
        for mut entry in to_check {
            let checked = tokio::time::timeout(
                config.acquire_timeout,
                inner.manager.check(&mut entry.resource),
            )
            .await;
            match checked {
                Ok(Ok(())) if !inner.manager.is_broken(&entry.resource) => {
                    // Its idle age stays: a check is not a use.
                    entry.checked_at = Instant::now();
                    inner.put_back(entry);
                }
                Ok(Err(e)) => {
                    inner.emit(PoolEvent::HealthCheckFailed(e.to_string()));
                    inner.close_entry(entry, CloseReason::HealthCheck);
                }
                _ => inner.close_entry(entry, CloseReason::HealthCheck),
            }
        }
        // Keep `min_idle` ready.
        loop {
            let reserve = {
                let mut st = inner.lock();
                if !st.closed
                    && st.idle.len() < config.min_idle
                    && st.size < config.max_size
                    && st.waiters.is_empty()
                {
                    st.size += 1;
                    st.in_use += 1;
                    true
                } else {
                    false
                }
            };
            if !reserve {
                break;
            }
            match tokio::time::timeout(config.acquire_timeout, inner.manager.create()).await {
                Ok(Ok(resource)) => {
                    inner.emit(PoolEvent::Created);
                    let now = Instant::now();
                    let entry = Entry {
                        resource,
                        expires: inner.expiry(),
                        idle_since: now,
                        checked_at: now,
                    };
                    inner.put_back(entry);
                }
                _ => {
                    inner.release_slot();
                    break;
                }
            }
        }
        drop(inner);
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_reads_back_as_set() {
        let config = PoolConfig::default()
            .max_size(3)
            .min_idle(5)
            .acquire_timeout(Duration::from_millis(1))
            .idle_timeout(None)
            .max_lifetime(Some(Duration::from_millis(2)))
            .check_after_idle(Duration::from_millis(3))
            .check_interval(None)
            .recycle_timeout(Duration::from_millis(4));
        assert_eq!(config.get_max_size(), 3);
        assert_eq!(config.get_min_idle(), 5, "as set: the pool clamps it");
        assert_eq!(config.get_acquire_timeout(), Duration::from_millis(1));
        assert_eq!(config.get_idle_timeout(), None);
        assert_eq!(config.get_max_lifetime(), Some(Duration::from_millis(2)));
        assert_eq!(config.get_check_after_idle(), Duration::from_millis(3));
        assert_eq!(config.get_check_interval(), None);
        assert_eq!(config.get_recycle_timeout(), Duration::from_millis(4));
    }
}
