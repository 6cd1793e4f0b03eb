//! AMI deregistration protection, set and removed as a policy declares.
//!
//! It is observed with DescribeImages (no call of its own). Both calls are
//! idempotent (enabling an enabled image, or disabling a disabled one,
//! changes nothing), so the SDK's retries are safe.

use super::sdk_error;
use crate::provider::{Done, ProviderError};
use aws_sdk_ec2::Client;

/// EnableImageDeregistrationProtection.
pub async fn protect(
    client: &Client,
    image_id: &str,
    cooldown: bool,
) -> Result<Done, ProviderError> {
    client
        .enable_image_deregistration_protection()
        .image_id(image_id)
        .with_cooldown(cooldown)
        .send()
        .await
        .map_err(|e| sdk_error("EnableImageDeregistrationProtection", e))?;
    Ok(Done::Protected(image_id.to_string()))
}

/// DisableImageDeregistrationProtection, before the image's deregistration.
pub async fn unprotect(client: &Client, image_id: &str) -> Result<Done, ProviderError> {
    client
        .disable_image_deregistration_protection()
        .image_id(image_id)
        .send()
        .await
        .map_err(|e| sdk_error("DisableImageDeregistrationProtection", e))?;
    Ok(Done::Unprotected(image_id.to_string()))
}
