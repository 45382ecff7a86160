//! Blocking work done from async code — SQLite commits (an fsync each with full
//! durability), waits for the store's connection, component compilation. On a
//! multi-threaded tokio runtime the worker first hands its other tasks to another thread
//! (`block_in_place`), so running guests and HTTP requests keep being served; anywhere
//! else the work simply runs.

/// Runs `work`, letting the tokio runtime (if this thread is one of its workers) move
/// its other tasks elsewhere meanwhile.
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_inline_without_a_runtime() {
        assert_eq!(blocking(|| 7), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_inline_on_a_current_thread_runtime() {
        assert_eq!(blocking(|| 8), 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn hands_the_worker_off_on_a_multi_thread_runtime() {
        // On the only worker, a task blocks until another task runs: the other can run
        // only if the worker was handed off.
        let blocked = tokio::spawn(async {
            let (sent, received) = std::sync::mpsc::channel();
            let other = tokio::spawn(async move { sent.send(9).unwrap() });
            let value = blocking(|| received.recv_timeout(std::time::Duration::from_secs(10)));
            other.await.unwrap();
            value
        });
        assert_eq!(blocked.await.unwrap(), Ok(9));
    }
}
