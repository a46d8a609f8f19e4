//! Healthchecks, run by the shim: Docker's schedule (interval, or start_interval during the
//! start period), timeout, retries, and the states starting / healthy / unhealthy.
//!
//! The checker is a small state machine driven by the shim's poll loop: `next_wakeup` says how
//! long the loop may sleep, `tick` starts a check when it is due and collects its result.
use super::container::{ContainerRecord, Health, HealthResult, HealthSpec, HealthStatus};
use super::exec::{self, ExecSpec};
use crate::state::Paths;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Docker keeps the last five results and 4 KiB of output of each.
const KEEP_RESULTS: usize = 5;
const MAX_OUTPUT: usize = 4096;

struct Running {
    pid: Pid,
    out: Option<File>,
    output: Vec<u8>,
    began: String,
    deadline: Instant,
}

pub struct Checker {
    spec: HealthSpec,
    started: Instant,
    next_at: Instant,
    running: Option<Running>,
}

impl Checker {
    pub fn new(spec: HealthSpec, started: Instant) -> Checker {
        let mut c = Checker {
            spec,
            started,
            next_at: started,
            running: None,
        };
        c.next_at = started + c.interval(started);
        c
    }

    fn in_start_period(&self, now: Instant) -> bool {
        now < self.started + Duration::from_millis(self.spec.start_period_ms)
    }

    fn interval(&self, now: Instant) -> Duration {
        if self.in_start_period(now) && self.spec.start_interval_ms > 0 {
            Duration::from_millis(self.spec.start_interval_ms)
        } else {
            Duration::from_millis(self.spec.interval_ms.max(1))
        }
    }

    /// How long the caller may wait before calling `tick` again.
    pub fn next_wakeup(&self, now: Instant) -> Duration {
        match &self.running {
            Some(r) if r.out.is_none() => Duration::from_millis(10),
            Some(r) => r.deadline.saturating_duration_since(now),
            None => self.next_at.saturating_duration_since(now),
        }
    }

    /// The running check's output pipe, to be polled for reading.
    pub fn output_fd(&self) -> Option<BorrowedFd<'_>> {
        self.running.as_ref()?.out.as_ref().map(|f| f.as_fd())
    }

    /// Advances the schedule; returns a result when a check finished.
    pub fn tick(
        &mut self,
        paths: &Paths,
        rec: &ContainerRecord,
        now: Instant,
        readable: bool,
    ) -> Option<HealthResult> {
        let Some(r) = self.running.as_mut() else {
            if now >= self.next_at && super::control::paused(paths, &rec.id) {
                // Docker does not probe a paused container: its check would freeze too.
                self.next_at = now + self.interval(now);
            } else if now >= self.next_at {
                self.start(paths, rec, now);
            }
            return None;
        };
        if readable && let Some(out) = r.out.as_mut() {
            let mut buf = [0u8; 4096];
            match out.read(&mut buf) {
                Ok(0) | Err(_) => r.out = None,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(r.output.len());
                    r.output.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let exit = match waitpid(r.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => Some(c),
            Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
            Ok(_) => None,
            Err(_) => Some(-1),
        };
        let (code, output) = match exit {
            // Collect the output to its end first, unless the process is gone and silent.
            Some(c) if r.out.is_none() || !readable => {
                (c, String::from_utf8_lossy(&r.output).into_owned())
            }
            Some(_) => return None,
            None if now >= r.deadline => {
                let _ = kill(r.pid, Signal::SIGKILL);
                let _ = waitpid(r.pid, None);
                let timeout = Duration::from_millis(self.spec.timeout_ms);
                (
                    -1,
                    format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64()),
                )
            }
            None => return None,
        };
        let began = r.began.clone();
        self.running = None;
        self.next_at = now + self.interval(now);
        Some(HealthResult {
            start: began,
            end: super::logs::now(),
            exit_code: code,
            output,
        })
    }

    fn start(&mut self, paths: &Paths, rec: &ContainerRecord, now: Instant) {
        let failed = |me: &mut Checker, msg: String| {
            // Could not even start the check: count it as a failed check at the next tick.
            me.next_at = now + me.interval(now);
            tracing::warn!("healthcheck of {}: {msg}", rec.name);
        };
        let (r, w) = match nix::unistd::pipe() {
            Ok(p) => p,
            Err(e) => return failed(self, e.to_string()),
        };
        let null: OwnedFd = match File::open("/dev/null") {
            Ok(f) => f.into(),
            Err(e) => return failed(self, e.to_string()),
        };
        let w2 = match w.try_clone() {
            Ok(w2) => w2,
            Err(e) => return failed(self, e.to_string()),
        };
        let spec = ExecSpec {
            args: self.spec.args.clone(),
            ..Default::default()
        };
        match exec::spawn(paths, rec, &spec, [null, w, w2]) {
            Ok(pid) => {
                self.running = Some(Running {
                    pid,
                    out: Some(File::from(r)),
                    output: Vec::new(),
                    began: super::logs::now(),
                    deadline: now + Duration::from_millis(self.spec.timeout_ms.max(1)),
                });
            }
            Err(e) => {
                self.running = None;
                failed(self, e.to_string());
            }
        }
    }

    /// Applies a result to the container's health, as Docker does: a success makes it healthy;
    /// failures during the start period do not count; `retries` failures in a row make it
    /// unhealthy.
    pub fn record(&self, health: &mut Health, result: HealthResult) {
        let in_start = self.in_start_period(Instant::now());
        if result.exit_code == 0 {
            health.status = HealthStatus::Healthy;
            health.failing_streak = 0;
        } else if !(in_start && health.status == HealthStatus::Starting) {
            health.failing_streak += 1;
            if health.failing_streak >= self.spec.retries.max(1) {
                health.status = HealthStatus::Unhealthy;
            }
        }
        health.log.push(result);
        if health.log.len() > KEEP_RESULTS {
            health.log.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HealthSpec {
        HealthSpec {
            args: vec!["true".into()],
            interval_ms: 1000,
            timeout_ms: 500,
            retries: 2,
            start_period_ms: 0,
            start_interval_ms: 100,
        }
    }

    fn result(code: i32) -> HealthResult {
        HealthResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn schedule_follows_interval_and_start_interval() {
        let t0 = Instant::now();
        let c = Checker::new(spec(), t0);
        assert_eq!(c.next_wakeup(t0), Duration::from_millis(1000));
        let mut s = spec();
        s.start_period_ms = 10_000;
        let c = Checker::new(s, t0);
        assert_eq!(c.next_wakeup(t0), Duration::from_millis(100));
    }

    #[test]
    fn retries_failures_make_it_unhealthy_and_a_success_heals() {
        let c = Checker::new(spec(), Instant::now());
        let mut h = Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: vec![],
        };
        c.record(&mut h, result(1));
        assert_eq!(h.status, HealthStatus::Starting);
        c.record(&mut h, result(1));
        assert_eq!(h.status, HealthStatus::Unhealthy);
        c.record(&mut h, result(0));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
        for _ in 0..10 {
            c.record(&mut h, result(0));
        }
        assert_eq!(h.log.len(), KEEP_RESULTS);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut s = spec();
        s.start_period_ms = 60_000;
        let c = Checker::new(s, Instant::now());
        let mut h = Health {
            status: HealthStatus::Starting,
            failing_streak: 0,
            log: vec![],
        };
        for _ in 0..5 {
            c.record(&mut h, result(1));
        }
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
    }
}
