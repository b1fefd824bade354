//! Following failovers: one task, the follower, owns the failover state ([`Failover`]), the
//! list of sentinels and the topology, and publishes what the client's handles need (the
//! master, its replicas, the sentinels, whether a promotion is under way) as a [`View`] through
//! a watch channel. Nothing else writes them.
//!
//! The follower wakes on:
//! - news from the watchers of the sentinels (a replica selected for promotion, an abort);
//! - a request to rediscover ([`Following::rediscover`]): `+switch-master`, or a command that
//!   met `READONLY` or a lost connection (requests made while it is busy count once);
//! - the backstop poll ([`SentinelConfig::poll_interval`] after it last rediscovered), which
//!   also learns sentinels that joined;
//! - a refresh of the replicas ending (it runs in a task of its own, see `replicas.rs`);
//! - the client being closed or dropped.
//!
//! Its timers are tokio's (`tokio::time`), so the tests run them on a paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_conn::{Node, ReplicaSet, ServerAddr, SubscriberHandle};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::time::Instant;

use crate::discovery::{ask_sentinel, discover, is_master, learn_sentinels};
use crate::replicas::{close_all, fetch_replicas};
use crate::watcher::{closed, watch_sentinel, FollowerLinks, News};
use crate::{SentinelConfig, SentinelEvent};

/// How long a failover may take from the replica's selection to its promotion before the
/// client stops waiting for it (and goes on with the master it has).
const PROMOTION_WAIT: Duration = Duration::from_secs(3);
/// How often the selected replica is asked for its role while it is being promoted.
const PROMOTION_POLL: Duration = Duration::from_millis(5);
/// How long after leaving a master the sentinels' answers naming it are taken as stale.
const STALE_FOR: Duration = Duration::from_secs(30);

/// A master the client left, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Left {
    master: ServerAddr,
    at: Instant,
}

/// Where the client is in following failovers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Failover {
    /// Using the master the sentinels name.
    #[default]
    Steady,
    /// Just switched away from `left.master`: it says it is a master until the sentinels demote
    /// it, and sentinels may still name it for a while ([`STALE_FOR`]); that is no reason to
    /// switch back while the master in use still is one.
    Settling(Left),
    /// A sentinel selected `candidate` for promotion at `since`: commands wait (at most a
    /// response timeout) while its role is polled, and the client switches the moment it
    /// reports itself master, before the sentinels publish `+switch-master`. Gives up after
    /// [`PROMOTION_WAIT`] or on an abort, back to `before`.
    Promoting {
        candidate: ServerAddr,
        since: Instant,
        before: Option<Left>,
    },
}

/// What the master the sentinels name means, given the one in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    /// The master in use.
    InUse,
    /// The master just left: stale if the one in use still says it is master.
    Left,
    /// Another master: switch to it.
    New,
}

impl Failover {
    /// A sentinel selected (or promoted) `candidate`, with `master` in use.
    pub(crate) fn selected(self, candidate: ServerAddr, master: &ServerAddr, now: Instant) -> Self {
        if candidate == *master {
            return self;
        }
        let before = match self {
            Failover::Promoting {
                candidate: ref same,
                ..
            } if *same == candidate => return self,
            Failover::Promoting { before, .. } => before,
            Failover::Settling(left) => Some(left),
            Failover::Steady => None,
        };
        Failover::Promoting {
            candidate,
            since: now,
            before,
        }
    }

    /// The promotion under way (if any) was aborted or took too long: back to before it.
    pub(crate) fn stop_promoting(self) -> Self {
        match self {
            Failover::Promoting {
                before: Some(left), ..
            } => Failover::Settling(left),
            Failover::Promoting { before: None, .. } => Failover::Steady,
            other => other,
        }
    }

    /// Whether a promotion is under way.
    pub(crate) fn is_promoting(&self) -> bool {
        matches!(self, Failover::Promoting { .. })
    }

    /// Whether the promotion under way has taken [`PROMOTION_WAIT`] by `now`.
    pub(crate) fn promotion_expired(&self, now: Instant) -> bool {
        matches!(self, Failover::Promoting { since, .. }
            if now.duration_since(*since) >= PROMOTION_WAIT)
    }

    /// The client switched away from `master` at `now`.
    pub(crate) fn switched(master: ServerAddr, now: Instant) -> Self {
        Failover::Settling(Left { master, at: now })
    }

    /// A sentinel named the master in use: answers naming the one left are over.
    pub(crate) fn confirmed(self) -> Self {
        match self {
            Failover::Settling(_) => Failover::Steady,
            other => other,
        }
    }

    /// What discovery naming `named` means at `now`, with `master` in use.
    pub(crate) fn judge(&self, named: &ServerAddr, master: &ServerAddr, now: Instant) -> Named {
        let left = match self {
            Failover::Settling(left) => Some(left),
            Failover::Promoting { before, .. } => before.as_ref(),
            Failover::Steady => None,
        };
        if named == master {
            Named::InUse
        } else if left.is_some_and(|l| l.master == *named && now.duration_since(l.at) < STALE_FOR) {
            Named::Left
        } else {
            Named::New
        }
    }
}

/// What the client's handles read of the follower's state.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// The master in use (as the sentinels announce it).
    pub(crate) master: ServerAddr,
    /// Its node: shared connection(s) and pool.
    pub(crate) node: Node,
    /// A promotion is under way: commands wait for it rather than reach a master about to be
    /// demoted.
    pub(crate) promoting: bool,
    /// Failovers followed; a command that failed as its master changed may run again.
    pub(crate) failovers: u64,
    /// The sentinels known, in the order they are asked.
    pub(crate) sentinels: Vec<ServerAddr>,
    /// The master's replicas, for reads.
    pub(crate) replicas: Arc<ReplicaSet>,
}

/// Subscribers that follow the master: moved after every failover, closed with the client.
pub(crate) type Subscribers = Arc<Mutex<Vec<SubscriberHandle>>>;

/// The client's side of the follower: what it reads, and how it wakes or stops it.
#[derive(Debug)]
pub(crate) struct Following {
    /// The follower's state as the handles see it.
    pub(crate) view: watch::Receiver<View>,
    /// Asks the follower to rediscover the master now.
    pub(crate) rediscover: Arc<Notify>,
    /// Subscribers to move on a failover.
    pub(crate) subscribers: Subscribers,
    /// Failover events.
    pub(crate) events: broadcast::Sender<SentinelEvent>,
    /// Set by `close`; dropped with the client: either stops the follower and the watchers.
    pub(crate) shutdown: watch::Sender<bool>,
}

/// Starts the follower (and a watcher per sentinel) from the topology found at connect.
pub(crate) fn start(config: Arc<SentinelConfig>, view: View) -> Following {
    let (news_tx, news) = mpsc::channel(64);
    let (replicas_tx, replicas) = mpsc::channel(1);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let sentinels = view.sentinels.clone();
    let (view_tx, view_rx) = watch::channel(view);
    let (events, _) = broadcast::channel(64);
    let following = Following {
        view: view_rx,
        rediscover: Arc::new(Notify::new()),
        subscribers: Subscribers::default(),
        events: events.clone(),
        shutdown,
    };
    let follower = Follower {
        sentinels,
        config,
        failover: Failover::Steady,
        view: view_tx,
        inputs: Inputs {
            news,
            replicas,
            rediscover: Arc::clone(&following.rediscover),
            shutdown: shutdown_rx,
        },
        news_for_watchers: news_tx,
        replicas_tx,
        events,
        subscribers: Arc::clone(&following.subscribers),
        refreshing: false,
    };
    for sentinel in &follower.sentinels {
        follower.spawn_watcher(sentinel);
    }
    tokio::spawn(follower.run());
    following
}

/// What woke the follower.
#[derive(Debug)]
enum Input {
    News(News),
    Rediscover,
    Poll,
    Replicas(Option<ReplicaSet>),
    Shutdown,
}

/// Everything the follower waits on.
#[derive(Debug)]
struct Inputs {
    news: mpsc::Receiver<News>,
    replicas: mpsc::Receiver<Option<ReplicaSet>>,
    rediscover: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

impl Inputs {
    /// The next thing to act on; [`Input::Poll`] at `poll_at` if nothing came first.
    async fn next(&mut self, poll_at: Instant) -> Input {
        tokio::select! {
            Some(news) = self.news.recv() => Input::News(news),
            () = self.rediscover.notified() => Input::Rediscover,
            () = tokio::time::sleep_until(poll_at) => Input::Poll,
            Some(set) = self.replicas.recv() => Input::Replicas(set),
            () = closed(&mut self.shutdown) => Input::Shutdown,
        }
    }
}

/// The task that follows failovers, and the only owner of their state.
#[derive(Debug)]
struct Follower {
    config: Arc<SentinelConfig>,
    failover: Failover,
    /// The sentinels known (configured, then learned), the last that answered first.
    sentinels: Vec<ServerAddr>,
    view: watch::Sender<View>,
    inputs: Inputs,
    /// Given to each watcher: where it sends news.
    news_for_watchers: mpsc::Sender<News>,
    /// Given to each replica refresh: where it sends the replicas it found.
    replicas_tx: mpsc::Sender<Option<ReplicaSet>>,
    events: broadcast::Sender<SentinelEvent>,
    subscribers: Subscribers,
    /// A replica refresh is running: at most one at a time.
    refreshing: bool,
}

impl Follower {
    async fn run(mut self) {
        let poll = self.config.poll_interval;
        let mut poll_at = Instant::now() + poll;
        loop {
            // The poll comes `poll` after the last rediscovery or promotion.
            let restart_poll = match self.inputs.next(poll_at).await {
                Input::News(news) => {
                    self.hear(news);
                    let promoting = self.failover.is_promoting();
                    if promoting {
                        self.follow_promotion().await;
                    }
                    promoting
                }
                Input::Rediscover => {
                    self.rediscover(false).await;
                    true
                }
                Input::Poll => {
                    self.rediscover(true).await;
                    true
                }
                Input::Replicas(set) => {
                    self.install_replicas(set);
                    false
                }
                Input::Shutdown => break,
            };
            if restart_poll {
                poll_at = Instant::now() + poll;
            }
        }
        self.finish();
    }

    /// Moves the failover state on.
    fn update(&mut self, transition: impl FnOnce(Failover) -> Failover) {
        self.failover = transition(std::mem::take(&mut self.failover));
    }

    /// Acts on news from a watcher: a promotion starts (or restarts with another replica), or
    /// stops on an abort, which also asks for a rediscovery.
    fn hear(&mut self, news: News) {
        match news {
            News::Selected(candidate) => {
                let master = self.view.borrow().master.clone();
                let now = Instant::now();
                self.update(|f| f.selected(candidate, &master, now));
            }
            News::Aborted => {
                if let Failover::Promoting { candidate, .. } = &self.failover {
                    tracing::info!(candidate = %candidate, "the failover was aborted");
                }
                self.update(|f| f.stop_promoting());
                self.inputs.rediscover.notify_one();
            }
            News::Switched => self.inputs.rediscover.notify_one(),
        }
    }

    /// Follows the promotion under way: holds commands, polls the candidate's role every
    /// [`PROMOTION_POLL`], and switches to it the moment it is master (writes the old master
    /// takes meanwhile are lost when it is demoted). Ends on the switch, an abort,
    /// [`PROMOTION_WAIT`], or shutdown.
    async fn follow_promotion(&mut self) {
        self.view.send_modify(|v| v.promoting = true);
        let mut dialled: Option<(ServerAddr, Node)> = None;
        loop {
            while let Ok(news) = self.inputs.news.try_recv() {
                self.hear(news);
            }
            if self.failover.promotion_expired(Instant::now()) {
                self.update(|f| f.stop_promoting());
            }
            let Failover::Promoting {
                candidate, since, ..
            } = &self.failover
            else {
                break;
            };
            let (candidate, since) = (candidate.clone(), *since);
            if let Some(node) = self.promoted(&candidate, &mut dialled).await {
                tracing::info!(new = %candidate, after = ?since.elapsed(),
                    "the selected replica is master: switching before +switch-master");
                self.switch_to(candidate, node);
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(PROMOTION_POLL) => {}
                () = closed(&mut self.inputs.shutdown) => break,
            }
        }
        if let Some((_, node)) = dialled {
            node.close();
        }
        self.update(|f| f.stop_promoting());
        self.view.send_modify(|v| v.promoting = false);
    }

    /// The node of `candidate` once it says it is master. `dialled` keeps its connection from
    /// one poll to the next (a connection to another candidate is closed).
    async fn promoted(
        &self,
        candidate: &ServerAddr,
        dialled: &mut Option<(ServerAddr, Node)>,
    ) -> Option<Node> {
        if let Some((_, node)) = dialled.take_if(|(addr, _)| addr != candidate) {
            node.close();
        }
        if dialled.is_none() {
            let node = Node::connect(self.config.node_at(candidate)).await;
            *dialled = node.ok().map(|node| (candidate.clone(), node));
        }
        let (_, node) = dialled.as_ref()?;
        if !is_master(node).await {
            return None;
        }
        dialled.take().map(|(_, node)| node)
    }

    /// Rediscovers the master (on a request or the poll), then refreshes the replicas; the
    /// poll also learns sentinels that joined.
    async fn rediscover(&mut self, polled: bool) {
        self.follow_sentinels().await;
        if self.config.replica_reads.is_on() {
            self.spawn_replica_refresh();
        }
        if polled {
            for learned in learn_sentinels(&self.config, &mut self.sentinels).await {
                self.spawn_watcher(&learned);
            }
            self.publish_sentinels();
        }
    }

    /// Switches when the sentinels name another master than the one in use (unless it is the
    /// one just left and the one in use still is a master).
    async fn follow_sentinels(&mut self) {
        let (master, node) = {
            let view = self.view.borrow();
            (view.master.clone(), view.node.clone())
        };
        // The usual case: the first sentinel that answers still names the master in use.
        if let Some(first) = self.sentinels.first() {
            if ask_sentinel(&self.config, first).await.ok().as_ref() == Some(&master) {
                self.update(|f| f.confirmed());
                return;
            }
        }
        let found = discover(&self.config, &mut self.sentinels).await;
        self.publish_sentinels();
        match found {
            Ok((named, found)) => match self.failover.judge(&named, &master, Instant::now()) {
                Named::InUse => found.close(),
                Named::Left if is_master(&node).await => found.close(),
                Named::Left | Named::New => self.switch_to(named, found),
            },
            Err(e) => tracing::warn!(error = %e, "sentinel discovery failed"),
        }
    }

    /// Makes `addr` the master in use: the old master's connections are closed (it may stay
    /// writable for seconds, and writes sent there would be lost), subscribers move, the
    /// failover is counted and announced.
    fn switch_to(&mut self, addr: ServerAddr, node: Node) {
        let mut old = None;
        self.view.send_modify(|v| {
            let master = std::mem::replace(&mut v.master, addr.clone());
            old = Some((master, std::mem::replace(&mut v.node, node)));
            v.failovers += 1;
        });
        let Some((old, old_node)) = old else { return };
        old_node.close();
        {
            let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
            subs.retain(|s| !s.is_closed());
            for sub in subs.iter() {
                sub.relocate();
            }
        }
        tracing::info!(old = %old, new = %addr, "followed a failover");
        let _ = self.events.send(SentinelEvent::Failover {
            old: old.to_string(),
            new: addr.to_string(),
        });
        self.failover = Failover::switched(old, Instant::now());
    }

    /// Publishes the list of sentinels, if it changed.
    fn publish_sentinels(&self) {
        let known = &self.sentinels;
        self.view.send_if_modified(|v| {
            let changed = v.sentinels != *known;
            if changed {
                v.sentinels.clone_from(known);
            }
            changed
        });
    }

    /// Starts watching the failover events of `sentinel`.
    fn spawn_watcher(&self, sentinel: &ServerAddr) {
        let links = FollowerLinks {
            news: self.news_for_watchers.clone(),
            rediscover: Arc::clone(&self.inputs.rediscover),
            shutdown: self.inputs.shutdown.clone(),
        };
        let config = self.config.subscription_config(sentinel);
        let name = self.config.master_name.clone();
        tokio::spawn(watch_sentinel(config, name, links));
    }

    /// Starts a replica refresh in a task of its own, unless one is running: the follower never
    /// waits for replicas to answer.
    fn spawn_replica_refresh(&mut self) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let config = Arc::clone(&self.config);
        let sentinels = self.sentinels.clone();
        let old = Arc::clone(&self.view.borrow().replicas);
        let results = self.replicas_tx.clone();
        tokio::spawn(async move {
            let found = fetch_replicas(&config, &sentinels, &old).await;
            if let Err(unsent) = results.send(found).await {
                // The follower is gone: nobody will use these connections.
                if let Some(found) = unsent.0 {
                    close_all(&found);
                }
            }
        });
    }

    /// Installs the replicas a refresh found, closing the connections of those that left.
    fn install_replicas(&mut self, found: Option<ReplicaSet>) {
        self.refreshing = false;
        let Some(found) = found else { return };
        let next = Arc::new(found);
        let mut previous = Arc::clone(&next);
        self.view
            .send_modify(|v| std::mem::swap(&mut v.replicas, &mut previous));
        for node in previous.dropped_by(&next) {
            node.close();
        }
    }

    /// The follower stops. When the client was closed (rather than dropped), whatever it
    /// installed after `close` read the view is closed too.
    fn finish(mut self) {
        if *self.inputs.shutdown.borrow() {
            let view = self.view.borrow();
            view.node.close();
            close_all(&view.replicas);
        }
        self.inputs.replicas.close();
        while let Ok(found) = self.inputs.replicas.try_recv() {
            if let Some(found) = found {
                close_all(&found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> ServerAddr {
        ServerAddr::tcp("10.0.0.1", port)
    }

    #[test]
    fn a_selected_replica_starts_a_promotion_unless_it_is_the_master_in_use() {
        let now = Instant::now();
        let master = addr(1);
        assert_eq!(
            Failover::Steady.selected(master.clone(), &master, now),
            Failover::Steady
        );
        let promoting = Failover::Steady.selected(addr(2), &master, now);
        assert!(promoting.is_promoting());
        // The same news from another sentinel changes nothing; another replica starts over.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            promoting.clone().selected(addr(2), &master, later),
            promoting
        );
        let other = promoting.selected(addr(3), &master, later);
        assert_eq!(
            other,
            Failover::Promoting {
                candidate: addr(3),
                since: later,
                before: None
            }
        );
        assert_eq!(other.stop_promoting(), Failover::Steady);
    }

    #[tokio::test(start_paused = true)]
    async fn a_promotion_gives_up_after_the_wait_and_returns_to_where_it_was() {
        let master = addr(1);
        let settling = Failover::switched(addr(9), Instant::now());
        let promoting = settling.clone().selected(addr(2), &master, Instant::now());
        tokio::time::advance(PROMOTION_WAIT - Duration::from_millis(1)).await;
        assert!(!promoting.promotion_expired(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(promoting.promotion_expired(Instant::now()));
        assert!(!settling.promotion_expired(Instant::now()));
        assert_eq!(
            promoting.stop_promoting(),
            settling,
            "the master left is remembered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sentinels_naming_the_master_just_left_are_stale_for_a_while() {
        let (old, new, other) = (addr(1), addr(2), addr(3));
        let settling = Failover::switched(old.clone(), Instant::now());
        let judge = |f: &Failover, named: &ServerAddr| f.judge(named, &new, Instant::now());
        assert_eq!(judge(&settling, &new), Named::InUse);
        assert_eq!(judge(&settling, &old), Named::Left);
        assert_eq!(judge(&settling, &other), Named::New);
        assert_eq!(judge(&Failover::Steady, &old), Named::New);
        tokio::time::advance(STALE_FOR - Duration::from_millis(1)).await;
        assert_eq!(judge(&settling, &old), Named::Left);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(judge(&settling, &old), Named::New, "no longer stale");
        // A sentinel naming the master in use ends the settling at once.
        let settling = Failover::switched(old.clone(), Instant::now());
        assert_eq!(settling.confirmed(), Failover::Steady);
    }

    fn inputs() -> (Inputs, mpsc::Sender<News>, watch::Sender<bool>) {
        let (news_tx, news) = mpsc::channel(4);
        let (_, replicas) = mpsc::channel(1);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let inputs = Inputs {
            news,
            replicas,
            rediscover: Arc::new(Notify::new()),
            shutdown: shutdown_rx,
        };
        (inputs, news_tx, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn the_follower_polls_when_nothing_wakes_it_first() {
        let (mut inputs, news, shutdown) = inputs();
        let start = Instant::now();
        let poll_at = start + Duration::from_secs(5);
        assert!(matches!(inputs.next(poll_at).await, Input::Poll));
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        // Requests made while it is busy count once, and come before the poll.
        let poll_at = Instant::now() + Duration::from_secs(5);
        inputs.rediscover.notify_one();
        inputs.rediscover.notify_one();
        assert!(matches!(inputs.next(poll_at).await, Input::Rediscover));
        assert!(matches!(inputs.next(poll_at).await, Input::Poll));

        let poll_at = Instant::now() + Duration::from_secs(5);
        news.send(News::Aborted).await.unwrap();
        assert!(matches!(
            inputs.next(poll_at).await,
            Input::News(News::Aborted)
        ));
        shutdown.send_replace(true);
        assert!(matches!(inputs.next(poll_at).await, Input::Shutdown));
        assert!(Instant::now() < poll_at, "nothing waited for the poll");
    }

    #[tokio::test(start_paused = true)]
    async fn the_follower_stops_when_the_client_is_dropped() {
        let (mut inputs, _news, shutdown) = inputs();
        drop(shutdown);
        let poll_at = Instant::now() + Duration::from_secs(5);
        assert!(matches!(inputs.next(poll_at).await, Input::Shutdown));
    }
}
