//! Pool behaviour with fake managers on tokio's paused clock: caps, fairness, timeouts by phase,
//! health, lifetimes, cancellation.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_pool::{CloseReason, Manager, Pool, PoolConfig, PoolError, PoolEvent, TimeoutPhase};

#[derive(Debug, thiserror::Error)]
#[error("fake failure: {0}")]
struct Fail(&'static str);

/// A fake resource: an id, and a flag the test can flip to make it "broken".
#[derive(Debug)]
struct Res {
    id: usize,
    broken: Arc<AtomicBool>,
    recycled: usize,
}

#[derive(Default)]
struct Fake {
    created: AtomicUsize,
    creating: AtomicUsize,
    max_creating: AtomicUsize,
    create_delay: Mutex<Duration>,
    create_fails: AtomicBool,
    check_delay: Mutex<Duration>,
    check_fails: AtomicBool,
    recycle: AtomicBool,
    broken_flags: Mutex<Vec<Arc<AtomicBool>>>,
}

/// The manager the pools use: a handle on the shared fake state.
struct M(Arc<Fake>);

impl std::ops::Deref for M {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

impl Manager for M {
    type Resource = Res;
    type Error = Fail;

    async fn create(&self) -> Result<Res, Fail> {
        let now = self.creating.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_creating.fetch_max(now, Ordering::SeqCst);
        let delay = *self.create_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        self.creating.fetch_sub(1, Ordering::SeqCst);
        if self.create_fails.load(Ordering::SeqCst) {
            return Err(Fail("create"));
        }
        let id = self.created.fetch_add(1, Ordering::SeqCst);
        let broken = Arc::new(AtomicBool::new(false));
        self.broken_flags.lock().unwrap().push(Arc::clone(&broken));
        Ok(Res {
            id,
            broken,
            recycled: 0,
        })
    }

    async fn check(&self, _r: &mut Res) -> Result<(), Fail> {
        let delay = *self.check_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if self.check_fails.load(Ordering::SeqCst) {
            return Err(Fail("check"));
        }
        Ok(())
    }

    fn needs_recycle(&self, _r: &Res) -> bool {
        self.recycle.load(Ordering::SeqCst)
    }

    async fn recycle(&self, r: &mut Res) -> Result<(), Fail> {
        r.recycled += 1;
        Ok(())
    }

    fn is_broken(&self, r: &Res) -> bool {
        r.broken.load(Ordering::SeqCst)
    }
}

fn fake() -> Arc<Fake> {
    Arc::new(Fake::default())
}

fn quiet(config: PoolConfig) -> PoolConfig {
    config
        .idle_timeout(None)
        .max_lifetime(None)
        .check_interval(None)
        .check_after_idle(Duration::from_secs(3600))
}

#[tokio::test(start_paused = true)]
async fn never_more_than_max_size_exist_even_while_creating() {
    let m = fake();
    *m.create_delay.lock().unwrap() = Duration::from_millis(50);
    let pool = Pool::new(
        M(Arc::clone(&m)),
        quiet(
            PoolConfig::default()
                .max_size(4)
                .acquire_timeout(Duration::from_secs(60)),
        ),
    );
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let lease = pool.get().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(pool.status().size <= 4);
            drop(lease);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(m.max_creating.load(Ordering::SeqCst) <= 4);
    assert_eq!(
        m.created.load(Ordering::SeqCst),
        4,
        "resources were not reused"
    );
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use, status.waiting),
        (4, 4, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let pool = Pool::new(
        M(fake()),
        quiet(
            PoolConfig::default()
                .max_size(1)
                .acquire_timeout(Duration::from_secs(60)),
        ),
    );
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let (pool, order) = (pool.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let lease = pool.get().await.unwrap();
            order.lock().unwrap().push(name);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(lease);
        }));
        // Let it register before the next one arrives.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(pool.status().waiting, 4);
    // A newcomer arriving while others wait must queue behind them, not take the next resource.
    let late = {
        let (pool, order) = (pool.clone(), Arc::clone(&order));
        tokio::spawn(async move {
            let _lease = pool.get().await.unwrap();
            order.lock().unwrap().push("late");
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    late.await.unwrap();
    assert_eq!(*order.lock().unwrap(), vec!["a", "b", "c", "d", "late"]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_frees_its_place() {
    let pool = Pool::new(
        M(fake()),
        quiet(
            PoolConfig::default()
                .max_size(1)
                .acquire_timeout(Duration::from_secs(60)),
        ),
    );
    let held = pool.get().await.unwrap();
    // This one gives up after 10 ms (its future is dropped).
    let gave_up = tokio::time::timeout(Duration::from_millis(10), pool.get()).await;
    assert!(gave_up.is_err());
    let next = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|l| l.id) })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    drop(held);
    assert_eq!(
        next.await.unwrap().unwrap(),
        0,
        "the resource went to a ghost"
    );
    let status = pool.status();
    assert_eq!((status.size, status.in_use, status.waiting), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn timeouts_name_the_phase_that_ran_out() {
    // Waiting.
    let pool = Pool::new(
        M(fake()),
        quiet(
            PoolConfig::default()
                .max_size(1)
                .acquire_timeout(Duration::from_millis(200)),
        ),
    );
    let _held = pool.get().await.unwrap();
    let started = tokio::time::Instant::now();
    match pool.get().await {
        Err(PoolError::Timeout {
            phase: TimeoutPhase::Wait,
            timeout,
        }) => assert_eq!(timeout, Duration::from_millis(200)),
        other => panic!("{other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_millis(200));

    // Creating: the slot is given back.
    let m = fake();
    *m.create_delay.lock().unwrap() = Duration::from_secs(10);
    let pool = Pool::new(
        M(Arc::clone(&m)),
        quiet(
            PoolConfig::default()
                .max_size(1)
                .acquire_timeout(Duration::from_millis(200)),
        ),
    );
    assert!(matches!(
        pool.get().await,
        Err(PoolError::Timeout {
            phase: TimeoutPhase::Create,
            ..
        })
    ));
    assert_eq!(pool.status().size, 0, "a failed creation kept its slot");

    // Checking.
    let m = fake();
    let pool = Pool::new(
        M(Arc::clone(&m)),
        quiet(
            PoolConfig::default()
                .max_size(1)
                .acquire_timeout(Duration::from_millis(200)),
        )
        .check_after_idle(Duration::ZERO),
    );
    drop(pool.get().await.unwrap());
    *m.check_delay.lock().unwrap() = Duration::from_secs(10);
    assert!(matches!(
        pool.get().await,
        Err(PoolError::Timeout {
            phase: TimeoutPhase::Check,
            ..
        })
    ));
    assert_eq!(
        pool.status().size,
        0,
        "a resource that failed its check was kept"
    );
}

#[tokio::test(start_paused = true)]
async fn creation_errors_are_typed_and_free_the_slot() {
    let m = fake();
    m.create_fails.store(true, Ordering::SeqCst);
    let pool = Pool::new(M(Arc::clone(&m)), quiet(PoolConfig::default().max_size(1)));
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, PoolError::Backend(Fail("create"))), "{err:?}");
    assert!(err.to_string().contains("fake failure"));
    m.create_fails.store(false, Ordering::SeqCst);
    assert!(pool.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn broken_and_unhealthy_resources_are_closed_and_replaced() {
    let m = fake();
    let pool = Pool::new(
        M(Arc::clone(&m)),
        quiet(PoolConfig::default().max_size(2)).check_after_idle(Duration::from_millis(100)),
    );
    let mut events = pool.events();
    // A lease its user marked broken is not returned.
    let mut lease = pool.get().await.unwrap();
    lease.mark_broken();
    drop(lease);
    assert_eq!(pool.status().size, 0);
    // A resource the manager finds broken is not handed out.
    let lease = pool.get().await.unwrap();
    let first = lease.id;
    drop(lease);
    m.broken_flags.lock().unwrap()[first].store(true, Ordering::SeqCst);
    let lease = pool.get().await.unwrap();
    assert_ne!(lease.id, first);
    drop(lease);
    // A resource idle past the threshold is checked; a failed check replaces it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    m.check_fails.store(true, Ordering::SeqCst);
    let lease = pool.get().await.unwrap();
    m.check_fails.store(false, Ordering::SeqCst);
    assert_eq!(lease.id, 3, "the unhealthy resource was handed out");
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(format!("{e:?}"));
    }
    let text = seen.join(" ");
    assert!(text.contains("HealthCheckFailed"), "{text}");
    assert!(text.contains("Closed(Broken)"), "{text}");
    assert!(text.contains("Closed(HealthCheck)"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_lifetime_evict_and_min_idle_refills() {
    let m = fake();
    let pool = Pool::new(
        M(Arc::clone(&m)),
        PoolConfig::default()
            .max_size(8)
            .min_idle(2)
            .idle_timeout(Some(Duration::from_secs(10)))
            .max_lifetime(Some(Duration::from_secs(60)))
            .check_interval(None),
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pool.status().idle, 2, "min_idle is pre-warmed");
    let leases: Vec<_> = futures_join(&pool, 6).await;
    drop(leases);
    assert_eq!(pool.status().idle, 6);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        pool.status().idle,
        2,
        "idle resources beyond min_idle were kept"
    );
    let before = m.created.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(
        m.created.load(Ordering::SeqCst) >= before + 2,
        "expired resources were not replaced"
    );
    assert_eq!(pool.status().idle, 2);
}

async fn futures_join(pool: &Pool<M>, n: usize) -> Vec<redis_pool::Lease<M>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(pool.get().await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_cancelled_acquisitions_leak_nothing() {
    let m = fake();
    *m.create_delay.lock().unwrap() = Duration::from_millis(3);
    let pool = Pool::new(
        M(Arc::clone(&m)),
        quiet(
            PoolConfig::default()
                .max_size(8)
                .acquire_timeout(Duration::from_secs(60)),
        ),
    );
    let mut tasks = Vec::new();
    for i in 0..10_000u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let wait = Duration::from_micros(i % 7000);
            if let Ok(Ok(lease)) = tokio::time::timeout(wait, pool.get()).await {
                tokio::time::sleep(Duration::from_micros(500)).await;
                drop(lease);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let status = pool.status();
    assert!(status.size <= 8);
    assert_eq!((status.in_use, status.waiting), (0, 0), "{status:?}");
    assert_eq!(status.size, status.idle);
    // And the pool still works at full size.
    let all = futures_join(&pool, 8).await;
    assert_eq!(all.len(), 8);
}

#[tokio::test(start_paused = true)]
async fn recycled_resources_are_reused_only_after_recycling() {
    let m = fake();
    m.recycle.store(true, Ordering::SeqCst);
    let pool = Pool::new(M(Arc::clone(&m)), quiet(PoolConfig::default().max_size(1)));
    drop(pool.get().await.unwrap());
    let lease = pool.get().await.unwrap();
    assert_eq!(lease.recycled, 1);
}

#[tokio::test(start_paused = true)]
async fn closing_the_pool_fails_waiters_and_closes_idle() {
    let pool = Pool::new(
        M(fake()),
        quiet(
            PoolConfig::default()
                .max_size(1)
                .acquire_timeout(Duration::from_secs(60)),
        ),
    );
    let held = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    pool.close();
    assert!(matches!(waiter.await.unwrap(), Err(PoolError::Closed)));
    let mut events = pool.events();
    drop(held);
    assert!(matches!(
        events.try_recv(),
        Ok(PoolEvent::Closed(CloseReason::PoolClosed))
    ));
    assert_eq!(pool.status().size, 0);
    assert!(matches!(pool.get().await, Err(PoolError::Closed)));
}

#[tokio::test(start_paused = true)]
async fn a_resource_handed_to_a_waiter_that_just_left_comes_back() {
    let pool = Pool::new(
        M(fake()),
        quiet(
            PoolConfig::default()
                .max_size(1)
                .acquire_timeout(Duration::from_secs(60)),
        ),
    );
    let held = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(pool.status().waiting, 1);
    // The return hands the resource to the waiter's channel; the waiter is cancelled before it
    // ever takes it out.
    drop(held);
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (1, 1, 0),
        "{status:?}"
    );
    assert!(pool.get().await.is_ok());
}
