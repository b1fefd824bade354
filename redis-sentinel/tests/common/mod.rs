//! Helpers the sentinel test binaries share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_conn::Cmd;
use redis_sentinel::SentinelClient;

/// Tasks writing unique keys through the client until stopped, recording each acknowledged key
/// with when it was acknowledged.
pub(crate) struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// `n` writers, each pausing `pause` between writes.
    pub(crate) fn start(client: &SentinelClient, n: usize, pause: Duration) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let tasks = (0..n)
            .map(|w| {
                let (client, stop, acked) = (client.clone(), Arc::clone(&stop), Arc::clone(&acked));
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let key = format!("w{w}:{i}");
                        if client
                            .send(Cmd::new("SET").arg(&key).arg("v"))
                            .await
                            .is_ok()
                        {
                            acked.lock().unwrap().push((key, Instant::now()));
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acked, tasks }
    }

    /// Stops them and returns every acknowledged key with its time.
    pub(crate) async fn stop(self) -> Vec<(String, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}
