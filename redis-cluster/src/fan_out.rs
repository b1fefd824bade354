//! Tasks run at once, one per node, their outcomes gathered as they end: the shares of a
//! pipeline, a command sent to every master, the views asked at a refresh.
//!
//! A task that panicked (or was cancelled) is reported as [`ClusterError::TaskFailed`], an
//! error that says the command may have run, not as some other failure it is not.

use std::future::Future;

use redis_conn::Sent;
use tokio::task::JoinSet;

use crate::ClusterError;

/// Tasks started together, awaited together.
pub(crate) struct FanOut<T> {
    tasks: JoinSet<Result<T, ClusterError>>,
}

impl<T: Send + 'static> FanOut<T> {
    /// No task yet.
    pub(crate) fn new() -> FanOut<T> {
        FanOut {
            tasks: JoinSet::new(),
        }
    }

    /// Starts `work` in a task of its own.
    pub(crate) fn spawn(
        &mut self,
        work: impl Future<Output = Result<T, ClusterError>> + Send + 'static,
    ) {
        self.tasks.spawn(work);
    }

    /// The outcome of the next task to end; `None` when every task has been gathered.
    pub(crate) async fn next(&mut self) -> Option<Result<T, ClusterError>> {
        let joined = self.tasks.join_next().await?;
        Some(joined.unwrap_or_else(|e| {
            Err(ClusterError::TaskFailed {
                reason: e.to_string(),
            })
        }))
    }

    /// Awaits every task, handing each success to `each` as it ends. The first failure is the
    /// answer for the whole; if anything else ran (another task, or what the caller sent
    /// before: `ran_before`), it says the whole may have run, whatever the failed part's own
    /// delivery.
    pub(crate) async fn gather(
        mut self,
        ran_before: bool,
        mut each: impl FnMut(T),
    ) -> Result<(), ClusterError> {
        let mut ran = ran_before;
        let mut failure: Option<ClusterError> = None;
        while let Some(outcome) = self.next().await {
            match outcome {
                Ok(done) => {
                    ran = true;
                    each(done);
                }
                Err(e) => {
                    ran |= e.sent() != Some(Sent::No);
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) if ran => Err(e.partly_sent()),
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_conn::Error;

    fn lost(sent: Sent) -> ClusterError {
        ClusterError::Node(Error::ConnectionLost {
            addr: "n".into(),
            reason: "reset".into(),
            sent,
        })
    }

    #[tokio::test]
    async fn every_success_is_handed_over_and_no_failure_is_ok() {
        let mut tasks = FanOut::new();
        for n in 1..=3 {
            tasks.spawn(async move { Ok(n) });
        }
        let mut sum = 0;
        tasks.gather(false, |n| sum += n).await.unwrap();
        assert_eq!(sum, 6);
    }

    #[tokio::test]
    async fn a_failure_alone_keeps_its_delivery_and_one_beside_a_success_may_have_run() {
        let mut alone = FanOut::<()>::new();
        alone.spawn(async { Err(lost(Sent::No)) });
        let err = alone.gather(false, |()| {}).await.unwrap_err();
        assert_eq!(err.sent(), Some(Sent::No));

        let mut beside = FanOut::new();
        beside.spawn(async { Err(lost(Sent::No)) });
        beside.spawn(async { Ok(()) });
        let err = beside.gather(false, |()| {}).await.unwrap_err();
        assert_eq!(err.sent(), Some(Sent::Maybe));

        let mut after = FanOut::<()>::new();
        after.spawn(async { Err(lost(Sent::No)) });
        let err = after.gather(true, |()| {}).await.unwrap_err();
        assert_eq!(err.sent(), Some(Sent::Maybe), "what ran before counts");
    }

    #[tokio::test]
    async fn a_panicked_task_is_a_failed_task_that_may_have_run() {
        let mut tasks = FanOut::<()>::new();
        tasks.spawn(async { panic!("boom") });
        let err = tasks.gather(false, |()| {}).await.unwrap_err();
        assert!(
            matches!(&err, ClusterError::TaskFailed { reason } if reason.contains("panicked")),
            "{err:?}"
        );
        assert_eq!(err.sent(), Some(Sent::Maybe));
        assert_eq!(err.kind(), "task_failed");
    }
}
