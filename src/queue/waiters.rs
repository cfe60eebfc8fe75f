//! Blocking for work on several queues of a Redis Cluster. Their notify lists sit in
//! different slots, usually on different nodes, and one `BLPOP` may not span slots; so each
//! queue gets a thread blocked on its own node, and the worker takes the first wake-up.
//!
//! A thread that woke (and so took one notify entry) waits until the worker comes back to
//! wait again, which means it reserved what there was: the thread then blocks again. So no
//! thread drains notify entries while the worker is busy, and none polls.

use super::{Keys, block_pop};
use crate::redis_conn::{self, RedisConfig, RedisError, Router};
use crate::shutdown::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// How long one thread's `BLPOP` blocks before it checks whether it should stop.
const BLOCK: Duration = Duration::from_secs(2);

/// One blocked thread per queue, and what they report.
pub(super) struct Waiters {
    woke: Receiver<Result<String, RedisError>>,
    /// Per queue: its name, whether it woke since the last wait, and how to let it block again.
    queues: Vec<(String, bool, Sender<()>)>,
    stop: Arc<AtomicBool>,
}

impl Waiters {
    /// Starts one thread per queue in `names`.
    pub(super) fn start(
        server: &RedisConfig,
        names: &[String],
        prefix: &str,
        shutdown: Option<Shutdown>,
    ) -> Waiters {
        let (tx, woke) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut queues = Vec::with_capacity(names.len());
        for name in names {
            let (rearm, rearmed) = mpsc::channel();
            let waiter = Waiter {
                router: Router::lazy(server, redis_conn::IO_TIMEOUT),
                notify: Keys::new(prefix, name).notify,
                name: name.clone(),
                woke: tx.clone(),
                rearmed,
                stop: Arc::clone(&stop),
            };
            let shutdown = shutdown.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wait {name}"))
                .spawn(move || waiter.run(shutdown));
            if let Err(e) = spawned {
                let _ = tx.send(Err(RedisError {
                    target: server.describe(),
                    reason: format!("cannot start a thread to wait on queue {name:?}: {e}"),
                    dropped: true,
                }));
            }
            queues.push((name.clone(), false, rearm));
        }
        Waiters { woke, queues, stop }
    }

    /// Lets the queues that woke block again (their job was reserved, or taken by another
    /// worker), then waits up to `timeout` for the first wake-up.
    pub(super) fn wait(&mut self, timeout: Duration) -> Result<Option<String>, RedisError> {
        for (_, woke, rearm) in &mut self.queues {
            if std::mem::take(woke) {
                let _ = rearm.send(());
            }
        }
        match self.woke.recv_timeout(timeout) {
            Ok(Ok(name)) => {
                if let Some(q) = self.queues.iter_mut().find(|q| q.0 == name) {
                    q.1 = true;
                }
                Ok(Some(name))
            }
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(RedisError {
                target: "queue waiters".into(),
                reason: "every wait thread ended".into(),
                dropped: true,
            }),
        }
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        // Threads blocked in BLPOP see the flag within BLOCK; those waiting to be re-armed
        // see their channel close at once.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One queue's thread.
struct Waiter {
    router: Router,
    notify: String,
    name: String,
    woke: Sender<Result<String, RedisError>>,
    rearmed: Receiver<()>,
    stop: Arc<AtomicBool>,
}

impl Waiter {
    fn run(mut self, shutdown: Option<Shutdown>) {
        if let Some(shutdown) = &shutdown {
            self.router.stop_on(shutdown);
        }
        let notify = [self.notify.clone()];
        while !self.stop.load(Ordering::Relaxed) {
            let popped = self.router.run(Some(&self.notify), |con| {
                block_pop(con, &notify, BLOCK, redis_conn::IO_TIMEOUT)
            });
            match popped {
                Ok(None) => {}
                Ok(Some(_)) => {
                    if self.woke.send(Ok(self.name.clone())).is_err()
                        || self.rearmed.recv().is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    // The worker reconnects, which starts fresh threads.
                    let _ = self.woke.send(Err(e));
                    return;
                }
            }
        }
    }
}
