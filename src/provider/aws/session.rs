//! Role sessions in other accounts, one cache per account.
//!
//! aws-config's `AssumeRoleProvider` calls STS each time it is asked; the
//! SDK's default identity cache is shared by every client of one
//! configuration and holds 64 identities, evicting past that. An
//! organisation's run holds a session per account, for longer than an hour
//! (role chaining caps a session at one hour), so each account gets this
//! cache of its own: one AssumeRole (per role of the chain) per session,
//! the session renewed some minutes before it expires, never during a
//! call, and concurrent callers waiting for one renewal instead of each
//! making their own.

use aws_credential_types::provider::{self, future, ProvideCredentials};
use aws_credential_types::Credentials;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// How long before its expiry a session is renewed: more than the longest
/// call (the operation timeout is 300 s), so that no request is signed
/// with credentials that expire before EC2 reads it. A session shorter
/// than twice this is renewed halfway through its life instead.
pub const RENEW_BEFORE: Duration = Duration::from_secs(600);

/// A credentials provider that keeps what `inner` gave until
/// [`RENEW_BEFORE`] its expiry.
pub struct SessionCache {
    inner: Arc<dyn ProvideCredentials>,
    /// The session, and when it was obtained.
    held: Mutex<Option<(Credentials, SystemTime)>>,
    /// The clock, for tests.
    now: fn() -> SystemTime,
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCache").finish_non_exhaustive()
    }
}

impl SessionCache {
    pub fn new(inner: impl ProvideCredentials + 'static) -> SessionCache {
        SessionCache {
            inner: Arc::new(inner),
            held: Mutex::new(None),
            now: SystemTime::now,
        }
    }

    async fn get(&self) -> provider::Result {
        // One renewal at a time: callers arriving during it wait for it
        // and get its result.
        let mut held = self.held.lock().await;
        let now = (self.now)();
        if let Some((c, obtained)) = held.as_ref() {
            let fresh = c.expiry().is_none_or(|at| {
                let life = at.duration_since(*obtained).unwrap_or_default();
                now + RENEW_BEFORE.min(life / 2) < at
            });
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.inner.provide_credentials().await?;
        *held = Some((c.clone(), now));
        Ok(c)
    }
}

impl ProvideCredentials for SessionCache {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    thread_local! {
        /// The test's clock, in seconds after the epoch (each tokio test
        /// runs on a thread of its own).
        static CLOCK: Cell<u64> = const { Cell::new(1000) };
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(CLOCK.with(Cell::get))
    }

    fn advance(seconds: u64) {
        CLOCK.with(|c| c.set(c.get() + seconds));
    }

    /// Hands out sessions that last `lifetime` from the test's clock.
    #[derive(Debug)]
    struct Sts {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Sts {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKIA{n}"),
                "secret",
                Some("token".into()),
                Some(now() + self.lifetime),
                "test",
            )))
        }
    }

    fn cache(lifetime: Duration) -> (SessionCache, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut c = SessionCache::new(Sts {
            calls: calls.clone(),
            lifetime,
        });
        c.now = now;
        (c, calls)
    }

    async fn key(c: &SessionCache) -> String {
        let creds = c.provide_credentials().await.expect("credentials");
        creds.access_key_id().to_string()
    }

    #[tokio::test]
    async fn an_hour_long_session_is_kept_until_ten_minutes_before_it_expires() {
        let (c, calls) = cache(Duration::from_secs(3600));
        let first = key(&c).await;
        advance(49 * 60);
        assert_eq!(key(&c).await, first, "49 minutes in: kept");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one AssumeRole");
        advance(2 * 60);
        let second = key(&c).await;
        assert_ne!(second, first, "51 minutes in: renewed");
        assert_eq!(key(&c).await, second, "and the new one kept");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_short_session_is_renewed_halfway_through_its_life() {
        let (c, calls) = cache(Duration::from_secs(20));
        let first = key(&c).await;
        advance(9);
        assert_eq!(key(&c).await, first, "9 s into 20: kept");
        advance(2);
        assert_ne!(key(&c).await, first, "11 s into 20: renewed");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
