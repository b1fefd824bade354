//! Pub/sub for every mode, with subscriptions restored after reconnects and failovers.

use futures::Stream;
use redis_cluster::ClusterSubscriber;
use redis_conn::{Message, Subscriber, SubscriberEvent};

use crate::client::Backend;
use crate::{Client, Result};

enum Inner {
    Node(Subscriber),
    Cluster(ClusterSubscriber),
}

/// A pub/sub connection, from [`Client::subscriber`].
///
/// It keeps what it was asked to subscribe to and subscribes again after every reconnect (a
/// server restart), after a sentinel failover (on the new master), and in a cluster moves shard
/// channels to their slot's new master. Messages published while a connection is down are
/// missed (Redis pub/sub keeps no history); [`SubscriberEvent::Resubscribed`] from
/// [`PubSub::next_event`] says when that may have happened.
///
/// ```no_run
/// # async fn demo(client: redis_client::Client) -> redis_client::Result<()> {
/// let mut sub = client.subscriber().await?;
/// sub.subscribe(["news"]).await?;
/// sub.psubscribe(["user:*"]).await?;
/// while let Some(msg) = sub.next_message().await {
///     println!("{}: {}", String::from_utf8_lossy(&msg.channel), String::from_utf8_lossy(&msg.payload));
/// }
/// # Ok(()) }
/// ```
pub struct PubSub {
    inner: Inner,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Node(s) => s.fmt(f),
            Inner::Cluster(s) => s.fmt(f),
        }
    }
}

macro_rules! change {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        ///
        /// # Errors
        /// A timeout when the server does not confirm in time (the subscription stays wanted
        /// and is made after the reconnect), an error reply, or a closed subscriber.
        pub async fn $name<I, N>(&self, names: I) -> Result<()>
        where
            I: IntoIterator<Item = N>,
            N: AsRef<[u8]>,
        {
            match &self.inner {
                Inner::Node(s) => Ok(s.$name(names).await?),
                Inner::Cluster(s) => Ok(s.$name(names).await?),
            }
        }
    };
}

impl PubSub {
    pub(crate) async fn connect(client: &Client) -> Result<PubSub> {
        let inner = match client.backend() {
            Backend::Standalone(node) => {
                let config = client
                    .config()
                    .connection_config(node.config().connection().addr().clone(), client.hub());
                Inner::Node(Subscriber::connect(config).await?)
            }
            Backend::Sentinel(sentinel) => Inner::Node(sentinel.subscriber().await?),
            Backend::Cluster(cluster) => Inner::Cluster(cluster.subscriber().await?),
        };
        Ok(PubSub { inner })
    }

    change!(
        /// Subscribes to channels.
        subscribe
    );
    change!(
        /// Subscribes to channel patterns (`news.*`).
        psubscribe
    );
    change!(
        /// Subscribes to shard channels (Redis 7; `SPUBLISH`), each on its slot's master in a
        /// cluster.
        ssubscribe
    );
    change!(
        /// Unsubscribes from channels.
        unsubscribe
    );
    change!(
        /// Unsubscribes from patterns.
        punsubscribe
    );
    change!(
        /// Unsubscribes from shard channels.
        sunsubscribe
    );

    /// The next message; `None` once closed.
    pub async fn next_message(&mut self) -> Option<Message> {
        match &mut self.inner {
            Inner::Node(s) => s.next_message().await,
            Inner::Cluster(s) => s.next_message().await,
        }
    }

    /// The next message or other event (a resubscription); `None` once closed.
    pub async fn next_event(&mut self) -> Option<SubscriberEvent> {
        match &mut self.inner {
            Inner::Node(s) => s.next_event().await,
            Inner::Cluster(s) => s.next_event().await,
        }
    }

    /// The messages, as a stream.
    pub fn into_stream(self) -> impl Stream<Item = Message> + Send {
        futures::stream::unfold(self, |mut sub| async move {
            let message = sub.next_message().await?;
            Some((message, sub))
        })
    }

    /// Closes the connection(s); the stream ends.
    pub fn close(&self) {
        match &self.inner {
            Inner::Node(s) => s.close(),
            Inner::Cluster(s) => s.close(),
        }
    }
}
