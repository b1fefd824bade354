//! The subscriber against real servers: every kind of subscription over RESP3 and RESP2,
//! resubscription after a restart, relocation, a hung peer found by the health check.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_conn::{
    ConnectionConfig, Error, Protocol, ServerAddr, Subscriber, SubscriberEvent, SubscriptionKind,
    Value,
};
use test_support::{Fault, FaultProxy, RedisServer};

fn config(addr: std::net::SocketAddr) -> ConnectionConfig {
    ConnectionConfig::new(ServerAddr::from(addr))
}

/// The next message within `within`, skipping other events.
async fn next(sub: &mut Subscriber, within: Duration) -> redis_conn::Message {
    tokio::time::timeout(within, sub.next_message())
        .await
        .expect("no message in time")
        .expect("the subscriber closed")
}

async fn every_kind_of_subscription_delivers(protocol: Protocol) {
    let server = RedisServer::start().unwrap();
    let mut sub = Subscriber::connect(config(server.addr()).protocol(protocol))
        .await
        .unwrap();
    sub.subscribe(["news", "alerts"]).await.unwrap();
    sub.psubscribe(["user:*"]).await.unwrap();
    sub.ssubscribe(["orders"]).await.unwrap();
    assert_eq!(sub.subscriptions().len(), 4);

    assert_eq!(
        server.cmd(&["PUBLISH", "news", "hello"]).unwrap(),
        Value::Integer(1)
    );
    server.cmd(&["PUBLISH", "user:7", "login"]).unwrap();
    server.cmd(&["SPUBLISH", "orders", "o-1"]).unwrap();
    let got = next(&mut sub, Duration::from_secs(2)).await;
    assert_eq!(
        (got.kind, &got.channel[..], &got.payload[..]),
        (SubscriptionKind::Channel, &b"news"[..], &b"hello"[..])
    );
    let got = next(&mut sub, Duration::from_secs(2)).await;
    assert_eq!(got.kind, SubscriptionKind::Pattern);
    assert_eq!(got.pattern.as_deref(), Some(&b"user:*"[..]));
    assert_eq!(
        (&got.channel[..], &got.payload[..]),
        (&b"user:7"[..], &b"login"[..])
    );
    let got = next(&mut sub, Duration::from_secs(2)).await;
    assert_eq!(
        (got.kind, &got.channel[..], &got.payload[..]),
        (SubscriptionKind::Shard, &b"orders"[..], &b"o-1"[..])
    );

    // Unsubscribed channels stop delivering; the others go on.
    sub.unsubscribe(["news"]).await.unwrap();
    sub.punsubscribe(["user:*"]).await.unwrap();
    assert_eq!(
        server.cmd(&["PUBLISH", "news", "gone"]).unwrap(),
        Value::Integer(0)
    );
    server.cmd(&["PUBLISH", "alerts", "still"]).unwrap();
    let got = next(&mut sub, Duration::from_secs(2)).await;
    assert_eq!(&got.payload[..], b"still");
    assert_eq!(sub.subscriptions().len(), 2);
}

#[tokio::test]
async fn every_kind_of_subscription_delivers_over_resp3() {
    every_kind_of_subscription_delivers(Protocol::Resp3).await;
}

#[tokio::test]
async fn every_kind_of_subscription_delivers_over_resp2() {
    every_kind_of_subscription_delivers(Protocol::Resp2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_come_back_after_a_server_restart() {
    let mut server = RedisServer::start().unwrap();
    let names: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let seen = Arc::clone(&names);
    let mut sub = Subscriber::connect(
        config(server.addr()).on_event(move |e| seen.lock().unwrap().push(e.name())),
    )
    .await
    .unwrap();
    sub.subscribe(["news"]).await.unwrap();
    sub.psubscribe(["user:*"]).await.unwrap();
    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().unwrap();
    // The subscriber says it is back, and that it may have missed messages.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), sub.next_event())
            .await
            .expect("no resubscription within 5 s")
            .expect("closed");
        if let SubscriberEvent::Resubscribed { downtime, .. } = event {
            assert!(downtime >= Duration::from_millis(250), "{downtime:?}");
            break;
        }
    }
    // Confirmation is in flight with the event; publish until the server counts a subscriber.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.cmd(&["PUBLISH", "user:1", "back"]).unwrap() != Value::Integer(1) {
        assert!(Instant::now() < deadline, "not subscribed again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = next(&mut sub, Duration::from_secs(2)).await;
    assert_eq!(&got.payload[..], b"back");
    server.cmd(&["PUBLISH", "news", "n"]).unwrap();
    assert_eq!(
        &next(&mut sub, Duration::from_secs(2)).await.payload[..],
        b"n"
    );
    let names = names.lock().unwrap().clone();
    for expected in ["connect", "disconnect", "reconnect", "resubscribed"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn relocate_moves_every_subscription_to_where_the_locator_points() {
    let first = RedisServer::start().unwrap();
    let second = RedisServer::start().unwrap();
    let target = Arc::new(Mutex::new(ServerAddr::from(first.addr())));
    let locate = {
        let target = Arc::clone(&target);
        Arc::new(move || target.lock().unwrap().clone())
    };
    let mut sub = Subscriber::connect_located(config(first.addr()), Some(locate))
        .await
        .unwrap();
    sub.subscribe(["events"]).await.unwrap();
    first.cmd(&["PUBLISH", "events", "on-first"]).unwrap();
    assert_eq!(
        &next(&mut sub, Duration::from_secs(2)).await.payload[..],
        b"on-first"
    );
    *target.lock().unwrap() = ServerAddr::from(second.addr());
    sub.relocate();
    let deadline = Instant::now() + Duration::from_secs(3);
    while second.cmd(&["PUBLISH", "events", "on-second"]).unwrap() != Value::Integer(1) {
        assert!(
            Instant::now() < deadline,
            "not subscribed on the second server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        &next(&mut sub, Duration::from_secs(2)).await.payload[..],
        b"on-second"
    );
    assert_eq!(sub.addr(), second.addr().to_string());
    // Nothing is left subscribed on the first.
    assert_eq!(
        first.cmd(&["PUBLISH", "events", "x"]).unwrap(),
        Value::Integer(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_peer_is_found_by_the_health_check_and_left() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let broke: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = Arc::clone(&broke);
    let sub = Subscriber::connect(
        config(proxy.addr())
            .health_check_interval(Some(Duration::from_millis(300)))
            .response_timeout(Duration::from_millis(300))
            .on_disconnect(move |_| {
                seen.lock().unwrap().get_or_insert(Instant::now());
            }),
    )
    .await
    .unwrap();
    sub.subscribe(["quiet"]).await.unwrap();
    let cut = Instant::now();
    proxy.set(Fault::Blackhole);
    let deadline = cut + Duration::from_secs(3);
    loop {
        if let Some(at) = *broke.lock().unwrap() {
            let took = at - cut;
            // Interval + patience is 600 ms; the check can start just before the cut.
            assert!(took < Duration::from_millis(1500), "{took:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the dead peer went unnoticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn closing_ends_the_stream_and_refuses_changes() {
    let server = RedisServer::start().unwrap();
    let mut sub = Subscriber::connect(config(server.addr())).await.unwrap();
    sub.subscribe(["a"]).await.unwrap();
    let handle = sub.handle();
    handle.close();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), sub.next_message())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        handle.subscribe(["b"]).await,
        Err(Error::Closed { .. })
    ));
    // And the server lets go of it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.cmd(&["PUBLISH", "a", "x"]).unwrap() != Value::Integer(0) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_for_the_application_are_bounded_in_bytes() {
    let server = RedisServer::start().unwrap();
    let budget = 4 << 20;
    let mut sub = Subscriber::connect(config(server.addr()).message_queue_bytes(budget))
        .await
        .unwrap();
    sub.subscribe(["big"]).await.unwrap();
    let publisher = redis_conn::Connection::connect(config(server.addr()))
        .await
        .unwrap();
    let payload = vec![b'x'; 1 << 20];
    for i in 0..20u8 {
        let mut message = payload.clone();
        message[0] = i;
        let cmd = redis_conn::Cmd::new("PUBLISH").arg("big").arg(&message);
        assert_eq!(publisher.send(cmd).await.unwrap(), Value::Integer(1));
    }
    // The application reads nothing for a while: the queue fills up to its budget and stops.
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_millis(800);
    while Instant::now() < deadline {
        most = most.max(sub.queued_bytes());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(most >= budget / 2, "the queue never filled: {most} bytes");
    assert!(
        most <= budget + (1 << 20) + 64,
        "{most} bytes queued with a budget of {budget}"
    );
    // Then every message arrives, in order, and the budget is given back.
    for i in 0..20u8 {
        let message = next(&mut sub, Duration::from_secs(5)).await;
        assert_eq!(message.payload.len(), 1 << 20);
        assert_eq!(message.payload[0], i);
    }
    assert_eq!(sub.queued_bytes(), 0);
}

/// Answers the default handshake, then never reads again (its receive window fills up).
async fn deaf_after_handshake_server() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let hello = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
            let mut chunk = [0u8; 256];
            while !buf.ends_with(hello) {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream
                .write_all(b"%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n")
                .await;
            held.push(stream);
        }
    });
    addr
}

#[tokio::test]
async fn a_subscriber_whose_server_stops_reading_is_not_stuck_in_a_write() {
    let addr = deaf_after_handshake_server().await;
    let timeout = Duration::from_millis(500);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let sub = Subscriber::connect(
        config(addr)
            .response_timeout(timeout)
            .health_check_interval(None)
            .on_event(move |event| {
                let _ = tx.send(event.clone());
            }),
    )
    .await
    .unwrap();
    // Far more than the socket buffers hold: the write cannot complete.
    let names: Vec<String> = (0..200_000).map(|i| format!("channel-{i:0>64}")).collect();
    let started = Instant::now();
    let result = sub.subscribe(&names).await;
    assert!(result.is_err(), "nobody confirmed the subscription");
    let reason = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(redis_conn::Event::Disconnected { reason, .. }) => return reason,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("the subscriber stayed in its write");
    assert!(reason.contains("not reading"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
