//! Client-side token buckets that keep apply inside EC2's request rates.
//!
//! EC2 throttles each account per region with token buckets, one per API
//! action: a bucket holds up to its burst of tokens, each call takes one,
//! and a few tokens come back each second ("Request throttling for the
//! Amazon EC2 API", EC2 developer guide). A call made on an empty bucket is
//! refused with `RequestLimitExceeded` and must be retried after a backoff,
//! so an apply that sends as fast as it can spends its time in backoffs,
//! and one with a fixed number of calls in flight either idles or is
//! throttled. Apply instead takes a token from its own copy of each bucket
//! before each call: a large apply then runs at EC2's sustained rate, with
//! no refusals and no idle gaps.
//!
//! The defaults are EC2's documented defaults for these actions (a burst of
//! 50 and 5 per second for CreateImage and CreateSnapshots, 200 and 5 per
//! second for the other mutating actions). AWS raises an account's limits
//! on request; `--api-rate ACTION=BURST/PER_SECOND` says so to backupctl.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The EC2 actions apply paces, with their default burst and refill rate.
pub const DEFAULTS: [(&str, f64, f64); 5] = [
    ("CreateImage", 50.0, 5.0),
    ("CreateTags", 200.0, 5.0),
    ("CreateSnapshots", 50.0, 5.0),
    ("DeregisterImage", 200.0, 5.0),
    ("DeleteSnapshot", 200.0, 5.0),
];

/// Burst and refill rate of one action's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_second: f64,
}

/// The rate of each paced action.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates(pub BTreeMap<String, Rate>);

impl Default for Rates {
    fn default() -> Self {
        Rates(
            DEFAULTS
                .iter()
                .map(|(action, burst, per_second)| {
                    (
                        action.to_string(),
                        Rate {
                            burst: *burst,
                            per_second: *per_second,
                        },
                    )
                })
                .collect(),
        )
    }
}

impl Rates {
    /// The defaults, changed by `ACTION=BURST/PER_SECOND` items (from
    /// `--api-rate`, or comma-separated in `BACKUPCTL_API_RATES`).
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Rates, String> {
        let mut rates = Rates::default();
        for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
            let known = || {
                DEFAULTS
                    .iter()
                    .map(|(a, _, _)| *a)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let bad = || {
                format!(
                    "invalid API rate {item:?}: expected ACTION=BURST/PER_SECOND with ACTION one of {}, BURST a whole number of at least 1 and PER_SECOND a number above 0 (for example CreateSnapshots=50/5)",
                    known()
                )
            };
            let (action, rate) = item.split_once('=').ok_or_else(bad)?;
            let (burst, per_second) = rate.split_once('/').ok_or_else(bad)?;
            let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
            let per_second: f64 = per_second.trim().parse().map_err(|_| bad())?;
            if burst < 1 || !(per_second > 0.0 && per_second.is_finite()) {
                return Err(bad());
            }
            let slot = rates.0.get_mut(action.trim()).ok_or_else(bad)?;
            *slot = Rate {
                burst: f64::from(burst),
                per_second,
            };
        }
        Ok(rates)
    }
}

/// Whether an error code is a throttling bucket's refusal: nothing was
/// done, and the call may be sent again once the bucket refills.
pub fn throttling(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException"
    )
}

/// The pause before re-sending a refused call, after `attempt` refusals:
/// exponential from 0.25 s up to 10 s, the lower half fixed and the upper
/// half random (so that refused callers spread out).
pub fn backoff(attempt: u32) -> Duration {
    let base = 250u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(10_000);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64
        % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

/// Tokens of each burst apply leaves unused, and the share of each refill
/// rate it uses (see [`Buckets::new`]).
const RESERVE: f64 = 2.0;
const SHARE: f64 = 0.97;

/// One bucket; tokens may go below zero, as reservations: a caller that
/// takes a token from an empty bucket is told how long to wait for it, so
/// callers are served in the order they asked.
struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn reserve(&mut self, n: f64, now: Instant) -> Duration {
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate.per_second;
        self.tokens = (self.tokens + refill).min(self.rate.burst);
        self.at = now;
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate.per_second)
        }
    }
}

/// The buckets of one region.
pub struct Buckets {
    buckets: BTreeMap<String, Mutex<Bucket>>,
}

impl Buckets {
    /// Full buckets: a run starts with EC2's burst available (another
    /// client of the same account may have spent some; then the SDK's
    /// retries absorb the difference).
    pub fn new(rates: &Rates) -> Buckets {
        let now = Instant::now();
        Buckets {
            buckets: rates
                .0
                .iter()
                .map(|(action, rate)| {
                    // A call paced exactly to EC2's bucket finds it just
                    // refilled: one that arrives a few milliseconds early
                    // (network jitter) is refused, and its retry takes a
                    // token of the next one. So apply leaves two tokens
                    // of the burst and 3% of the rate unused.
                    let rate = Rate {
                        burst: (rate.burst - RESERVE).max(1.0),
                        per_second: rate.per_second * SHARE,
                    };
                    let bucket = Bucket {
                        rate,
                        tokens: rate.burst,
                        at: now,
                    };
                    (action.clone(), Mutex::new(bucket))
                })
                .collect(),
        }
    }

    /// EC2 refused a call of `action` for an empty bucket: someone else
    /// (another run a moment before, another tool of the account) spent
    /// it, although this copy thought it full. The copy empties too, so
    /// that the calls after it go at the refill rate, not into refusals.
    pub fn refused(&self, action: &str) {
        if let Some(Ok(mut b)) = self.buckets.get(action).map(|b| b.lock()) {
            b.reserve(0.0, Instant::now());
            b.tokens = b.tokens.min(0.0);
        }
    }

    /// Waits until `n` calls of `action` may be sent. Actions without a
    /// bucket are not paced.
    pub async fn take(&self, action: &str, n: usize) {
        let wait = match self.buckets.get(action) {
            Some(bucket) => bucket
                .lock()
                .map(|mut b| b.reserve(n as f64, Instant::now()))
                .unwrap_or_default(),
            None => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_parsed_with_their_errors() {
        let rates = Rates::parse(["CreateSnapshots=100/10", " DeleteSnapshot = 20/2.5 "]).unwrap();
        assert_eq!(
            rates.0["CreateSnapshots"],
            Rate {
                burst: 100.0,
                per_second: 10.0
            }
        );
        assert_eq!(rates.0["DeleteSnapshot"].per_second, 2.5);
        assert_eq!(rates.0["CreateImage"], Rates::default().0["CreateImage"]);
        for bad in [
            "CreateSnapshots",
            "CreateSnapshots=100",
            "RunInstances=1/1",
            "CreateImage=0/1",
            "CreateImage=5/0",
            "CreateImage=x/1",
        ] {
            let e = Rates::parse([bad]).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("ACTION=BURST/PER_SECOND"),
                "{e}"
            );
        }
    }

    /// A refusal empties the copy of that action's bucket, and only that
    /// one: the next call waits for a token to be refilled.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_empties_the_bucket() {
        let rates = Rates::parse(["DeleteSnapshot=50/5"]).unwrap();
        let buckets = Buckets::new(&rates);
        let start = Instant::now();
        buckets.take("DeleteSnapshot", 1).await;
        buckets.take("CreateImage", 1).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is there");
        buckets.refused("DeleteSnapshot");
        buckets.take("CreateImage", 1).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "another action's bucket");
        buckets.take("DeleteSnapshot", 1).await;
        let waited = start.elapsed().as_secs_f64();
        let refill = 1.0 / (5.0 * SHARE);
        assert!((waited - refill).abs() < 0.01, "waited {waited} s");
    }

    /// 1,000 calls on a bucket of 50 refilled at 5 per second take the
    /// burst at once (but the reserve), then one call per 0.206 s: 196 s,
    /// within 1.1 times EC2's minimum of 190 s (tokio's paused clock, so
    /// the test takes no time).
    #[tokio::test(start_paused = true)]
    async fn a_bucket_paces_to_its_sustained_rate_and_no_slower() {
        let rates = Rates::parse(["CreateSnapshots=50/5"]).unwrap();
        let buckets = std::sync::Arc::new(Buckets::new(&rates));
        let start = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let b = buckets.clone();
            calls.spawn(async move {
                b.take("CreateSnapshots", 1).await;
                Instant::now()
            });
        }
        let mut sent = Vec::new();
        while let Some(t) = calls.join_next().await {
            sent.push(t.unwrap().duration_since(start).as_secs_f64());
        }
        sent.sort_by(f64::total_cmp);
        assert_eq!(sent.iter().filter(|t| **t == 0.0).count(), 48, "the burst");
        let last = sent[999];
        let minimum = (1000.0 - 50.0) / 5.0;
        let paced = (1000.0 - 48.0) / (5.0 * SHARE);
        assert!(
            (paced - 0.1..=paced + 0.1).contains(&last),
            "last call at {last} s"
        );
        assert!(
            last <= 1.1 * minimum,
            "{last} s against EC2's minimum {minimum} s"
        );
        // In no window of one second after the burst do more than 5 go.
        for (i, t) in sent.iter().enumerate().skip(50) {
            let within = sent[i..].iter().take_while(|u| **u < t + 1.0).count();
            assert!(within <= 6, "{within} calls in the second after {t} s");
        }
    }
}
