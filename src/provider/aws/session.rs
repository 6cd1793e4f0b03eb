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
/// with credentials that expire before EC2 reads it.
pub const RENEW_BEFORE: Duration = Duration::from_secs(600);

/// A credentials provider that keeps what `inner` gave until
/// [`RENEW_BEFORE`] its expiry.
pub struct SessionCache {
    inner: Arc<dyn ProvideCredentials>,
    held: Mutex<Option<Credentials>>,
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
        if let Some(c) = held.as_ref() {
            let fresh = c.expiry().is_none_or(|at| (self.now)() + RENEW_BEFORE < at);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self.inner.provide_credentials().await?;
        *held = Some(c.clone());
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Hands out sessions that last `lifetime` from a fixed clock.
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
            let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(1000) + self.lifetime;
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKIA{n}"),
                "secret",
                Some("token".into()),
                Some(expiry),
                "test",
            )))
        }
    }

    fn cache(lifetime: Duration, now: fn() -> SystemTime) -> (SessionCache, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut c = SessionCache::new(Sts {
            calls: calls.clone(),
            lifetime,
        });
        c.now = now;
        (c, calls)
    }

    #[tokio::test]
    async fn a_session_is_reused_until_it_nears_its_expiry() {
        // The clock stands 1000 s after the epoch, where sessions start.
        let (c, calls) = cache(Duration::from_secs(3600), || {
            SystemTime::UNIX_EPOCH + Duration::from_secs(1000)
        });
        for _ in 0..5 {
            c.provide_credentials().await.expect("credentials");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one AssumeRole");

        // The clock now stands 55 minutes into a one-hour session.
        let (c, calls) = cache(Duration::from_secs(3600), || {
            SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + 55 * 60)
        });
        let first = c.provide_credentials().await.expect("credentials");
        let second = c.provide_credentials().await.expect("credentials");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "renewed, not reused");
        assert_ne!(first.access_key_id(), second.access_key_id());
    }
}
