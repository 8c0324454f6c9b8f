//! Credentials: argon2id password hashes, HS256 access JWTs, rotating
//! refresh tokens with family revocation, hashed API keys. None of these
//! secrets is ever written to the event log.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use domain::ErrorCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{CommandError, CommandResult};

pub const API_KEY_PREFIX: &str = "paca_";

#[derive(Clone)]
pub struct AuthConfig {
    pub jwt_secret: String,
    pub access_ttl: Duration,
    /// Refresh lifetime for `remember_me` logins.
    pub refresh_ttl: Duration,
    /// Refresh lifetime for ordinary (browser-session) logins.
    pub refresh_session_ttl: Duration,
    pub cookie_secure: bool,
    /// The pre-shared key of the built-in agent bot (`AGENT_API_KEY`).
    pub agent_api_key: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &"<redacted>")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("refresh_session_ttl", &self.refresh_session_ttl)
            .field("cookie_secure", &self.cookie_secure)
            .field(
                "agent_api_key",
                &self.agent_api_key.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    /// Always "access"; refresh tokens are opaque, not JWTs.
    pub kind: String,
    /// The refresh-token family (one login) this access token belongs to.
    pub sid: Uuid,
    pub must_change_password: bool,
    pub iat: i64,
    pub exp: i64,
}

/// A freshly issued token pair and the lifetimes the cookies should carry.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: Uuid,
    pub access_token: String,
    pub access_ttl: Duration,
    pub refresh_token: String,
    pub refresh_ttl: Duration,
}

fn invalid_token(message: &str) -> CommandError {
    CommandError::domain(ErrorCode::AUTH_TOKEN_INVALID, message)
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// Hashes a password with argon2id on the blocking pool (it is meant to be
/// slow; doing it on the async executor would stall other requests).
pub async fn hash_password(password: String) -> CommandResult<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        let salt = SaltString::encode_b64(&salt).map_err(|e| CommandError::crypto("password salt", e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| CommandError::crypto("password hashing", e.to_string()))
    })
    .await
    .map_err(|e| CommandError::crypto("password hashing task", e))?
}

pub async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when a username is
/// unknown so that a failed login takes as long either way.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn dummy_hash() -> String {
    if let Some(hash) = DUMMY_HASH.get() {
        return hash.clone();
    }
    let hash = hash_password(random_token(16)).await.unwrap_or_default();
    DUMMY_HASH.get_or_init(|| hash).clone()
}

impl AuthConfig {
    fn refresh_lifetime(&self, remember_me: bool) -> Duration {
        if remember_me {
            self.refresh_ttl
        } else {
            self.refresh_session_ttl
        }
    }

    pub fn issue_access(
        &self,
        user_id: Uuid,
        family: Uuid,
        must_change_password: bool,
    ) -> CommandResult<String> {
        let now = Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user_id,
            kind: "access".into(),
            sid: family,
            must_change_password,
            iat: now,
            exp: now + self.access_ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.jwt_secret.as_bytes()),
        )
        .map_err(|e| CommandError::crypto("access token signing", e))
    }

    pub fn verify_access(&self, token: &str) -> CommandResult<AccessClaims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<AccessClaims>(
            token,
            &DecodingKey::from_secret(self.jwt_secret.as_bytes()),
            &validation,
        )
        .map_err(|_| invalid_token("invalid or expired access token"))?;
        if data.claims.kind != "access" {
            return Err(invalid_token("not an access token"));
        }
        Ok(data.claims)
    }
}

/// Checks a username and password against the live user read model and the
/// credential table. Any mismatch is the same `AUTH_INVALID_CREDENTIALS`.
pub async fn check_password_login(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> CommandResult<(Uuid, bool)> {
    let row = sqlx::query(
        "SELECT u.id, u.must_change_password, c.password_hash
         FROM users u JOIN user_credentials c ON c.user_id = u.id
         WHERE lower(u.username) = lower($1) AND u.deleted_at IS NULL",
    )
    .bind(username)
    .fetch_optional(pool)
    .await?;
    let (user, hash) = match row {
        Some(row) => (
            Some((
                row.get::<Uuid, _>("id"),
                row.get::<bool, _>("must_change_password"),
            )),
            row.get::<String, _>("password_hash"),
        ),
        None => (None, dummy_hash().await),
    };
    let ok = verify_password(hash, password.to_owned()).await;
    match user {
        Some(user) if ok => Ok(user),
        _ => Err(CommandError::domain(
            ErrorCode::AUTH_INVALID_CREDENTIALS,
            "invalid username or password",
        )),
    }
}

/// Verifies a user's current password (for `PATCH /users/me/password`).
pub async fn check_current_password(
    pool: &PgPool,
    user_id: Uuid,
    password: &str,
) -> CommandResult<bool> {
    let hash: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM user_credentials WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(match hash {
        Some(hash) => verify_password(hash, password.to_owned()).await,
        None => false,
    })
}

/// Starts a session (a new refresh-token family) for a user.
pub async fn start_session(
    pool: &PgPool,
    config: &AuthConfig,
    user_id: Uuid,
    must_change_password: bool,
    remember_me: bool,
) -> CommandResult<Credentials> {
    let family = Uuid::now_v7();
    let refresh = random_token(32);
    let refresh_ttl = config.refresh_lifetime(remember_me);
    insert_refresh(pool, &refresh, family, user_id, remember_me, refresh_ttl).await?;
    Ok(Credentials {
        user_id,
        access_token: config.issue_access(user_id, family, must_change_password)?,
        access_ttl: config.access_ttl,
        refresh_token: refresh,
        refresh_ttl,
    })
}

async fn insert_refresh(
    executor: impl sqlx::PgExecutor<'_>,
    raw: &str,
    family: Uuid,
    user_id: Uuid,
    remember_me: bool,
    ttl: Duration,
) -> CommandResult<()> {
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, remember_me, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(sha256_hex(raw))
    .bind(family)
    .bind(user_id)
    .bind(remember_me)
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Rotates a refresh token. Presenting a token that was already rotated
/// means it leaked (or a client replayed it): the whole family is revoked,
/// so the thief's and the victim's sessions both end.
pub async fn rotate_session(
    pool: &PgPool,
    config: &AuthConfig,
    raw: &str,
) -> CommandResult<Credentials> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT t.family_id, t.user_id, t.remember_me, t.expires_at, t.rotated_at, t.revoked_at,
                u.must_change_password, u.deleted_at
         FROM refresh_tokens t LEFT JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 FOR UPDATE OF t",
    )
    .bind(sha256_hex(raw))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(invalid_token("unknown refresh token"));
    };
    let family: Uuid = row.get("family_id");
    let user_id: Uuid = row.get("user_id");
    if row.get::<Option<DateTime<Utc>>, _>("revoked_at").is_some() {
        return Err(invalid_token("refresh token revoked"));
    }
    if row.get::<Option<DateTime<Utc>>, _>("rotated_at").is_some() {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(%user_id, %family, "refresh token reuse detected; session family revoked");
        return Err(invalid_token(
            "refresh token reuse detected; session revoked",
        ));
    }
    if row.get::<DateTime<Utc>, _>("expires_at") <= Utc::now()
        || row.get::<Option<DateTime<Utc>>, _>("deleted_at").is_some()
        || row.get::<Option<bool>, _>("must_change_password").is_none()
    {
        return Err(invalid_token("refresh token expired"));
    }
    let remember_me: bool = row.get("remember_me");
    let must_change: bool = row
        .get::<Option<bool>, _>("must_change_password")
        .unwrap_or(false);
    sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
        .bind(sha256_hex(raw))
        .execute(&mut *tx)
        .await?;
    let refresh = random_token(32);
    let refresh_ttl = config.refresh_lifetime(remember_me);
    insert_refresh(
        &mut *tx,
        &refresh,
        family,
        user_id,
        remember_me,
        refresh_ttl,
    )
    .await?;
    tx.commit().await?;
    Ok(Credentials {
        user_id,
        access_token: config.issue_access(user_id, family, must_change)?,
        access_ttl: config.access_ttl,
        refresh_token: refresh,
        refresh_ttl,
    })
}

pub async fn revoke_family(pool: &PgPool, family: Uuid) -> CommandResult<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .execute(pool)
    .await?;
    Ok(())
}

/// Revokes the family a raw refresh token belongs to (logout with only the
/// refresh cookie at hand).
pub async fn revoke_by_refresh(pool: &PgPool, raw: &str) -> CommandResult<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE revoked_at IS NULL
           AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
    )
    .bind(sha256_hex(raw))
    .execute(pool)
    .await?;
    Ok(())
}

/// A new raw API key (`paca_` + 40 hex), its display prefix and its hash.
pub fn generate_api_key() -> (String, String, String) {
    let raw = format!("{API_KEY_PREFIX}{}", random_token(20));
    let prefix = raw[..API_KEY_PREFIX.len() + 8].to_owned();
    let hash = sha256_hex(&raw);
    (raw, prefix, hash)
}

/// Resolves a raw API key to `(key_id, user_id)`, refusing revoked and
/// expired keys with their own codes.
pub async fn authenticate_api_key(pool: &PgPool, raw: &str) -> CommandResult<(Uuid, Uuid)> {
    if !raw.starts_with(API_KEY_PREFIX) {
        return Err(invalid_token("malformed API key"));
    }
    let row = sqlx::query(
        "SELECT s.key_id, s.user_id, s.last_used_at, k.revoked_at, k.expires_at
         FROM api_key_secrets s JOIN api_keys k ON k.id = s.key_id
         WHERE s.key_hash = $1",
    )
    .bind(sha256_hex(raw))
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Err(invalid_token("unknown API key"));
    };
    if row.get::<Option<DateTime<Utc>>, _>("revoked_at").is_some() {
        return Err(CommandError::domain(
            ErrorCode::API_KEY_REVOKED,
            "API key has been revoked",
        ));
    }
    let now = Utc::now();
    if row
        .get::<Option<DateTime<Utc>>, _>("expires_at")
        .is_some_and(|at| at <= now)
    {
        return Err(CommandError::domain(
            ErrorCode::API_KEY_EXPIRED,
            "API key has expired",
        ));
    }
    let key_id: Uuid = row.get("key_id");
    // last_used_at is operational data, not a domain fact: it is not an
    // event, and it is written at most once a minute per key.
    let stale = row
        .get::<Option<DateTime<Utc>>, _>("last_used_at")
        .is_none_or(|at| now - at > chrono::Duration::seconds(60));
    if stale {
        sqlx::query("UPDATE api_key_secrets SET last_used_at = now() WHERE key_id = $1")
            .bind(key_id)
            .execute(pool)
            .await?;
    }
    Ok((key_id, row.get("user_id")))
}

/// Constant-time comparison for pre-shared keys.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
