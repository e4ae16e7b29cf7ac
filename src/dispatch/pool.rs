//! The threads (or the manual queue) that run jobs.
//!
//! Calls go to one shared queue that any worker takes from. Events and player lifecycle jobs of
//! one connection go to a fixed worker's lane, so they run in the order they arrived. In manual
//! mode there is a single queue, pumped by `pump` on the engine's thread.
//!
//! A worker that blocks in a nested invoke (a handler calling the other side and waiting) must
//! not starve the pool: [`blocking_section`] counts it as blocked, and when fewer than the
//! configured number of workers remain free a helper thread is started. Helpers serve the
//! shared queue and exit once the pool is back above strength and they are idle.

use super::{DispatchMode, Job};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use crossbeam_utils::Backoff;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs one job; supplied by the endpoint that owns the pool. Returns whether a callback of
/// the game's ran (what manual dispatch counts).
pub(crate) type Runner = Arc<dyn Fn(Job) -> bool + Send + Sync>;

/// Extra threads the pool may start for workers blocked in nested calls.
const MAX_HELPERS: usize = 256;
/// How long a surplus helper waits for work before exiting.
const HELPER_IDLE: Duration = Duration::from_millis(500);

struct Shared {
    mode: DispatchMode,
    target: usize,
    any: (Sender<Job>, Receiver<Job>),
    lanes: Vec<(Sender<Job>, Receiver<Job>)>,
    stop: Mutex<Option<Sender<()>>>,
    stopped: Receiver<()>,
    live: AtomicUsize,
    blocked: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    runner: Runner,
    name: String,
}

/// A worker pool, or a manual queue.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

thread_local! {
    static CURRENT_POOL: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

impl Pool {
    /// Starts `workers` threads (none in manual mode) running jobs through `runner`.
    pub(crate) fn start(mode: DispatchMode, workers: usize, runner: Runner, name: &str) -> Pool {
        let workers = workers.max(1);
        let lanes = match mode {
            DispatchMode::Workers => (0..workers).map(|_| unbounded()).collect(),
            DispatchMode::Manual => Vec::new(),
        };
        let (stop_tx, stop_rx) = unbounded();
        let shared = Arc::new(Shared {
            mode,
            target: workers,
            any: unbounded(),
            lanes,
            stop: Mutex::new(Some(stop_tx)),
            stopped: stop_rx,
            live: AtomicUsize::new(0),
            blocked: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            runner,
            name: name.to_owned(),
        });
        if mode == DispatchMode::Workers {
            for lane in 0..workers {
                spawn(&shared, Some(lane));
            }
        }
        Pool { shared }
    }

    /// Queues a job: on its connection's lane when it must keep its order, else on the shared
    /// queue.
    pub(crate) fn submit(&self, job: Job) {
        let s = &self.shared;
        let tx = match (job.ordering_key(), s.lanes.len()) {
            (Some(key), lanes) if lanes > 0 => &s.lanes[(key % lanes as u64) as usize].0,
            _ => &s.any.0,
        };
        // The receivers live as long as `Shared`, so sending cannot fail.
        let _ = tx.send(job);
    }

    /// Manual mode: runs queued jobs on this thread until `max` of the game's callbacks have
    /// run, waiting up to `timeout` for the first. Returns how many callbacks ran: internal
    /// jobs that call nothing (a player hook job with no hook, a call queued for a name not yet
    /// bound) are run but not counted, and do not end the wait.
    pub(crate) fn pump(&self, max: usize, timeout: Duration) -> usize {
        let s = &self.shared;
        let deadline = Instant::now().checked_add(timeout);
        let mut ran = 0;
        while ran < max {
            let job = match (ran, deadline) {
                (0, Some(deadline)) => s.any.1.recv_deadline(deadline).ok(),
                (0, None) => s.any.1.recv().ok(),
                _ => s.any.1.try_recv().ok(),
            };
            let Some(job) = job else { break };
            if (s.runner)(job) {
                ran += 1;
            }
        }
        ran
    }

    /// Jobs queued and not yet taken by a worker (or by `pump`).
    pub(crate) fn queued(&self) -> usize {
        let s = &self.shared;
        s.any.1.len() + s.lanes.iter().map(|lane| lane.1.len()).sum::<usize>()
    }

    /// The dispatch mode.
    pub(crate) fn mode(&self) -> DispatchMode {
        self.shared.mode
    }

    /// Stops the threads and joins them (except the calling thread, if it is one of them).
    pub(crate) fn shutdown(&self) {
        self.shared.stop.lock().take();
        let me = std::thread::current().id();
        loop {
            let threads: Vec<_> = std::mem::take(&mut *self.shared.threads.lock());
            if threads.is_empty() {
                break;
            }
            for t in threads {
                if t.thread().id() != me {
                    let _ = t.join();
                }
            }
        }
        // Drop queued work (it may hold references back to the endpoint).
        while self.shared.any.1.try_recv().is_ok() {}
        for lane in &self.shared.lanes {
            while lane.1.try_recv().is_ok() {}
        }
    }
}

fn spawn(shared: &Arc<Shared>, lane: Option<usize>) {
    shared.live.fetch_add(1, Ordering::SeqCst);
    let s = shared.clone();
    let name = match lane {
        Some(i) => format!("{}-worker-{i}", shared.name),
        None => format!("{}-helper", shared.name),
    };
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        CURRENT_POOL.with(|c| *c.borrow_mut() = Some(s.clone()));
        match lane {
            Some(i) => run_worker(&s, i),
            None => run_helper(&s),
        }
        s.live.fetch_sub(1, Ordering::SeqCst);
        CURRENT_POOL.with(|c| c.borrow_mut().take());
    });
    match handle {
        Ok(h) => {
            let mut threads = shared.threads.lock();
            threads.retain(|t| !t.is_finished());
            threads.push(h);
        }
        Err(e) => {
            shared.live.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("cannot start a dispatch thread: {e}");
        }
    }
}

fn run(s: &Shared, job: Job) {
    let _ = (s.runner)(job);
}

fn run_worker(s: &Shared, lane: usize) {
    let lane_rx = &s.lanes[lane].1;
    loop {
        // Spin, then yield, briefly before parking (as a blocking crossbeam receive does on one
        // channel): under load the next job comes within microseconds, and a parked worker
        // costs the reactor a futex wake per job.
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            if let Ok(job) = lane_rx.try_recv().or_else(|_| s.any.1.try_recv()) {
                run(s, job);
                backoff.reset();
            } else {
                backoff.snooze();
            }
        }
        select! {
            recv(lane_rx) -> job => match job { Ok(job) => run(s, job), Err(_) => return },
            recv(s.any.1) -> job => match job { Ok(job) => run(s, job), Err(_) => return },
            recv(s.stopped) -> _ => return,
        }
    }
}

fn run_helper(s: &Shared) {
    loop {
        select! {
            recv(s.any.1) -> job => match job { Ok(job) => run(s, job), Err(_) => return },
            recv(s.stopped) -> _ => return,
            default(HELPER_IDLE) => {}
        }
        let free = s.live.load(Ordering::SeqCst) - s.blocked.load(Ordering::SeqCst);
        if free > s.target {
            return;
        }
    }
}

/// Marks the current thread as blocked for as long as the guard lives (a caller waiting on a
/// reply). On a pool thread, this may start a helper so the pool keeps serving.
pub(crate) fn blocking_section() -> BlockingGuard {
    let pool = CURRENT_POOL.with(|c| c.borrow().clone());
    if let Some(s) = &pool {
        let blocked = s.blocked.fetch_add(1, Ordering::SeqCst) + 1;
        let live = s.live.load(Ordering::SeqCst);
        if live.saturating_sub(blocked) < s.target
            && live < s.target + MAX_HELPERS
            && s.stop.lock().is_some()
        {
            spawn(s, None);
        }
    }
    BlockingGuard { pool }
}

/// See [`blocking_section`].
pub(crate) struct BlockingGuard {
    pool: Option<Arc<Shared>>,
}

impl Drop for BlockingGuard {
    fn drop(&mut self) {
        if let Some(s) = &self.pool {
            s.blocked.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
