//! The thread the rule engine evaluates on: one of its own, below the ingest path's CPU
//! priority.
//!
//! Issue 7 asks the engine to run "in its own task, never slowing ingest". Evaluation is CPU
//! work on every committed event; on the shared blocking pool it competed as an equal with the
//! ledger writer, the indexer and the request threads, so under full ingest load a slice it
//! took could hold back a group commit. Here it runs on a thread with a higher nice value (Linux
//! keeps nice per thread): when the cores are busy the ingest path goes first and the engine
//! takes what is left — at nice 5 about a seventh of a core shared with two busy threads, well
//! above the ~0.1 core the default pack needs at 50,000 events/s — and when they are not, it
//! runs at once. Everything that stores or sends alerts stays on the async runtime.

use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, mpsc};

type Job = Box<dyn FnOnce() + Send>;

/// How far the evaluation thread's nice value is raised above the process's (the ingest
/// path's).
pub(crate) const RULE_THREAD_NICE: i32 = 5;

/// Runs work on the rule engine's thread, started at first use and ended when this is dropped.
#[derive(Default)]
pub(crate) struct RuleThread {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl RuleThread {
    /// Runs `work` on the thread and returns what it returned; an error when the thread cannot
    /// be started or `work` panicked (the thread goes on with the next work).
    pub(crate) async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.sender()?.send(job).map_err(|_| "the rule engine's thread has stopped".to_string())?;
        answer.await.map_err(|_| "the rule evaluation panicked".to_string())
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, String> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = jobs.as_ref() {
            return Ok(sender.clone());
        }
        let (sender, receiver) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("veritrail-rules".into())
            .spawn(move || {
                lower_priority();
                while let Ok(job) = receiver.recv() {
                    // A panic drops the job's reply: its caller gets an error, the thread goes on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map_err(|error| format!("cannot start the rule engine's thread: {error}"))?;
        *jobs = Some(sender.clone());
        Ok(sender)
    }
}

/// Raises the calling thread's nice value by [`RULE_THREAD_NICE`] (to at most 19, the lowest
/// priority); logs and goes on where it cannot.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let lowered =
            getpriority_process(me).and_then(|nice| setpriority_process(me, (nice + RULE_THREAD_NICE).min(19)));
        if let Err(error) = lowered {
            tracing::warn!(%error, "cannot lower the rule engine thread's priority; it runs at the ingest path's");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_one_lower_priority_thread_that_survives_a_panic() {
        let thread = RuleThread::default();
        let (name, nice) = thread
            .run(|| {
                let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
                (std::thread::current().name().map(str::to_owned), nice)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("veritrail-rules"));
        // Relative to the test process's own nice (a test runner may be niced already).
        let own = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(nice, (own + RULE_THREAD_NICE).min(19));
        let panicked = thread.run(|| -> u32 { panic!("a rule evaluation bug") }).await;
        assert_eq!(panicked.unwrap_err(), "the rule evaluation panicked");
        assert_eq!(thread.run(|| 7).await.unwrap(), 7, "the thread goes on after a panic");
    }
}
