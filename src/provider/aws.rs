//! The AWS provider: the only module that imports `aws_sdk_ec2`.
//!
//! Credentials and the default region come only from aws-config's standard
//! chain (environment, shared config and `--profile`, SSO, web identity,
//! instance role); `--endpoint-url` or `AWS_ENDPOINT_URL(_EC2)` point it
//! elsewhere (an emulator); an explicit `--profile` wins over keys in the
//! environment, as in the AWS CLI. Retries (the SDK's standard mode:
//! exponential backoff with jitter on `RequestLimitExceeded`, 5xx and
//! timeouts, up to 10 attempts) and timeouts are the SDK's, configured once
//! here, for every call but the two creating ones, which must never be
//! re-sent blindly (see [`create`]). Adaptive mode was measured and
//! rejected: with 30% of calls throttled it slowed a 12-instance apply from
//! 5 s to 180 s. Every attempt of every call is logged through `tracing`
//! (see [`calls`]).
//!
//! Observing keeps to EC2's larger, filtered throttling bucket: every
//! Describe call filters (`tag-key`, `Owners=self`, `instance-id`) and goes
//! through the SDK paginators with `MaxResults` 1000. Per region that is:
//! DescribeInstances (tag-key filter; plus an instance-id filter for
//! policies that name instances without tags), DescribeImages with
//! `Owners=self`, `IncludeDisabled` and `IncludeDeprecated` (EC2 hides
//! disabled AMIs otherwise: "Disable an Amazon EC2 AMI", EC2 user guide; a
//! disabled backup AMI still holds its snapshots) (all the account's images, so that an image made from a
//! snapshot backup is seen and the snapshot reported blocked: one paginated
//! call instead of a snapshot-id lookup per batch of snapshots),
//! DescribeSnapshots with `OwnerIds=self` and the ownership tag-key filter
//! (and a second one, `tag:CreatedBy=molibackup`, while a policy adopts
//! molibackup's snapshots), DescribeVolumes only when a policy filters
//! volumes by tag, and DescribeLockedSnapshots only when a policy there
//! declares `lock` (see [`locks`]).

mod calls;
mod copy;
mod create;
mod locks;
mod organization;
mod protection;
mod recycle_bin;
pub mod session;
mod share;

use super::{Done, Observation, Provider, ProviderError, RegionFailure, RegionScope, Scope};
use crate::inventory::{
    AttachedVolume, Image, ImageState, Instance, InstanceState, Inventory, LocalInstance,
    RegionInventory, Snapshot, SnapshotState, Tags, Volume,
};
use crate::output::Progress;
use crate::plan::Action;
use crate::policy::tags;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::delete_snapshot::DeleteSnapshotError;
use aws_sdk_ec2::operation::deregister_image::DeregisterImageError;
use aws_sdk_ec2::types::{Filter, ResourceType, SnapshotReturnCodes, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Regions observed at once.
const REGION_CONCURRENCY: usize = 8;
const PAGE_SIZE: i32 = 1000;
/// EC2 accepts at most 200 values per filter.
const FILTER_VALUES: usize = 200;

/// How to reach AWS, from the command line.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Seconds one attempt of one call may take before it is abandoned and
    /// retried (default 45): a call that never answers cannot stall a run.
    pub call_timeout_secs: Option<u64>,
    /// Seconds to look for a backup whose creating call had an unknown
    /// outcome before sending it again (see [`create`]).
    pub consistency_wait_secs: u64,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

#[derive(Clone)]
pub struct AwsProvider {
    config: Arc<SdkConfig>,
    consistency_window: Duration,
    profile: Option<String>,
    /// Its credentials come from assuming a role (see [`AwsProvider::assume`]).
    assumed: bool,
}

impl AwsProvider {
    /// Loads the configuration through the standard chain. Nothing is
    /// contacted yet: credential problems surface on the first call.
    pub async fn new(options: &AwsOptions) -> Self {
        let attempt_timeout = Duration::from_secs(options.call_timeout_secs.unwrap_or(45));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(10)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(attempt_timeout)
                    .operation_attempt_timeout(attempt_timeout)
                    .operation_timeout(Duration::from_secs(300))
                    .build(),
            );
        // An explicit profile wins over credentials in the environment, as
        // in the AWS CLI: a CI step that leaves keys set must not act on
        // another account than the one it names.
        if let Some(p) = &options.profile {
            loader = loader.profile_name(p).credentials_provider(
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_name(p)
                    .build(),
            );
        }
        if let Some(r) = &options.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &options.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        AwsProvider {
            config: Arc::new(loader.load().await),
            consistency_window: Duration::from_secs(options.consistency_wait_secs),
            profile: options.profile.clone(),
            assumed: false,
        }
    }

    /// The same configuration acting in `account`: its role (or chain of
    /// roles) assumed from this provider's credentials, with a session
    /// cache of its own (see [`session`]) and this provider's HTTP client.
    /// `session_name` identifies the run in the account's CloudTrail.
    /// Nothing is contacted yet.
    pub async fn assume(&self, account: &crate::accounts::Account, session_name: &str) -> Self {
        use aws_config::identity::IdentityCache;
        use aws_config::sts::AssumeRoleProvider;
        use aws_credential_types::provider::SharedCredentialsProvider;
        let mut credentials = self.config.credentials_provider();
        let last = account.roles.len().saturating_sub(1);
        for (i, role) in account.roles.iter().enumerate() {
            let mut builder = AssumeRoleProvider::builder(role)
                .session_name(session_name)
                .configure(&self.config);
            // The external id is the account owner's condition on the
            // role backupctl acts through, the last of the chain.
            if let (true, Some(id)) = (i == last, &account.external_id) {
                builder = builder.external_id(id);
            }
            let assumed = match credentials {
                Some(base) => builder.build_from_provider(base).await,
                None => builder.build().await,
            };
            credentials = Some(SharedCredentialsProvider::new(session::SessionCache::new(
                assumed,
            )));
        }
        let mut config = self.config.to_builder();
        config.set_credentials_provider(credentials);
        // The session cache is the cache: the SDK's shared one would hold
        // 64 accounts' credentials and evict past that.
        config.set_identity_cache(Some(IdentityCache::no_cache()));
        AwsProvider {
            config: Arc::new(config.build()),
            consistency_window: self.consistency_window,
            profile: None,
            assumed: true,
        }
    }

    fn client(&self, region: &str) -> Client {
        self.client_tuned(region, |b| b)
    }

    /// A client that never re-sends a call by itself: for creating calls,
    /// which are not idempotent (see [`create`]).
    fn client_once(&self, region: &str) -> Client {
        self.client_tuned(region, |b| b.retry_config(RetryConfig::disabled()))
    }

    /// A client for the deletions apply paces: throttling refusals come
    /// back at once (see [`calls::LeaveThrottlingToApply`]).
    fn client_paced(&self, region: &str) -> Client {
        self.client_tuned(region, |b| {
            b.retry_classifier(calls::LeaveThrottlingToApply::<DeleteSnapshotError>::new())
                .retry_classifier(calls::LeaveThrottlingToApply::<DeregisterImageError>::new())
        })
    }

    fn client_tuned(
        &self,
        region: &str,
        tune: impl FnOnce(aws_sdk_ec2::config::Builder) -> aws_sdk_ec2::config::Builder,
    ) -> Client {
        let conf = aws_sdk_ec2::config::Builder::from(&*self.config)
            .region(Region::new(region.to_string()))
            .interceptor(calls::CallLog {
                region: region.to_string(),
            });
        Client::from_conf(tune(conf).build())
    }

    /// The Recycle Bin's client, with the same configuration.
    fn bin_client(&self, region: &str) -> aws_sdk_rbin::Client {
        let conf = aws_sdk_rbin::config::Builder::from(&*self.config)
            .region(Region::new(region.to_string()))
            .interceptor(calls::CallLog {
                region: region.to_string(),
            });
        aws_sdk_rbin::Client::from_conf(conf.build())
    }

    fn default_client(&self) -> Result<Client, ProviderError> {
        match self.config.region() {
            Some(r) => Ok(self.client(r.as_ref())),
            None => Err(ProviderError {
                code: "NoRegion".into(),
                message: "regions = [\"*\"] needs a region to ask for the list of enabled regions; set AWS_REGION, a region in your AWS profile, or --region".into(),
            }),
        }
    }

    /// Resolves credentials once, before any region is asked, so that a
    /// missing or broken credential chain is one error, not one per region.
    async fn check_credentials(&self) -> Result<(), ProviderError> {
        use aws_credential_types::provider::ProvideCredentials;
        let Some(provider) = self.config.credentials_provider() else {
            return Err(no_credentials("no credential provider is configured"));
        };
        provider.provide_credentials().await.map(|_| ()).map_err(|e| {
            if self.assumed {
                return refused_role(&e);
            }
            let detail = causes(&e);
            match &self.profile {
                Some(p) if detail.contains("not defined") || detail.contains("could not find") || detail.contains("not found") => ProviderError {
                    code: "NoSuchProfile".into(),
                    message: format!(
                        "the AWS profile {p:?} (--profile) is not defined in the shared config files ({detail}); check its name (aws configure list-profiles) and AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE"
                    ),
                },
                _ => no_credentials(&detail),
            }
        })
    }

    async fn enabled_regions(&self) -> Result<Vec<String>, ProviderError> {
        let out = self
            .default_client()?
            .describe_regions()
            .send()
            .await
            .map_err(|e| sdk_error("DescribeRegions", e))?;
        let mut regions: Vec<String> = out
            .regions()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_string))
            .collect();
        regions.sort();
        Ok(regions)
    }

    async fn local_instance(&self) -> Result<LocalInstance, ProviderError> {
        let imds = aws_config::imds::Client::builder().build();
        let fail = |e: aws_config::imds::client::error::ImdsError| {
            ProviderError {
            code: "InstanceMetadata".into(),
            message: format!(
                "instance_ids = [\"local\"] needs the instance metadata service, which did not answer ({}); run backupctl on the instance, or name the instance id",
                causes(&e)
            ),
        }
        };
        let instance_id = imds
            .get("/latest/meta-data/instance-id")
            .await
            .map_err(fail)?;
        let region = imds
            .get("/latest/meta-data/placement/region")
            .await
            .map_err(fail)?;
        Ok(LocalInstance {
            region: region.as_ref().to_string(),
            instance_id: instance_id.as_ref().to_string(),
        })
    }
}

impl Provider for AwsProvider {
    fn observe(
        &self,
        scope: &Scope,
        progress: Arc<dyn Progress>,
    ) -> impl Future<Output = Result<Observation, ProviderError>> + Send {
        let this = self.clone();
        let mut scope = scope.clone();
        async move {
            this.check_credentials().await?;
            // A metadata failure costs only the policies that select the
            // local instance; everything else is still observed.
            let (local, local_failure) = if scope.local {
                match this.local_instance().await {
                    Ok(local) => {
                        scope.add_local(&local);
                        (Some(local), None)
                    }
                    Err(e) => (None, Some(e)),
                }
            } else {
                (None, None)
            };
            let enabled = if scope.needs_region_list() {
                this.enabled_regions().await?
            } else {
                Vec::new()
            };
            let regions = scope.regions_to_observe(&enabled);
            let scope = Arc::new(scope);
            let limit = Arc::new(Semaphore::new(REGION_CONCURRENCY));
            let mut tasks = JoinSet::new();
            for region in regions {
                let (this, scope, limit, progress) =
                    (this.clone(), scope.clone(), limit.clone(), progress.clone());
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    progress.start(&region, 0, "observing");
                    let need = scope.for_region(&region);
                    let result =
                        observe_region(&this.client(&region), &this.bin_client(&region), &need)
                            .await;
                    match &result {
                        Ok(inv) => progress.finish(
                            &region,
                            &format!(
                                "{} instances, {} images, {} snapshots",
                                inv.instances.len(),
                                inv.images.len(),
                                inv.snapshots.len()
                            ),
                        ),
                        Err(e) => progress.finish(&region, &format!("failed: {}", e.code)),
                    }
                    (region, result)
                });
            }
            let mut inventory = Inventory::empty();
            inventory.observed_at = Some(Utc::now());
            inventory.local_instance = local;
            let mut failures = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                let (region, result) = joined.map_err(|e| ProviderError {
                    code: "Internal".into(),
                    message: format!("an observing task failed: {e}"),
                })?;
                match result {
                    Ok(inv) => {
                        inventory.regions.insert(region, inv);
                    }
                    Err(error) => failures.push(RegionFailure { region, error }),
                }
            }
            failures.sort_by(|a, b| a.region.cmp(&b.region));
            inventory.normalize();
            Ok(Observation {
                inventory,
                failures,
                local_failure,
            })
        }
    }

    fn execute(
        &self,
        region: &str,
        action: &Action,
    ) -> impl Future<Output = Result<Done, ProviderError>> + Send {
        let client = self.client(region);
        let once = self.client_once(region);
        let paced = self.client_paced(region);
        let window = self.consistency_window;
        let action = action.clone();
        async move {
            let clients = create::Clients {
                once: &once,
                client: &client,
                paced: &paced,
                consistency_window: window,
            };
            execute(&clients, &action).await
        }
    }

    fn sweep(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> impl Future<Output = Result<Vec<(String, ProviderError)>, ProviderError>> + Send {
        let client = self.client(region);
        let ids = snapshot_ids.to_vec();
        async move { delete_leftovers(&client, &ids).await }
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

fn tags_of(tags: &[Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

fn time_of(t: &aws_sdk_ec2::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

/// One region's inventory. The Describe chains are independent, so they
/// run at once: on real EC2 each page takes 100–300 ms and a region's
/// observation takes as long as its longest chain, not their sum.
async fn observe_region(
    client: &Client,
    bin_client: &aws_sdk_rbin::Client,
    scope: &RegionScope,
) -> Result<RegionInventory, ProviderError> {
    let live_states = ["pending", "running", "stopping", "stopped", "shutting-down"];
    let mut queries = Vec::new();
    if !scope.instance_tag_keys.is_empty() {
        queries.push(filter("tag-key", scope.instance_tag_keys.iter().cloned()));
    }
    queries.extend(id_filters("instance-id", &scope.instance_ids));
    // Usually one query (a tag key); batches of ids follow one another.
    let instances = async {
        let mut instances = BTreeMap::new();
        for query in queries {
            let state = filter("instance-state-name", live_states);
            describe_instances(client, vec![query, state], &mut instances).await?;
        }
        Ok(instances.into_values().collect())
    };
    let images = async {
        let mut images = BTreeMap::new();
        describe_images(client, vec![], &mut images).await?;
        Ok(images.into_values().collect())
    };
    let snapshots = async {
        let mut snapshots = BTreeMap::new();
        describe_snapshots(
            client,
            vec![filter("tag-key", [tags::POLICY])],
            &mut snapshots,
        )
        .await?;
        if !scope.adopt_snapshots_of.is_empty() {
            let tag = format!("tag:{}", tags::CREATED_BY);
            let tools = scope.adopt_snapshots_of.iter().cloned();
            describe_snapshots(client, vec![filter(&tag, tools)], &mut snapshots).await?;
        }
        Ok::<Vec<Snapshot>, ProviderError>(snapshots.into_values().collect())
    };
    let volumes = async {
        if scope.volume_tag_keys.is_empty() {
            return Ok(Vec::new());
        }
        describe_volumes(
            client,
            filter("tag-key", scope.volume_tag_keys.iter().cloned()),
        )
        .await
    };
    let held = async {
        if !scope.locks {
            return Ok(Default::default());
        }
        locks::observe(client).await
    };
    let bin = async { Ok(recycle_bin::observe(bin_client).await) };
    let (instances, images, mut snapshots, volumes, mut held, bin) =
        tokio::try_join!(instances, images, snapshots, volumes, held, bin)?;
    for s in &mut snapshots {
        s.lock = held.remove(&s.id);
    }
    Ok(RegionInventory {
        instances,
        volumes,
        images,
        snapshots,
        recycle_bin: Some(bin),
    })
}

/// One filter per batch of at most 200 values (EC2's limit per filter).
fn id_filters(name: &str, values: &BTreeSet<String>) -> Vec<Filter> {
    let values: Vec<&String> = values.iter().collect();
    values
        .chunks(FILTER_VALUES)
        .map(|chunk| filter(name, chunk.iter().map(|s| s.to_string())))
        .collect()
}

async fn describe_instances(
    client: &Client,
    filters: Vec<Filter>,
    out: &mut BTreeMap<String, Instance>,
) -> Result<(), ProviderError> {
    let mut pages = client
        .describe_instances()
        .set_filters(Some(filters))
        .max_results(PAGE_SIZE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeInstances", e))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let Some(id) = i.instance_id() else { continue };
            let root = i.root_device_name().unwrap_or("");
            let state = i
                .state()
                .and_then(|s| s.name())
                .map_or(InstanceState::Pending, |s| instance_state(s.as_str()));
            let volumes = i
                .block_device_mappings()
                .iter()
                .filter_map(|m| {
                    Some(AttachedVolume {
                        volume_id: m.ebs()?.volume_id()?.to_string(),
                        device: m.device_name().unwrap_or("").to_string(),
                        root: m.device_name() == Some(root),
                    })
                })
                .collect();
            out.insert(
                id.to_string(),
                Instance {
                    id: id.to_string(),
                    state,
                    tags: tags_of(i.tags()),
                    volumes,
                },
            );
        }
    }
    Ok(())
}

/// The account's own images matching `filters`.
async fn describe_images(
    client: &Client,
    filters: Vec<Filter>,
    out: &mut BTreeMap<String, Image>,
) -> Result<(), ProviderError> {
    let mut pages = client
        .describe_images()
        .owners("self")
        .include_disabled(true)
        .include_deprecated(true)
        .set_filters(Some(filters))
        .max_results(PAGE_SIZE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeImages", e))?;
        for i in page.images() {
            let (Some(id), Some(created)) = (i.image_id(), i.creation_date()) else {
                continue;
            };
            let created_at = DateTime::parse_from_rfc3339(created)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ProviderError {
                    code: "BadResponse".into(),
                    message: format!("image {id} has an unreadable CreationDate {created:?}: {e}"),
                })?;
            let image = Image {
                id: id.to_string(),
                name: i.name().unwrap_or("").to_string(),
                state: image_state(i.state().map_or("", |s| s.as_str())),
                created_at,
                tags: tags_of(i.tags()),
                snapshot_ids: i
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_string))
                    .collect(),
                deregistration_protection: i
                    .deregistration_protection()
                    .filter(|p| *p != "disabled")
                    .map(str::to_string),
            };
            out.insert(image.id.clone(), image);
        }
    }
    Ok(())
}

/// The account's own snapshots matching `filters`.
async fn describe_snapshots(
    client: &Client,
    filters: Vec<Filter>,
    out: &mut BTreeMap<String, Snapshot>,
) -> Result<(), ProviderError> {
    let mut pages = client
        .describe_snapshots()
        .owner_ids("self")
        .set_filters(Some(filters))
        .max_results(PAGE_SIZE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeSnapshots", e))?;
        for s in page.snapshots() {
            let (Some(id), Some(started)) = (s.snapshot_id(), s.start_time()) else {
                continue;
            };
            let snapshot = Snapshot {
                id: id.to_string(),
                volume_id: s.volume_id().unwrap_or("").to_string(),
                state: snapshot_state(s.state().map_or("", |x| x.as_str())),
                started_at: time_of(started),
                tags: tags_of(s.tags()),
                lock: None,
            };
            out.insert(snapshot.id.clone(), snapshot);
        }
    }
    Ok(())
}

async fn describe_volumes(client: &Client, query: Filter) -> Result<Vec<Volume>, ProviderError> {
    let mut out = Vec::new();
    let mut pages = client
        .describe_volumes()
        .filters(query)
        .max_results(PAGE_SIZE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("DescribeVolumes", e))?;
        for v in page.volumes() {
            if let Some(id) = v.volume_id() {
                out.push(Volume {
                    id: id.to_string(),
                    tags: tags_of(v.tags()),
                });
            }
        }
    }
    Ok(out)
}

fn instance_state(s: &str) -> InstanceState {
    match s {
        "running" => InstanceState::Running,
        "stopping" => InstanceState::Stopping,
        "stopped" => InstanceState::Stopped,
        "shutting-down" => InstanceState::ShuttingDown,
        "terminated" => InstanceState::Terminated,
        _ => InstanceState::Pending,
    }
}

/// Unknown states count as neither good nor pending, like `failed`.
fn image_state(s: &str) -> ImageState {
    match s {
        "available" => ImageState::Available,
        "pending" => ImageState::Pending,
        "deregistered" => ImageState::Deregistered,
        "disabled" => ImageState::Disabled,
        "failed" => ImageState::Failed,
        "invalid" => ImageState::Invalid,
        "transient" => ImageState::Transient,
        _ => ImageState::Error,
    }
}

fn snapshot_state(s: &str) -> SnapshotState {
    match s {
        "completed" => SnapshotState::Completed,
        "pending" => SnapshotState::Pending,
        "recoverable" => SnapshotState::Recoverable,
        "recovering" => SnapshotState::Recovering,
        _ => SnapshotState::Error,
    }
}

fn tag_spec(resource: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(sdk_tags(tags)))
        .build()
}

fn sdk_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Codes that mean "already done": a retried call whose first attempt
/// succeeded, or a backup someone else removed. Deletions are idempotent.
fn already_gone(code: &str) -> bool {
    matches!(
        code,
        "InvalidSnapshot.NotFound" | "InvalidAMIID.NotFound" | "InvalidAMIID.Unavailable"
    )
}

async fn execute(clients: &create::Clients<'_>, action: &Action) -> Result<Done, ProviderError> {
    let client = clients.paced;
    match action {
        Action::CreateImage { .. } | Action::CreateSnapshots { .. } => {
            create::create(clients, action).await
        }
        Action::Copy { .. } => copy::copy(clients, action).await,
        Action::Lock { .. } => locks::lock(client, action).await,
        Action::Protect { image_id, cooldown } => {
            protection::protect(client, image_id, *cooldown).await
        }
        Action::Unprotect { image_id } => protection::unprotect(client, image_id).await,
        Action::Share { .. } => share::share(client, action).await,
        Action::DeregisterImage {
            image_id,
            snapshot_ids,
            kept_snapshot_ids,
        } => {
            // EC2 deletes every associated snapshot it can; only ask when all
            // of them are ours to delete.
            let sent = client
                .deregister_image()
                .image_id(image_id)
                .delete_associated_snapshots(kept_snapshot_ids.is_empty())
                .send()
                .await;
            // EC2 answers with the outcome of each snapshot's deletion: those
            // that succeeded are gone. The others (skipped, failed, or not
            // reported) are verified, and deleted, by `sweep` once per
            // region, not with one Describe call per image.
            let confirmed: BTreeSet<String> = match sent {
                Ok(out) => out
                    .delete_snapshot_results()
                    .iter()
                    .filter(|r| r.return_code() == Some(&SnapshotReturnCodes::Success))
                    .filter_map(|r| r.snapshot_id().map(str::to_string))
                    .collect(),
                Err(e) if e.code().is_some_and(already_gone) => BTreeSet::new(),
                Err(e) => return Err(sdk_error("DeregisterImage", e)),
            };
            let mut gone = vec![image_id.clone()];
            gone.extend(
                snapshot_ids
                    .iter()
                    .filter(|id| confirmed.contains(*id))
                    .cloned(),
            );
            Ok(Done::Deleted(gone))
        }
        Action::DeleteSnapshot { snapshot_id } => {
            delete_snapshot(client, snapshot_id).await?;
            Ok(Done::Deleted(vec![snapshot_id.clone()]))
        }
        Action::Adopt {
            id,
            snapshot_ids,
            tags,
            ..
        } => {
            // CreateTags is idempotent: the SDK's retries are safe here.
            let resources: Vec<String> = std::iter::once(id).chain(snapshot_ids).cloned().collect();
            client
                .create_tags()
                .set_resources(Some(resources.clone()))
                .set_tags(Some(sdk_tags(tags)))
                .send()
                .await
                .map_err(|e| sdk_error("CreateTags", e))?;
            Ok(Done::Adopted(resources))
        }
        Action::DeleteSnapshotSet { snapshot_ids, .. } => {
            // Every snapshot is tried, whatever happens to the others; a set
            // left part-deleted is incomplete, never good, and the next run
            // deletes the rest.
            let mut failed = Vec::new();
            for id in snapshot_ids {
                match delete_snapshot(client, id).await {
                    // The whole set is sent again at the bucket's pace;
                    // the snapshots already gone count as deleted then.
                    Err(e) if crate::rate::throttling(&e.code) => return Err(e),
                    Err(e) => failed.push(format!("{id}: {e}")),
                    Ok(()) => {}
                }
            }
            if failed.is_empty() {
                Ok(Done::Deleted(snapshot_ids.clone()))
            } else {
                Err(ProviderError {
                    code: "DeleteSnapshot".into(),
                    message: format!(
                        "{} of the set's {} snapshots could not be deleted: {}",
                        failed.len(),
                        snapshot_ids.len(),
                        failed.join("; ")
                    ),
                })
            }
        }
    }
}

/// Deletes whichever of `ids` still exist after their images went; one
/// failure does not stop the others.
async fn delete_leftovers(
    client: &Client,
    ids: &[String],
) -> Result<Vec<(String, ProviderError)>, ProviderError> {
    let ids: BTreeSet<String> = ids.iter().cloned().collect();
    // Batches of 200 ids (EC2's filter limit), described at once.
    let mut batches = JoinSet::new();
    for f in id_filters("snapshot-id", &ids) {
        let client = client.clone();
        batches.spawn(async move {
            let mut found = BTreeMap::new();
            describe_snapshots(&client, vec![f], &mut found).await?;
            Ok::<_, ProviderError>(found)
        });
    }
    let mut left = BTreeMap::new();
    while let Some(joined) = batches.join_next().await {
        let found = joined.map_err(|e| ProviderError {
            code: "Internal".into(),
            message: format!("a snapshot check failed: {e}"),
        })??;
        left.extend(found);
    }
    let mut failed = Vec::new();
    for id in left.keys() {
        if let Err(e) = delete_snapshot(client, id).await {
            failed.push((id.clone(), e));
        }
    }
    Ok(failed)
}

async fn delete_snapshot(client: &Client, id: &str) -> Result<(), ProviderError> {
    match client.delete_snapshot().snapshot_id(id).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.code().is_some_and(already_gone) => Ok(()),
        Err(e) => Err(sdk_error("DeleteSnapshot", e)),
    }
}

/// One line for an operator: the service's code and message, or what kept
/// the call from reaching EC2. Never includes credentials (the SDK does not
/// put them in errors).
fn sdk_error<E>(operation: &str, e: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (code, message) = match &e {
        SdkError::ServiceError(se) if se.err().code().is_none() => (
            "BadResponse".to_string(),
            format!(
                "{operation} failed with HTTP {} and an answer that is not an EC2 error ({}); check --endpoint-url / AWS_ENDPOINT_URL if set, or retry later",
                se.raw().status().as_u16(),
                causes(&e)
            ),
        ),
        SdkError::ResponseError(re) => (
            "BadResponse".to_string(),
            format!(
                "{operation} got HTTP {} with an answer that could not be read ({}); check --endpoint-url / AWS_ENDPOINT_URL if set, or retry later",
                re.raw().status().as_u16(),
                causes(&e)
            ),
        ),
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("Unknown").to_string();
            let mut message = err.message().unwrap_or("no message").to_string();
            if code == "UnauthorizedOperation"
                || code == "AccessDenied"
                || code.starts_with("AuthFailure")
            {
                message = format!(
                    "{message} (the credentials in use may not call ec2:{operation}; grant it in their IAM policy)"
                );
            }
            (code, message)
        }
        SdkError::TimeoutError(_) => (
            "Timeout".to_string(),
            format!("{operation} did not answer in time, even after retries"),
        ),
        SdkError::DispatchFailure(df) => {
            let detail = causes(&e);
            if detail.contains("credentials") {
                let e = no_credentials(&detail);
                (e.code, e.message)
            } else if df.is_io() || df.is_timeout() {
                (
                    "Unreachable".to_string(),
                    format!("cannot reach the EC2 endpoint for {operation} ({detail}); check the network, --endpoint-url / AWS_ENDPOINT_URL, and the region"),
                )
            } else {
                (
                    "DispatchFailure".to_string(),
                    format!("{operation} could not be sent: {detail}"),
                )
            }
        }
        _ => (
            "Error".to_string(),
            format!("{operation} failed: {}", causes(&e)),
        ),
    };
    ProviderError { code, message }
}

/// STS's own answer to an AssumeRole that failed (`AccessDenied: …`),
/// rather than the credential chain's wrapping of it.
fn refused_role(e: &(dyn std::error::Error + 'static)) -> ProviderError {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(meta) = err.downcast_ref::<aws_smithy_types::error::ErrorMetadata>() {
            if let Some(code) = meta.code() {
                return ProviderError {
                    code: code.to_string(),
                    message: meta.message().unwrap_or("").to_string(),
                };
            }
        }
        next = err.source();
    }
    ProviderError {
        code: "AssumeRoleFailed".into(),
        message: causes(e),
    }
}

fn no_credentials(detail: &str) -> ProviderError {
    ProviderError {
        code: "NoCredentials".into(),
        message: format!(
            "no usable AWS credentials ({detail}); configure them through the standard chain: environment variables, a profile (--profile), SSO, web identity or an instance role"
        ),
    }
}

/// The error and its causes, each once, on one line: the SDK's own
/// rendering includes debug dumps of whole responses, and the credential
/// chain's error spans several lines.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}
