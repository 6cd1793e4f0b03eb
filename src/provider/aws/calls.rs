//! One diagnostic line per attempt of every AWS call, through `tracing`
//! (the SDK logs there too): action, region, attempt, outcome (HTTP status
//! or what kept the answer from arriving), latency and request id. Shown on
//! stderr at `-vv`, or with `RUST_LOG=backupctl=info`; never the request's
//! headers or body, so never credentials or signatures. The request ids
//! also go to the apply report ([`crate::provider::record_request_id`]).
//!
//! Also how the SDK's retries treat a throttled deletion: see
//! [`LeaveThrottlingToApply`].

use aws_sdk_ec2::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use std::marker::PhantomData;
use std::time::Instant;

#[derive(Debug)]
pub struct CallLog {
    pub region: String,
}

#[derive(Debug, Clone)]
struct Started(Instant);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "backupctl-call-log"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let answered_id = context.response().and_then(|r| {
            ["x-amzn-requestid", "x-amz-request-id"]
                .iter()
                .find_map(|h| r.headers().get(*h))
        });
        if let Some(id) = answered_id {
            crate::provider::record_request_id(id);
        }
        if !tracing::enabled!(target: "backupctl::aws", tracing::Level::INFO) {
            return Ok(());
        }
        let action = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let latency_ms = cfg
            .load::<Started>()
            .map_or(0, |s| s.0.elapsed().as_millis());
        let (outcome, request_id) = match context.response() {
            Some(r) => (
                format!("HTTP {}", r.status().as_u16()),
                answered_id.unwrap_or("-").to_string(),
            ),
            None => {
                let why = match context.output_or_error() {
                    Some(Err(e)) if e.is_timeout_error() => "timeout",
                    Some(Err(e)) if e.is_connector_error() => "no answer (connection failed)",
                    _ => "no answer",
                };
                (why.to_string(), "-".to_string())
            }
        };
        tracing::info!(
            target: "backupctl::aws",
            action = %action,
            region = %self.region,
            attempt,
            outcome = %outcome,
            latency_ms = latency_ms as u64,
            request_id = %request_id,
            "call"
        );
        Ok(())
    }
}

/// Keeps the SDK from re-sending a call of operation error `E` that EC2
/// refused for an empty throttling bucket; the refusal goes back to apply,
/// which empties its own copy of the bucket and sends the call again when
/// a token comes (see [`crate::rate`]). The SDK's retries follow no
/// bucket: when another client has just spent EC2's, every call in flight
/// is refused, and the re-sends, spread only by backoff, are refused again
/// until the SDK gives up on some (53 of 1,000 deletions failed, measured).
/// Other errors keep the SDK's retries.
#[derive(Debug)]
pub struct LeaveThrottlingToApply<E>(PhantomData<fn() -> E>);

impl<E> LeaveThrottlingToApply<E> {
    pub fn new() -> Self {
        LeaveThrottlingToApply(PhantomData)
    }
}

impl<E> ClassifyRetry for LeaveThrottlingToApply<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let code = match ctx.output_or_error() {
            Some(Err(e)) => e
                .as_operation_error()
                .and_then(|e| e.downcast_ref::<E>())
                .and_then(|e| e.code()),
            _ => None,
        };
        if code.is_some_and(crate::rate::throttling) {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "backupctl: throttled deletions go back to apply"
    }
}
