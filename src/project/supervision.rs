//! Compose `restart`, `deploy.restart_policy` and `healthcheck` to the shim's supervision.
use crate::compose::Service;
use crate::compose::normalize::parse_duration;
use crate::engine::container::{HealthSpec, RestartPolicy, Supervision};
use crate::engine::image::Image;
use crate::engine::logs::LogLimits;

/// Docker's healthcheck defaults.
const INTERVAL_MS: u64 = 30_000;
const TIMEOUT_MS: u64 = 30_000;
const RETRIES: u32 = 3;
const START_INTERVAL_MS: u64 = 5_000;

pub fn from_service(svc: &Service, _image: &Image) -> Result<Supervision, String> {
    let restart = match (
        &svc.restart,
        svc.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()),
    ) {
        (Some(r), _) => RestartPolicy::parse(r).ok_or_else(|| {
            format!(
                "invalid restart policy {r:?}: use no, always, on-failure[:N] or unless-stopped"
            )
        })?,
        (None, Some(p)) => match p.condition.as_deref().unwrap_or("any") {
            "none" => RestartPolicy::No,
            "on-failure" => RestartPolicy::OnFailure {
                max_retries: p.max_attempts.unwrap_or(0).max(0) as u32,
            },
            _ => RestartPolicy::Always,
        },
        (None, None) => RestartPolicy::No,
    };
    let healthcheck = match &svc.healthcheck {
        None => None,
        Some(h) if h.disable => None,
        Some(h) => {
            let test = h.test.clone().unwrap_or_default();
            let args = match test.first().map(String::as_str) {
                None | Some("NONE") => None,
                Some("CMD") => Some(test[1..].to_vec()),
                Some("CMD-SHELL") => Some(vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]),
                Some(other) => {
                    return Err(format!(
                        "healthcheck test must start with CMD, CMD-SHELL or NONE, not {other:?}"
                    ));
                }
            };
            let ms = |v: &Option<String>, default: u64, key: &str| -> Result<u64, String> {
                match v {
                    None => Ok(default),
                    Some(s) => parse_duration(s)
                        .map(|d| d.as_millis() as u64)
                        .ok_or_else(|| format!("healthcheck {key}: invalid duration {s:?}")),
                }
            };
            match args {
                None => None,
                Some(args) if args.is_empty() => None,
                Some(args) => Some(HealthSpec {
                    args,
                    interval_ms: ms(&h.interval, INTERVAL_MS, "interval")?,
                    timeout_ms: ms(&h.timeout, TIMEOUT_MS, "timeout")?,
                    retries: h.retries.map_or(RETRIES, |r| r.max(0) as u32),
                    start_period_ms: ms(&h.start_period, 0, "start_period")?,
                    start_interval_ms: ms(&h.start_interval, START_INTERVAL_MS, "start_interval")?,
                }),
            }
        }
    };
    let logs = match &svc.logging {
        Some(l)
            if l.driver
                .as_deref()
                .is_none_or(|d| d == "json-file" || d == "local") =>
        {
            LogLimits::from_options(&l.options)?
        }
        Some(l) => {
            return Err(format!(
                "logging driver {:?} is not supported (only json-file)",
                l.driver.as_deref().unwrap_or_default()
            ));
        }
        None => LogLimits::default(),
    };
    Ok(Supervision {
        restart,
        healthcheck,
        logs,
    })
}
