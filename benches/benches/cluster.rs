//! Cluster benchmark on a local 3+3 cluster: MGET of 100 keys spread over all slots, and a
//! 100-command cross-slot pipeline, for redis-cluster and (behind `peers`) redis-rs's async
//! cluster client, alternated in rounds.
//!
//! ```text
//! cargo bench -p benches --bench cluster --features peers
//! ```
//!
//! `CLUSTER_SPIN_US=N` sets this client's `spin_wait` (default: the connection's default).

use std::time::Instant;

use benches::{median, ratio};
use redis_cluster::{ClusterClient, ClusterConfig, NodeAddr};
use redis_conn::{Cmd, ConnectionConfig, ServerAddr};
use test_support::Cluster;

fn keys() -> Vec<String> {
    (0..100).map(|i| format!("bench:{i}")).collect()
}

async fn ours(cluster: &Cluster, mget: bool, rounds: usize) -> f64 {
    let seeds: Vec<NodeAddr> = cluster.seeds().into_iter().map(NodeAddr::from).collect();
    let mut template = ConnectionConfig::new(ServerAddr::from(cluster.seeds()[0]));
    if let Some(us) = std::env::var("CLUSTER_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        template = template.spin_wait(std::time::Duration::from_micros(us));
    }
    let client = ClusterClient::connect(ClusterConfig::new(seeds, template))
        .await
        .expect("cluster");
    let keys = keys();
    let started = Instant::now();
    for _ in 0..rounds {
        if mget {
            let mut cmd = Cmd::new("MGET");
            for k in &keys {
                cmd.push_arg(k);
            }
            client.send(cmd).await.expect("MGET");
        } else {
            let cmds: Vec<Cmd> = keys.iter().map(|k| Cmd::new("GET").arg(k)).collect();
            client.send_pipeline(&cmds).await.expect("pipeline");
        }
    }
    (rounds * keys.len()) as f64 / started.elapsed().as_secs_f64()
}

/// `None` when redis-rs refuses the workload (its cluster pipelines must stay in one slot).
#[cfg(feature = "peers")]
async fn redis_rs(cluster: &Cluster, mget: bool, rounds: usize) -> Option<f64> {
    let nodes: Vec<String> = cluster
        .seeds()
        .iter()
        .map(|a| format!("redis://{a}"))
        .collect();
    let client = redis::cluster::ClusterClient::new(nodes).expect("client");
    let mut conn = client.get_async_connection().await.expect("connect");
    let keys = keys();
    let started = Instant::now();
    for _ in 0..rounds {
        if mget {
            let _: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("MGET");
        } else {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("GET").arg(k);
            }
            let result: redis::RedisResult<Vec<Option<Vec<u8>>>> =
                pipe.query_async(&mut conn).await;
            if let Err(e) = result {
                eprintln!("redis-rs cluster pipeline refused: {e}");
                return None;
            }
        }
    }
    Some((rounds * keys.len()) as f64 / started.elapsed().as_secs_f64())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, repeats) = if full { (2000, 3) } else { (5, 1) };
    let cluster = Cluster::start().expect("cluster");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let seeds: Vec<NodeAddr> = cluster.seeds().into_iter().map(NodeAddr::from).collect();
        let template = ConnectionConfig::new(ServerAddr::from(cluster.seeds()[0]));
        let client = ClusterClient::connect(ClusterConfig::new(seeds, template))
            .await
            .expect("cluster");
        for k in keys() {
            client
                .send(Cmd::new("SET").arg(&k).arg("v".repeat(100)))
                .await
                .expect("SET");
        }
    });
    println!(
        "{:<32} {:>14} {:>14} {:>9}",
        "workload (keys/s)", "redis-cluster", "redis-rs", "vs rs"
    );
    for (name, mget) in [
        ("MGET of 100 keys, all slots", true),
        ("pipeline of 100 GET, all slots", false),
    ] {
        #[allow(unused_mut)]
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            a.push(runtime.block_on(ours(&cluster, mget, rounds)));
            #[cfg(feature = "peers")]
            if let Some(rate) = runtime.block_on(redis_rs(&cluster, mget, rounds)) {
                b.push(rate);
            }
        }
        let (a, b) = (median(a), median(b));
        println!("{name:<32} {a:>14.0} {b:>14.0} {:>9}", ratio(a, b));
    }
    println!("(median of {repeats} rounds of {rounds} calls, 100-byte values)");
}
