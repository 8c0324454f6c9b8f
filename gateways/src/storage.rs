//! Object storage for task attachments and doc files, behind presigned
//! URLs (seed pages 02, 08, 15, 19).
//!
//! Two backends:
//! - **S3/MinIO** through `aws-sdk-s3`, configured by the seeds' `STORAGE_*`
//!   variables (custom endpoint, path-style addressing for MinIO, the
//!   bucket created on start when missing, `STORAGE_PUBLIC_URL` rewriting of
//!   presigned URLs so browsers reach MinIO through the gateway).
//! - **Local** (the default when no `STORAGE_*` variable is set): files under
//!   `$PACA_DATA_DIR/files`, uploaded and downloaded through this API at
//!   `/api/v1/storage/...` with HMAC-SHA256-signed, expiring URLs. A URL whose
//!   parameters were changed, or that has expired, is refused.
//!
//! Clients use both the same way: PUT the bytes to `upload_url` (or each
//! part's URL), then call `complete-upload`; GET `download-url`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Uploads below this size get one presigned PUT; larger ones are
/// multipart with one presigned URL per part (S3's minimum part size).
pub const SINGLE_PUT_MAX: i64 = 5 * 1024 * 1024;
pub const PART_SIZE: i64 = 5 * 1024 * 1024;
/// S3 allows at most this many parts.
pub const MAX_PARTS: i64 = 10_000;
/// How long presigned URLs stay valid (seed: 15 minutes).
pub const URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Default upper bound of one file (`STORAGE_MAX_FILE_SIZE` changes it).
pub const DEFAULT_MAX_FILE_SIZE: i64 = 100 * 1024 * 1024;

pub const STORAGE_PROVIDER: &str = "STORAGE_PROVIDER";
pub const STORAGE_ENDPOINT: &str = "STORAGE_ENDPOINT";
pub const STORAGE_PUBLIC_URL: &str = "STORAGE_PUBLIC_URL";
pub const STORAGE_REGION: &str = "STORAGE_REGION";
pub const STORAGE_BUCKET: &str = "STORAGE_BUCKET";
pub const STORAGE_ACCESS_KEY_ID: &str = "STORAGE_ACCESS_KEY_ID";
pub const STORAGE_SECRET_ACCESS_KEY: &str = "STORAGE_SECRET_ACCESS_KEY";
pub const STORAGE_USE_SSL: &str = "STORAGE_USE_SSL";
pub const STORAGE_MAX_FILE_SIZE: &str = "STORAGE_MAX_FILE_SIZE";
pub const PUBLIC_URL: &str = "PUBLIC_URL";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("object storage: {0}")]
    Backend(String),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// What the client sent does not match the upload (parts, ETags).
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, StorageError>;

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// One part of a multipart upload, as the client reports it.
#[derive(Debug, Clone)]
pub struct Part {
    pub part_number: i32,
    pub etag: String,
}

pub enum Backend {
    Local(LocalStore),
    S3(S3Store),
}

pub struct Storage {
    pub backend: Backend,
    pub max_file_size: i64,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Storage {
    /// From the environment: S3/MinIO when any of `STORAGE_PROVIDER`
    /// (other than `local`), `STORAGE_ENDPOINT` or `STORAGE_BUCKET` is set,
    /// else local files under `data_dir/files` signed with a key derived
    /// from `secret`.
    pub async fn from_env(data_dir: &Path, secret: &str) -> Result<Self> {
        let max_file_size = match var(STORAGE_MAX_FILE_SIZE) {
            None => DEFAULT_MAX_FILE_SIZE,
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    StorageError::Config(format!(
                        "{STORAGE_MAX_FILE_SIZE} must be a positive number of bytes, not {raw:?}"
                    ))
                })?,
        };
        let provider = var(STORAGE_PROVIDER).map(|p| p.to_lowercase());
        let wants_s3 = match provider.as_deref() {
            Some("local") => false,
            Some(_) => true,
            None => var(STORAGE_ENDPOINT).is_some() || var(STORAGE_BUCKET).is_some(),
        };
        let backend = if wants_s3 {
            Backend::S3(S3Store::from_env(provider.as_deref()).await?)
        } else {
            Backend::Local(LocalStore::new(
                data_dir.join("files"),
                secret,
                var(PUBLIC_URL),
            )?)
        };
        Ok(Self {
            backend,
            max_file_size,
        })
    }

    pub fn local(root: PathBuf, secret: &str) -> Result<Self> {
        Ok(Self {
            backend: Backend::Local(LocalStore::new(root, secret, None)?),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        })
    }

    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local(l) => format!("local files in {}", l.root.display()),
            Backend::S3(s) => format!("S3 bucket {:?} at {}", s.bucket, s.endpoint_label),
        }
    }

    pub fn bucket(&self) -> &str {
        match &self.backend {
            Backend::Local(_) => "local",
            Backend::S3(s) => &s.bucket,
        }
    }

    /// A presigned single PUT. `base` is this API's own origin as the
    /// client reached it (local backend only).
    pub async fn presign_put(
        &self,
        base: &str,
        key: &str,
        content_type: &str,
        size: i64,
    ) -> Result<String> {
        match &self.backend {
            Backend::Local(l) => Ok(l.url(base, &Grant::put(key, content_type, size))),
            Backend::S3(s) => s.presign_put(key, content_type).await,
        }
    }

    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String> {
        match &self.backend {
            Backend::Local(_) => Ok(uuid::Uuid::new_v4().simple().to_string()),
            Backend::S3(s) => s.create_multipart(key, content_type).await,
        }
    }

    pub async fn presign_part(
        &self,
        base: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        size: i64,
    ) -> Result<String> {
        match &self.backend {
            Backend::Local(l) => Ok(l.url(base, &Grant::part(key, upload_id, part_number, size))),
            Backend::S3(s) => s.presign_part(key, upload_id, part_number).await,
        }
    }

    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
    ) -> Result<()> {
        match &self.backend {
            Backend::Local(l) => l.complete_multipart(key, upload_id, parts).await,
            Backend::S3(s) => s.complete_multipart(key, upload_id, parts).await,
        }
    }

    /// The stored object's size, if it exists.
    pub async fn size(&self, key: &str) -> Result<Option<i64>> {
        match &self.backend {
            Backend::Local(l) => l.size(key).await,
            Backend::S3(s) => s.size(key).await,
        }
    }

    pub async fn presign_get(
        &self,
        base: &str,
        key: &str,
        file_name: &str,
        content_type: &str,
        download: bool,
    ) -> Result<String> {
        let disposition = content_disposition(file_name, download);
        match &self.backend {
            Backend::Local(l) => Ok(l.url(base, &Grant::get(key, content_type, &disposition))),
            Backend::S3(s) => s.presign_get(key, &disposition).await,
        }
    }

    /// The object's bytes (the `content` route streams through the API).
    pub async fn read(&self, key: &str) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::Local(l) => Ok(tokio::fs::read(l.path(key)?).await?),
            Backend::S3(s) => s.read(key).await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match &self.backend {
            Backend::Local(l) => l.delete(key).await,
            Backend::S3(s) => s.delete(key).await,
        }
    }
}

/// `Content-Disposition` for a download (`attachment`) or inline view, the
/// name in both the ASCII and the RFC 5987 form.
pub fn content_disposition(file_name: &str, download: bool) -> String {
    let ascii: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file_name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let kind = if download { "attachment" } else { "inline" };
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

// ------------------------------------------------------------------- local

/// What a local storage URL allows: one operation on one key, until `exp`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    pub op: String,
    pub key: String,
    pub exp: i64,
    pub upload_id: String,
    pub part: i32,
    /// Upper bound of the body (uploads).
    pub len: i64,
    pub content_type: String,
    pub disposition: String,
}

fn expiry() -> i64 {
    chrono::Utc::now().timestamp() + URL_TTL.as_secs() as i64
}

impl Grant {
    fn put(key: &str, content_type: &str, len: i64) -> Self {
        Self {
            op: "put".into(),
            key: key.into(),
            exp: expiry(),
            len,
            content_type: content_type.into(),
            ..Self::default()
        }
    }

    fn part(key: &str, upload_id: &str, part: i32, len: i64) -> Self {
        Self {
            op: "part".into(),
            key: key.into(),
            exp: expiry(),
            upload_id: upload_id.into(),
            part,
            len,
            ..Self::default()
        }
    }

    fn get(key: &str, content_type: &str, disposition: &str) -> Self {
        Self {
            op: "get".into(),
            key: key.into(),
            exp: expiry(),
            content_type: content_type.into(),
            disposition: disposition.into(),
            ..Self::default()
        }
    }

    /// The signed string: every field, each on its own line (no field can
    /// contain a newline: keys are ours, the rest is validated on input).
    fn canonical(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.op,
            self.key,
            self.exp,
            self.upload_id,
            self.part,
            self.len,
            self.content_type,
            self.disposition
        )
    }
}

pub struct LocalStore {
    pub root: PathBuf,
    key: Vec<u8>,
    public_url: Option<String>,
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl LocalStore {
    pub fn new(root: PathBuf, secret: &str, public_url: Option<String>) -> Result<Self> {
        std::fs::create_dir_all(&root)?;
        // A key of its own, derived from the server secret, so that a
        // storage URL can never be confused with another signed value.
        let key = Sha256::digest(format!("paca-local-storage\n{secret}").as_bytes()).to_vec();
        Ok(Self {
            root,
            key,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    pub fn sign(&self, grant: &Grant) -> String {
        let mut mac = self.mac();
        mac.update(grant.canonical().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `sig` signs `grant` (constant time) and it has not expired.
    pub fn verify(&self, grant: &Grant, sig: &str) -> bool {
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(grant.canonical().as_bytes());
        mac.verify_slice(&sig).is_ok() && grant.exp >= chrono::Utc::now().timestamp()
    }

    fn url(&self, base: &str, grant: &Grant) -> String {
        let base = self.public_url.as_deref().unwrap_or(base);
        let mut url = format!(
            "{base}/api/v1/storage/{}?op={}&exp={}",
            grant.key, grant.op, grant.exp
        );
        if !grant.upload_id.is_empty() {
            url.push_str(&format!(
                "&upload_id={}&part={}",
                pct(&grant.upload_id),
                grant.part
            ));
        }
        if grant.len > 0 {
            url.push_str(&format!("&len={}", grant.len));
        }
        if !grant.content_type.is_empty() {
            url.push_str(&format!("&ct={}", pct(&grant.content_type)));
        }
        if !grant.disposition.is_empty() {
            url.push_str(&format!("&cd={}", pct(&grant.disposition)));
        }
        url.push_str(&format!("&sig={}", self.sign(grant)));
        url
    }

    /// The file of a key. Keys are generated by this server
    /// (`<kind>/<owner>/<file id>`), but a signed URL's key is still checked
    /// to stay inside the root.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        let ok = !key.is_empty()
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if !ok {
            return Err(StorageError::Invalid(format!(
                "invalid storage key {key:?}"
            )));
        }
        Ok(self.root.join(key))
    }

    fn parts_dir(&self, key: &str, upload_id: &str) -> Result<PathBuf> {
        let base = self.path(key)?;
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StorageError::Invalid("invalid upload id".into()));
        }
        let mut name = base.file_name().unwrap_or_default().to_owned();
        name.push(format!(".parts-{upload_id}"));
        Ok(base.with_file_name(name))
    }

    /// Where an upload (or part) is written: the destination, and the
    /// ETag file of a part.
    pub fn upload_target(&self, grant: &Grant) -> Result<(PathBuf, Option<PathBuf>)> {
        if grant.op == "part" {
            let dir = self.parts_dir(&grant.key, &grant.upload_id)?;
            Ok((
                dir.join(format!("{}", grant.part)),
                Some(dir.join(format!("{}.etag", grant.part))),
            ))
        } else {
            Ok((self.path(&grant.key)?, None))
        }
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[Part]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let dir = self.parts_dir(key, upload_id)?;
        let mut sorted = parts.to_vec();
        sorted.sort_by_key(|p| p.part_number);
        for (i, part) in sorted.iter().enumerate() {
            if part.part_number != i as i32 + 1 {
                return Err(StorageError::Invalid(
                    "parts must be numbered 1..n without gaps".into(),
                ));
            }
            let etag = tokio::fs::read_to_string(dir.join(format!("{}.etag", part.part_number)))
                .await
                .map_err(|_| {
                    StorageError::Invalid(format!("part {} was not uploaded", part.part_number))
                })?;
            if etag.trim() != part.etag.trim().trim_matches('"') {
                return Err(StorageError::Invalid(format!(
                    "part {}: the ETag does not match the uploaded part",
                    part.part_number
                )));
            }
        }
        let dest = self.path(key)?;
        let tmp = dest.with_extension("assembling");
        let mut out = tokio::fs::File::create(&tmp).await?;
        for part in &sorted {
            let bytes = tokio::fs::read(dir.join(format!("{}", part.part_number))).await?;
            out.write_all(&bytes).await?;
        }
        out.flush().await?;
        drop(out);
        tokio::fs::rename(&tmp, &dest).await?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<i64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) if m.is_file() => Ok(Some(m.len() as i64)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Parses a local storage request's query into the grant it claims, and
/// its signature.
pub fn grant_from_query(key: &str, query: &str) -> Option<(Grant, String)> {
    let mut grant = Grant {
        key: key.to_owned(),
        ..Grant::default()
    };
    let mut sig = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "op" => grant.op = v,
            "exp" => grant.exp = v.parse().ok()?,
            "upload_id" => grant.upload_id = v,
            "part" => grant.part = v.parse().ok()?,
            "len" => grant.len = v.parse().ok()?,
            "ct" => grant.content_type = v,
            "cd" => grant.disposition = v,
            "sig" => sig = Some(v),
            _ => return None,
        }
    }
    Some((grant, sig?))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------- S3

/// `STORAGE_PUBLIC_URL`: a presigned URL on the internal endpoint
/// (`http://minio:9000/bucket/key?X-Amz-…`) as browsers must call it
/// (`https://paca.example.com/storage/bucket/key?X-Amz-…`); the gateway
/// strips the prefix again before MinIO checks the signature.
pub fn rewrite_origin(url: String, internal: &str, public: &str) -> String {
    match url.strip_prefix(internal) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
            format!("{public}{rest}")
        }
        _ => url,
    }
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
    pub bucket: String,
    endpoint_label: String,
    /// `(internal origin, public base)`: presigned URLs starting with the
    /// first get the second instead (`STORAGE_PUBLIC_URL`).
    rewrite: Option<(String, String)>,
}

impl S3Store {
    async fn from_env(provider: Option<&str>) -> Result<Self> {
        let missing =
            |name: &str| StorageError::Config(format!("{name} is required for S3 storage"));
        let bucket = var(STORAGE_BUCKET).unwrap_or_else(|| "paca".into());
        let region = var(STORAGE_REGION).unwrap_or_else(|| "us-east-1".into());
        let access_key =
            var(STORAGE_ACCESS_KEY_ID).ok_or_else(|| missing(STORAGE_ACCESS_KEY_ID))?;
        let secret_key =
            var(STORAGE_SECRET_ACCESS_KEY).ok_or_else(|| missing(STORAGE_SECRET_ACCESS_KEY))?;
        let use_ssl = match var(STORAGE_USE_SSL).map(|v| v.to_lowercase()) {
            None => provider == Some("s3"),
            Some(v) => matches!(v.as_str(), "1" | "true" | "yes" | "on"),
        };
        // `minio:9000` (scheme from STORAGE_USE_SSL) or a full URL.
        let endpoint = var(STORAGE_ENDPOINT).map(|e| {
            let e = e.trim_end_matches('/').to_owned();
            if e.contains("://") {
                e
            } else if use_ssl {
                format!("https://{e}")
            } else {
                format!("http://{e}")
            }
        });
        crate::install_tls_provider();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(Credentials::new(
                access_key, secret_key, None, None, "paca-env",
            ))
            .http_client(http)
            // Presigned URLs are used by browsers and plain HTTP clients,
            // which cannot add the SDK's flexible checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &endpoint {
            // A custom endpoint is MinIO or another S3-compatible server:
            // path-style addressing (no per-bucket DNS names).
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        let client = aws_sdk_s3::Client::from_conf(config.build());
        let rewrite = match (var(STORAGE_PUBLIC_URL), &endpoint) {
            (Some(public), Some(endpoint)) => {
                Some((endpoint.clone(), public.trim_end_matches('/').to_owned()))
            }
            _ => None,
        };
        let store = Self {
            client,
            endpoint_label: endpoint.unwrap_or_else(|| "the AWS regional endpoint".into()),
            bucket,
            rewrite,
        };
        store.ensure_bucket().await?;
        Ok(store)
    }

    async fn ensure_bucket(&self) -> Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created the storage bucket");
                Ok(())
            }
            Err(e) => {
                // Created concurrently by another node, or owned by us already.
                if self
                    .client
                    .head_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .is_ok()
                {
                    Ok(())
                } else {
                    Err(StorageError::Config(format!(
                        "bucket {:?} is not reachable and could not be created: {}",
                        self.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )))
                }
            }
        }
    }

    fn public(&self, url: String) -> String {
        match &self.rewrite {
            Some((internal, public)) => rewrite_origin(url, internal, public),
            None => url,
        }
    }

    fn presigning() -> Result<PresigningConfig> {
        PresigningConfig::expires_in(URL_TTL).map_err(backend)
    }

    async fn presign_put(&self, key: &str, content_type: &str) -> Result<String> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .presigned(Self::presigning()?)
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(self.public(req.uri().to_owned()))
    }

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| backend("CreateMultipartUpload returned no upload id"))
    }

    async fn presign_part(&self, key: &str, upload_id: &str, part_number: i32) -> Result<String> {
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .presigned(Self::presigning()?)
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(self.public(req.uri().to_owned()))
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[Part]) -> Result<()> {
        let mut sorted = parts.to_vec();
        sorted.sort_by_key(|p| p.part_number);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                sorted
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.part_number)
                            .e_tag(&p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| {
                // The client's parts or ETags do not match what was uploaded.
                StorageError::Invalid(format!(
                    "the multipart upload could not be completed: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<i64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0))),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(aws_sdk_s3::operation::head_object::HeadObjectError::is_not_found);
                if not_found {
                    Ok(None)
                } else {
                    Err(backend(aws_sdk_s3::error::DisplayErrorContext(e)))
                }
            }
        }
    }

    async fn presign_get(&self, key: &str, disposition: &str) -> Result<String> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(disposition)
            .presigned(Self::presigning()?)
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(self.public(req.uri().to_owned()))
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let bytes = out.body.collect().await.map_err(backend)?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| backend(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field_and_expire() {
        let dir = std::env::temp_dir().join(format!("paca-storage-{}", uuid::Uuid::new_v4()));
        let store = LocalStore::new(dir.clone(), "secret", None).unwrap();
        let grant = Grant::put("task/a/b", "text/plain", 10);
        let sig = store.sign(&grant);
        assert!(store.verify(&grant, &sig));
        let url = store.url("http://h", &grant);
        let (key, query) = url
            .strip_prefix("http://h/api/v1/storage/")
            .unwrap()
            .split_once('?')
            .unwrap();
        let (parsed, parsed_sig) = grant_from_query(key, query).unwrap();
        assert_eq!(parsed, grant);
        assert!(store.verify(&parsed, &parsed_sig));
        for tampered in [
            Grant {
                len: 11,
                ..grant.clone()
            },
            Grant {
                key: "task/a/c".into(),
                ..grant.clone()
            },
            Grant {
                op: "get".into(),
                ..grant.clone()
            },
            Grant {
                exp: grant.exp + 1,
                ..grant.clone()
            },
        ] {
            assert!(!store.verify(&tampered, &sig));
        }
        let expired = Grant {
            exp: chrono::Utc::now().timestamp() - 1,
            ..grant.clone()
        };
        assert!(!store.verify(&expired, &store.sign(&expired)));
        let other = LocalStore::new(dir.clone(), "other", None).unwrap();
        assert!(!other.verify(&grant, &sig));
        assert!(store.path("../etc/passwd").is_err());
        assert!(store.path("task/a/..").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn public_url_replaces_the_internal_origin_only() {
        let url = "http://minio:9000/paca/task/a/b?X-Amz-Signature=abc".to_owned();
        assert_eq!(
            rewrite_origin(
                url.clone(),
                "http://minio:9000",
                "https://paca.example.com/storage"
            ),
            "https://paca.example.com/storage/paca/task/a/b?X-Amz-Signature=abc"
        );
        // another host, or a longer port that merely starts the same, stays
        assert_eq!(
            rewrite_origin(url.clone(), "http://minio:900", "https://x"),
            url
        );
        assert_eq!(
            rewrite_origin(url.clone(), "http://other:9000", "https://x"),
            url
        );
    }

    #[test]
    fn dispositions_quote_names_safely() {
        assert_eq!(
            content_disposition("a \"b\".txt", true),
            "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
        );
        assert!(
            content_disposition("résumé.pdf", false).starts_with("inline; filename=\"r_sum_.pdf\"")
        );
    }
}
