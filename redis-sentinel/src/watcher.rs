//! Watching one sentinel's failover events: `+switch-master` (the switch itself),
//! `+selected-slave` and `+promoted-slave` (the replica being promoted), and
//! `-failover-abort-*`. Each is read into [`News`] for the follower; the watcher keeps no state.

use std::sync::Arc;
use std::time::Duration;

use redis_conn::{ConnectionConfig, Error, ServerAddr, Subscriber};
use tokio::sync::{mpsc, watch, Notify};

/// What a sentinel's event says about our master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum News {
    /// `+switch-master`: the sentinels switched to another master (rediscover).
    Switched,
    /// `+selected-slave` or `+promoted-slave`: this replica is being promoted.
    Selected(ServerAddr),
    /// `-failover-abort-*`: the failover under way stopped.
    Aborted,
}

/// Reads one sentinel event; `None` when it is not about the master called `name`.
pub(crate) fn read_event(name: &str, channel: &[u8], payload: &[u8]) -> Option<News> {
    let words: Vec<&[u8]> = payload.split(|&b| b == b' ').collect();
    let text = |w: &[u8]| String::from_utf8_lossy(w).into_owned();
    let ours = |at: usize| words.get(at) == Some(&name.as_bytes());
    match channel {
        // `<master-name> <old-ip> <old-port> <new-ip> <new-port>`
        b"+switch-master" if ours(0) => Some(News::Switched),
        // `slave <name> <ip> <port> @ <master-name> <master-ip> <master-port>`
        b"+selected-slave" | b"+promoted-slave" => {
            let at = words.iter().position(|w| *w == b"@")?;
            if !ours(at + 1) {
                return None;
            }
            let ip = words.get(2)?;
            let port = text(words.get(3)?).parse::<u16>().ok()?;
            Some(News::Selected(ServerAddr::tcp(text(ip), port)))
        }
        // `-failover-abort-...`: `master <master-name> <ip> <port>`
        c if c.starts_with(b"-failover-abort") && ours(1) => Some(News::Aborted),
        _ => None,
    }
}

/// Where a watcher sends what it reads, and when it stops.
#[derive(Debug, Clone)]
pub(crate) struct FollowerLinks {
    /// The follower's news of promotions and aborts.
    pub(crate) news: mpsc::Sender<News>,
    /// Wakes the follower to rediscover (on `+switch-master`).
    pub(crate) rediscover: Arc<Notify>,
    /// True once the client is closed; gone with the client.
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Resolves once the client is closed (or gone).
pub(crate) async fn closed(down: &mut watch::Receiver<bool>) {
    loop {
        if *down.borrow_and_update() {
            return;
        }
        if down.changed().await.is_err() {
            return;
        }
    }
}

/// The sentinel events the client follows.
async fn subscribe_failover_events(sub: &Subscriber) -> Result<(), Error> {
    sub.subscribe(["+switch-master", "+selected-slave", "+promoted-slave"])
        .await?;
    sub.psubscribe(["-failover-abort-*"]).await
}

/// Subscribes to the failover events of the sentinel `config` reaches (with the sentinels'
/// credentials and TLS) and passes on those about the master called `name`. The subscriber
/// reconnects and subscribes again by itself; the first connection is retried every 500 ms.
/// Ends when the client is closed or the follower is gone.
pub(crate) async fn watch_sentinel(config: ConnectionConfig, name: String, mut to: FollowerLinks) {
    let Some(mut sub) = subscribe(&config, &mut to).await else {
        return;
    };
    loop {
        tokio::select! {
            message = sub.next_message() => {
                let Some(message) = message else { return };
                let Some(news) = read_event(&name, &message.channel, &message.payload) else {
                    continue;
                };
                if news == News::Switched {
                    to.rediscover.notify_one();
                } else if to.news.send(news).await.is_err() {
                    break;
                }
            }
            () = to.news.closed() => break,
            () = closed(&mut to.shutdown) => break,
        }
    }
    sub.close();
}

/// A subscriber to the failover events, retried every 500 ms until it connects; `None` when the
/// client is closed or the follower gone first.
async fn subscribe(config: &ConnectionConfig, to: &mut FollowerLinks) -> Option<Subscriber> {
    let sentinel = config.addr();
    loop {
        if to.news.is_closed() || *to.shutdown.borrow() {
            return None;
        }
        match Subscriber::connect(config.clone()).await {
            Ok(sub) => match subscribe_failover_events(&sub).await {
                Ok(()) => return Some(sub),
                Err(e) => {
                    tracing::debug!(sentinel = %sentinel, error = %e, "cannot watch a sentinel");
                    sub.close();
                }
            },
            Err(e) => tracing::debug!(sentinel = %sentinel, error = %e, "cannot watch a sentinel"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = closed(&mut to.shutdown) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_about_our_master_are_read_and_others_ignored() {
        let read = |channel: &str, payload: &str| {
            read_event("mymaster", channel.as_bytes(), payload.as_bytes())
        };
        assert_eq!(
            read("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6380"),
            Some(News::Switched)
        );
        assert_eq!(
            read("+switch-master", "other 10.0.0.1 6379 10.0.0.2 6380"),
            None
        );
        let selected = "slave 10.0.0.2:6380 10.0.0.2 6380 @ mymaster 10.0.0.1 6379";
        let expected = Some(News::Selected(ServerAddr::tcp("10.0.0.2", 6380)));
        assert_eq!(read("+selected-slave", selected), expected);
        assert_eq!(read("+promoted-slave", selected), expected);
        let elsewhere = "slave 10.0.0.2:6380 10.0.0.2 6380 @ other 10.0.0.1 6379";
        assert_eq!(read("+selected-slave", elsewhere), None);
        assert_eq!(
            read("+selected-slave", "slave x 10.0.0.2 nope @ mymaster"),
            None
        );
        assert_eq!(read("+selected-slave", "no marker"), None);
        assert_eq!(
            read(
                "-failover-abort-no-good-slave",
                "master mymaster 10.0.0.1 6379"
            ),
            Some(News::Aborted)
        );
        assert_eq!(
            read("-failover-abort-no-good-slave", "master other 1 2"),
            None
        );
        assert_eq!(read("+sdown", "master mymaster 10.0.0.1 6379"), None);
    }
}
