//! Evidence blobs beyond one disk: the [`BlobStore`] seam.
//!
//! Screenshots, WARC records and playbook texts are content-addressed files in the data
//! directory (`screenshots/<sha256>.png`, `warc/<sha256>.warc.gz`,
//! `playbook-texts/<sha256>.yaml`), written and fsync'd before the journal names them: that
//! stays the ground truth of a node, and what `sha256sum -c` checks. A cluster installation
//! (`[cluster] evidence = "s3://BUCKET/PREFIX"`) also copies every blob to S3-compatible
//! object storage under the same relative name, so the evidence outlives the node's disk:
//!
//! - the write is **create-only** (`If-None-Match: *`): an object under a hash is never
//!   replaced; a second copy of the same bytes finds the first and checks it;
//! - it carries **clerk's own digest** (`x-amz-checksum-sha256`), so the storage re-hashes the
//!   bytes and refuses them if they are not what clerk hashed;
//! - each copy is recorded in the journal (`blob_stored`: where, the object version, and the
//!   Object Lock retention when the bucket has one), after the storage acknowledged it;
//! - `clerk verify` reads every recorded copy back and reports one that is missing or whose
//!   bytes no longer hash to its name, and lists blobs not copied yet.
//!
//! Copies are made when a run ends and, for anything left over (storage down, a crash),
//! whenever `clerk serve` starts and every minute while it runs. [`LocalBlobs`] is the same
//! contract on a directory (the embedded store's layout), so both are tested alike.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::record::sha256_hex;
use super::{Event, Record, Store, StoreError};

/// A boxed future (the trait is used as `dyn BlobStore`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a blob is, which decides its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    Screenshot,
    Warc,
    PlaybookText,
}

impl BlobKind {
    /// The blob's name relative to the data directory (and to the bucket's prefix).
    pub fn relative_path(self, sha256: &str) -> String {
        match self {
            BlobKind::Screenshot => format!("{}/{sha256}.png", super::png::SCREENSHOTS),
            BlobKind::Warc => format!("{}/{sha256}.warc.gz", super::warc::WARC_DIR),
            BlobKind::PlaybookText => format!("{}/{sha256}.yaml", super::text::PLAYBOOK_TEXTS),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            BlobKind::Screenshot => "image/png",
            BlobKind::Warc => "application/warc",
            BlobKind::PlaybookText => "text/yaml",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Screenshot => "screenshot",
            BlobKind::Warc => "warc",
            BlobKind::PlaybookText => "playbook_text",
        }
    }
}

/// Object Lock retention of a stored copy, as the storage reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    /// RFC 3339.
    pub until: String,
}

/// One stored copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobCopy {
    /// `s3://bucket/key` (or the file's path).
    pub location: String,
    pub version_id: Option<String>,
    pub retention: Option<Retention>,
    /// The storage already held these bytes under this name.
    pub existed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{location} holds different bytes (their SHA-256 is {found})")]
    Differs { location: String, found: String },
    #[error(
        "{location}: the storage refused the bytes as not matching SHA-256 {sha256} ({detail})"
    )]
    ChecksumRefused {
        location: String,
        sha256: String,
        detail: String,
    },
    #[error("object storage {target}: {detail}")]
    Storage { target: String, detail: String },
    #[error("[cluster] evidence: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where evidence blobs are kept, by SHA-256.
pub trait BlobStore: Send + Sync {
    /// `s3://bucket/prefix` or the directory.
    fn describe(&self) -> String;
    /// Stores `bytes` under `sha256`, create-only; the storage must refuse bytes that do not
    /// hash to `sha256`. Storing the same bytes again finds them and succeeds.
    fn put<'a>(
        &'a self,
        kind: BlobKind,
        sha256: &'a str,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<BlobCopy, BlobError>>;
    /// The bytes stored under `sha256`, if any (not checked: callers hash them).
    fn get<'a>(
        &'a self,
        kind: BlobKind,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>>;
}

/// The contract on a local directory (the data directory's layout).
pub struct LocalBlobs {
    dir: PathBuf,
}

impl LocalBlobs {
    pub fn new(dir: &Path) -> LocalBlobs {
        LocalBlobs {
            dir: dir.to_owned(),
        }
    }
}

impl BlobStore for LocalBlobs {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn put<'a>(
        &'a self,
        kind: BlobKind,
        sha256: &'a str,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<BlobCopy, BlobError>> {
        Box::pin(async move {
            let path = self.dir.join(kind.relative_path(sha256));
            let location = path.display().to_string();
            let actual = sha256_hex(bytes);
            if actual != sha256 {
                return Err(BlobError::ChecksumRefused {
                    location,
                    sha256: sha256.to_owned(),
                    detail: format!("the bytes hash to {actual}"),
                });
            }
            let copy = |existed| BlobCopy {
                location: location.to_owned(),
                version_id: None,
                retention: None,
                existed,
            };
            if path.exists() {
                let (found, _) = super::png::hash_file(&path).map_err(|source| BlobError::Io {
                    path: path.clone(),
                    source,
                })?;
                return if found == sha256 {
                    Ok(copy(true))
                } else {
                    Err(BlobError::Differs { location, found })
                };
            }
            let dir = path.parent().unwrap_or(&self.dir).to_owned();
            std::fs::create_dir_all(&dir).map_err(|source| BlobError::Io {
                path: dir.clone(),
                source,
            })?;
            super::png::write_read_only(&dir, &path, bytes)?;
            Ok(copy(false))
        })
    }

    fn get<'a>(
        &'a self,
        kind: BlobKind,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            let path = self.dir.join(kind.relative_path(sha256));
            match std::fs::read(&path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(BlobError::Io { path, source }),
            }
        })
    }
}

/// Evidence on S3-compatible object storage (`aws-sdk-s3`).
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Without slashes at either end; may be empty.
    prefix: String,
}

impl S3Blobs {
    /// The store `[cluster] evidence` names, with credentials from the environment.
    pub fn from_target(target: &S3Target) -> Result<S3Blobs, BlobError> {
        let url = target.url;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(access), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(BlobError::Config(format!(
                "evidence goes to {url}, but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set in this process's environment (they are never read from clerk.toml)"
            )));
        };
        S3Blobs::with_credentials(target, &access, &secret, var("AWS_SESSION_TOKEN"))
    }

    /// [`S3Blobs::from_target`] with the credentials given.
    pub fn with_credentials(
        target: &S3Target,
        access: &str,
        secret: &str,
        session_token: Option<String>,
    ) -> Result<S3Blobs, BlobError> {
        let target_url = target.url;
        let url = url::Url::parse(target_url).map_err(|e| BlobError::Config(e.to_string()))?;
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| BlobError::Config(format!("`{target_url}` names no bucket")))?
            .to_owned();
        let prefix = url.path().trim_matches('/').to_owned();
        let credentials = aws_sdk_s3::config::Credentials::new(
            access,
            secret,
            session_token,
            None,
            "environment",
        );
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let region = target
            .region
            .filter(|r| !r.is_empty())
            .unwrap_or("us-east-1")
            .to_owned();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(region))
            .credentials_provider(credentials)
            .http_client(http)
            // clerk sets the one checksum that matters (SHA-256, its own) itself.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .operation_timeout(Duration::from_secs(180))
                    .build(),
            )
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(3));
        if let Some(endpoint) = target.endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Ok(S3Blobs {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket,
            prefix,
        })
    }

    fn key(&self, kind: BlobKind, sha256: &str) -> String {
        let rel = kind.relative_path(sha256);
        if self.prefix.is_empty() {
            rel
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn storage_error(&self, detail: impl std::fmt::Display) -> BlobError {
        BlobError::Storage {
            target: self.describe(),
            detail: detail.to_string(),
        }
    }

    /// The object's Object Lock retention, when the bucket has Object Lock.
    async fn retention(&self, key: &str, version: Option<&str>) -> Option<Retention> {
        let got = self
            .client
            .get_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .ok()?;
        let r = got.retention?;
        Some(Retention {
            mode: r.mode.map(|m| m.as_str().to_owned()).unwrap_or_default(),
            until: r
                .retain_until_date
                .and_then(|d| d.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
                .unwrap_or_default(),
        })
    }

    async fn fetch(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>, BlobError> {
        use aws_sdk_s3::operation::get_object::GetObjectError;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let version = out.version_id.clone();
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.storage_error(format!("reading {key}: {e}")))?;
                Ok(Some((body.into_bytes().to_vec(), version)))
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_)))
                    || status == Some(404)
                {
                    Ok(None)
                } else {
                    Err(self.storage_error(format!(
                        "GET {key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )))
                }
            }
        }
    }
}

impl BlobStore for S3Blobs {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn put<'a>(
        &'a self,
        kind: BlobKind,
        sha256: &'a str,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<BlobCopy, BlobError>> {
        Box::pin(async move {
            use aws_sdk_s3::error::ProvideErrorMetadata as _;
            use base64::Engine as _;
            let key = self.key(kind, sha256);
            let location = self.location(&key);
            let digest = hex::decode(sha256)
                .ok()
                .filter(|d| d.len() == 32)
                .ok_or_else(|| BlobError::ChecksumRefused {
                    location: location.to_owned(),
                    sha256: sha256.to_owned(),
                    detail: "not a SHA-256".into(),
                })?;
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(kind.content_type())
                .body(aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec()))
                .if_none_match("*")
                .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(&digest))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    let retention = self.retention(&key, out.version_id()).await;
                    Ok(BlobCopy {
                        location,
                        version_id: out.version_id,
                        retention,
                        existed: false,
                    })
                }
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let code = e.code().unwrap_or_default().to_owned();
                    if status == Some(412) || code == "PreconditionFailed" {
                        // Already there: it must be these bytes.
                        let Some((found, version)) = self.fetch(&key).await? else {
                            return Err(self.storage_error(format!(
                                "PUT {key} answered that the object exists, and GET finds none"
                            )));
                        };
                        let found = sha256_hex(&found);
                        if found != sha256 {
                            return Err(BlobError::Differs { location, found });
                        }
                        let retention = self.retention(&key, version.as_deref()).await;
                        return Ok(BlobCopy {
                            location,
                            version_id: version,
                            retention,
                            existed: true,
                        });
                    }
                    if matches!(
                        code.as_str(),
                        "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch"
                    ) {
                        return Err(BlobError::ChecksumRefused {
                            location,
                            sha256: sha256.to_owned(),
                            detail: e.message().unwrap_or(&code).to_owned(),
                        });
                    }
                    Err(self.storage_error(format!(
                        "PUT {key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )))
                }
            }
        })
    }

    fn get<'a>(
        &'a self,
        kind: BlobKind,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            let key = self.key(kind, sha256);
            Ok(self.fetch(&key).await?.map(|(b, _)| b))
        })
    }
}

/// Where `[cluster] evidence` points (see `channel::ClusterSettings::evidence_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Target<'a> {
    /// `s3://BUCKET/PREFIX`.
    pub url: &'a str,
    /// A storage other than AWS (path-style requests).
    pub endpoint: Option<&'a str>,
    pub region: Option<&'a str>,
}

/// The blob store `target` names, if any, with credentials from the environment.
pub fn open(target: Option<S3Target<'_>>) -> Result<Option<Arc<dyn BlobStore>>, BlobError> {
    match target {
        Some(t) => Ok(Some(Arc::new(S3Blobs::from_target(&t)?))),
        None => Ok(None),
    }
}

/// A blob a record names: its kind, its hash and the run whose record named it.
type Wanted = (BlobKind, String, Option<String>);

/// The blobs `records` name, and those of them already copied.
fn wanted_and_copied(records: &[Record]) -> (Vec<Wanted>, BTreeSet<(BlobKind, String)>) {
    let mut wanted = Vec::new();
    let mut seen = BTreeSet::new();
    let mut copied = BTreeSet::new();
    for r in records {
        let (kind, sha, run) = match &r.event {
            Event::EvidenceCaptured { run_id, sha256, .. } => {
                (BlobKind::Screenshot, sha256, run_id)
            }
            Event::ResponseRecorded {
                run_id,
                warc_sha256,
                ..
            } => (BlobKind::Warc, warc_sha256, run_id),
            Event::RunStarted {
                run_id,
                playbook_sha256,
                ..
            } => (BlobKind::PlaybookText, playbook_sha256, run_id),
            Event::BlobStored { kind, sha256, .. } => {
                copied.insert((*kind, sha256.clone()));
                continue;
            }
            _ => continue,
        };
        if seen.insert((kind, sha.clone())) {
            wanted.push((kind, sha.clone(), Some(run.clone())));
        }
    }
    (wanted, copied)
}

/// What a copy pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub copied: usize,
    /// Blobs the data directory does not have (a playbook text is kept only for some runs).
    pub absent: usize,
    pub failed: Vec<String>,
}

/// Copies the blobs `records` name that no `blob_stored` record covers yet, recording each
/// copy once the storage acknowledged it. A failure is reported and left for the next pass.
pub async fn copy_missing(
    store: &Store,
    blobs: &dyn BlobStore,
    records: &[Record],
) -> Result<CopyReport, BlobError> {
    let (wanted, copied) = wanted_and_copied(records);
    let mut report = CopyReport::default();
    for (kind, sha, run_id) in wanted {
        if copied.contains(&(kind, sha.clone())) {
            continue;
        }
        let path = store.data_dir().join(kind.relative_path(&sha));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.absent += 1;
                continue;
            }
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        match blobs.put(kind, &sha, &bytes).await {
            Ok(copy) => {
                let event = Event::BlobStored {
                    run_id,
                    kind,
                    sha256: sha.clone(),
                    location: copy.location,
                    version_id: copy.version_id,
                    retention: copy.retention,
                    at: super::query::timestamp(chrono::Utc::now()),
                };
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.append(event))
                    .await
                    .map_err(|e| BlobError::Store(StoreError::Other(e.to_string())))??;
                report.copied += 1;
            }
            Err(e) => {
                tracing::warn!(%sha, "evidence copy to {} failed: {e}", blobs.describe());
                report.failed.push(e.to_string());
            }
        }
    }
    Ok(report)
}

/// Copies one run's blobs.
pub async fn copy_run(
    store: &Store,
    blobs: &dyn BlobStore,
    run_id: &str,
) -> Result<CopyReport, BlobError> {
    let records = store.run_records(run_id)?;
    copy_missing(store, blobs, &records).await
}

/// Copies every blob of the journal not copied yet (after an outage or a crash).
pub async fn copy_all(store: &Store, blobs: &dyn BlobStore) -> Result<CopyReport, BlobError> {
    let s = store.clone();
    let records = tokio::task::spawn_blocking(move || s.records())
        .await
        .map_err(|e| BlobError::Store(StoreError::Other(e.to_string())))??;
    copy_missing(store, blobs, &records).await
}

/// One `blob_stored` record, as the read-back and the restore use it.
struct RecordedCopy<'a> {
    kind: BlobKind,
    sha256: &'a str,
    location: &'a str,
    retained: bool,
}

/// The copies `records` record, each blob once (the first record of it).
fn recorded_copies(records: &[Record]) -> Vec<RecordedCopy<'_>> {
    let mut seen = BTreeSet::new();
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::BlobStored {
                kind,
                sha256,
                location,
                retention,
                ..
            } if seen.insert((*kind, sha256.as_str())) => Some(RecordedCopy {
                kind: *kind,
                sha256,
                location,
                retained: retention.is_some(),
            }),
            _ => None,
        })
        .collect()
}

/// Puts back, from their recorded copies, the blobs of `records` whose file in `data_dir` is
/// missing or no longer hashes to its name (a lost or damaged disk), each checked against
/// its hash before it is written. Returns the relative paths restored; a copy that is
/// missing or differs in the storage is an error naming it.
pub async fn restore_missing(
    data_dir: &Path,
    blobs: &dyn BlobStore,
    records: &[Record],
) -> Result<Vec<String>, BlobError> {
    let mut restored = Vec::new();
    for RecordedCopy {
        kind,
        sha256,
        location,
        ..
    } in recorded_copies(records)
    {
        let rel = kind.relative_path(sha256);
        let path = data_dir.join(&rel);
        let intact = super::png::hash_file(&path)
            .map(|(h, _)| h == sha256)
            .unwrap_or(false);
        if intact {
            continue;
        }
        let bytes = blobs
            .get(kind, sha256)
            .await?
            .ok_or_else(|| BlobError::Storage {
                target: blobs.describe(),
                detail: format!("{location} is gone, and so is {}", path.display()),
            })?;
        let found = sha256_hex(&bytes);
        if found != sha256 {
            return Err(BlobError::Differs {
                location: location.to_owned(),
                found,
            });
        }
        let dir = path.parent().unwrap_or(data_dir).to_owned();
        std::fs::create_dir_all(&dir).map_err(|source| BlobError::Io {
            path: dir.clone(),
            source,
        })?;
        super::png::write_read_only(&dir, &path, &bytes)?;
        restored.push(rel);
    }
    Ok(restored)
}

/// What `clerk verify` found of the copies in object storage.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CopyCheck {
    pub target: String,
    /// Recorded copies read back and found intact.
    pub intact: usize,
    /// Recorded copies the storage no longer has.
    pub missing: Vec<String>,
    /// Recorded copies whose bytes no longer hash to their name: `location: sha256`.
    pub differs: Vec<String>,
    /// Blobs the journal names that were never copied (`kind sha256`).
    pub not_copied: Vec<String>,
    /// Copies under Object Lock retention.
    pub retained: usize,
}

impl CopyCheck {
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.differs.is_empty()
    }
}

impl std::fmt::Display for CopyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "object storage {}: {} cop{} intact ({} under Object Lock retention), {} missing, {} differ, {} not copied yet",
            self.target,
            self.intact,
            if self.intact == 1 { "y" } else { "ies" },
            self.retained,
            self.missing.len(),
            self.differs.len(),
            self.not_copied.len()
        )?;
        for m in &self.missing {
            writeln!(f, "  MISSING {m}")?;
        }
        for d in &self.differs {
            writeln!(f, "  DIFFERS {d}")?;
        }
        for n in &self.not_copied {
            writeln!(f, "  not copied yet: {n}")?;
        }
        Ok(())
    }
}

/// Reads back every copy `records` record and hashes it.
pub async fn check_copies(
    blobs: &dyn BlobStore,
    records: &[Record],
    data_dir: &Path,
) -> Result<CopyCheck, BlobError> {
    let mut check = CopyCheck {
        target: blobs.describe(),
        ..CopyCheck::default()
    };
    let (wanted, _) = wanted_and_copied(records);
    let copies = recorded_copies(records);
    let checked: BTreeSet<(BlobKind, &str)> = copies.iter().map(|c| (c.kind, c.sha256)).collect();
    for RecordedCopy {
        kind,
        sha256,
        location,
        retained,
    } in copies
    {
        match blobs.get(kind, sha256).await? {
            None => check.missing.push(location.to_owned()),
            Some(bytes) => {
                let found = sha256_hex(&bytes);
                if found == sha256 {
                    check.intact += 1;
                    if retained {
                        check.retained += 1;
                    }
                } else {
                    check
                        .differs
                        .push(format!("{location}: its bytes hash to {found}"));
                }
            }
        }
    }
    for (kind, sha, _) in wanted {
        if !checked.contains(&(kind, sha.as_str()))
            && data_dir.join(kind.relative_path(&sha)).exists()
        {
            check.not_copied.push(format!("{} {sha}", kind.name()));
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_blobs_keep_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path());
        let bytes = b"evidence bytes";
        let sha = sha256_hex(bytes);
        let first = blobs.put(BlobKind::Warc, &sha, bytes).await.unwrap();
        assert!(!first.existed);
        assert!(first.location.ends_with(&format!("warc/{sha}.warc.gz")));
        assert!(
            blobs
                .put(BlobKind::Warc, &sha, bytes)
                .await
                .unwrap()
                .existed
        );
        assert_eq!(
            blobs.get(BlobKind::Warc, &sha).await.unwrap().as_deref(),
            Some(&bytes[..])
        );
        assert!(blobs
            .get(BlobKind::Screenshot, &sha)
            .await
            .unwrap()
            .is_none());
        // Bytes that are not what the name says are refused.
        let e = blobs
            .put(BlobKind::Screenshot, &sha, b"other bytes")
            .await
            .unwrap_err();
        assert!(matches!(e, BlobError::ChecksumRefused { .. }), "{e}");
    }
}
