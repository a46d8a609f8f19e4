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

pub fn from_service(svc: &Service, image: &Image) -> Result<Supervision, String> {
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
    let healthcheck = healthcheck(svc.healthcheck.as_ref(), image.healthcheck.as_ref())?;
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

/// The healthcheck, as Docker merges the service's over the image's `HEALTHCHECK`: each field
/// the service leaves out (the test too) comes from the image, then Docker's defaults. `NONE`
/// (or `disable: true`) means none.
fn healthcheck(
    h: Option<&crate::compose::Healthcheck>,
    image: Option<&crate::engine::build::config::Healthcheck>,
) -> Result<Option<HealthSpec>, String> {
    if h.is_some_and(|h| h.disable) || (h.is_none() && image.is_none()) {
        return Ok(None);
    }
    let test = h
        .and_then(|h| h.test.clone())
        .filter(|t| !t.is_empty())
        .or_else(|| image.map(|i| i.test.clone()))
        .unwrap_or_default();
    let args = match test.first().map(String::as_str) {
        None | Some("NONE") => return Ok(None),
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        Some(other) => {
            return Err(format!(
                "healthcheck test must start with CMD, CMD-SHELL or NONE, not {other:?}"
            ));
        }
    };
    if args.is_empty() {
        return Ok(None);
    }
    // The service's value, else the image's (nanoseconds; 0 is unset), else the default.
    let ms = |v: Option<&String>, from_image: Option<u64>, default: u64, key: &str| match v {
        Some(s) => parse_duration(s)
            .map(|d| d.as_millis() as u64)
            .ok_or_else(|| format!("healthcheck {key}: invalid duration {s:?}")),
        None => Ok(from_image
            .filter(|n| *n > 0)
            .map_or(default, |n| n / 1_000_000)),
    };
    Ok(Some(HealthSpec {
        args,
        interval_ms: ms(
            h.and_then(|h| h.interval.as_ref()),
            image.and_then(|i| i.interval),
            INTERVAL_MS,
            "interval",
        )?,
        timeout_ms: ms(
            h.and_then(|h| h.timeout.as_ref()),
            image.and_then(|i| i.timeout),
            TIMEOUT_MS,
            "timeout",
        )?,
        retries: h
            .and_then(|h| h.retries)
            .map(|r| r.max(0) as u32)
            .or_else(|| {
                image
                    .and_then(|i| i.retries)
                    .filter(|r| *r > 0)
                    .map(|r| r as u32)
            })
            .unwrap_or(RETRIES),
        start_period_ms: ms(
            h.and_then(|h| h.start_period.as_ref()),
            image.and_then(|i| i.start_period),
            0,
            "start_period",
        )?,
        start_interval_ms: ms(
            h.and_then(|h| h.start_interval.as_ref()),
            image.and_then(|i| i.start_interval),
            START_INTERVAL_MS,
            "start_interval",
        )?,
    }))
}

#[cfg(test)]
mod healthcheck_tests {
    use super::healthcheck;
    use crate::compose::Healthcheck;
    use crate::engine::build::config::Healthcheck as ImageCheck;

    fn image() -> ImageCheck {
        ImageCheck {
            test: vec!["CMD".into(), "true".into()],
            interval: Some(5_000_000_000),
            retries: Some(2),
            ..Default::default()
        }
    }

    #[test]
    fn the_image_healthcheck_is_used_and_the_service_overrides_it_field_by_field() {
        let h = healthcheck(None, Some(&image())).unwrap().unwrap();
        assert_eq!(h.args, ["true"]);
        assert_eq!((h.interval_ms, h.retries, h.timeout_ms), (5_000, 2, 30_000));
        let svc = Healthcheck {
            interval: Some("1s".into()),
            ..Default::default()
        };
        let h = healthcheck(Some(&svc), Some(&image())).unwrap().unwrap();
        assert_eq!(
            (h.args.clone(), h.interval_ms, h.retries),
            (vec!["true".to_string()], 1_000, 2)
        );
        let svc = Healthcheck {
            test: Some(vec!["CMD-SHELL".into(), "exit 0".into()]),
            ..Default::default()
        };
        let h = healthcheck(Some(&svc), Some(&image())).unwrap().unwrap();
        assert_eq!(h.args, ["/bin/sh", "-c", "exit 0"]);
        assert_eq!(h.interval_ms, 5_000);
        // disable, NONE.
        let off = Healthcheck {
            disable: true,
            ..Default::default()
        };
        assert!(healthcheck(Some(&off), Some(&image())).unwrap().is_none());
        let none = Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert!(healthcheck(Some(&none), Some(&image())).unwrap().is_none());
        assert!(healthcheck(None, None).unwrap().is_none());
    }
}
