//! Credentials: argon2id password hashes, HS256 access JWTs, rotating
//! refresh tokens with family revocation, hashed API keys. None of these
//! secrets is ever written to the event log.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use domain::ErrorCode;
use domain::user::{SessionEnd, User, UserCommand};
use eventstore::{AppendTx, Metadata};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::directory::{Refusal, UserAccess};
use crate::{CommandError, CommandResult, Commands};

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

/// At most this many argon2id computations at once, one per core: each
/// one holds 19 MiB (the default `m_cost`) for its ~40 ms, so 64
/// concurrent logins used to map 1.2 GB and start 64 blocking threads
/// that only took turns on the cores anyway. Waiting for a permit costs a
/// login no CPU time it would have had; it bounds the memory an
/// unauthenticated burst can make the server hold.
fn password_work() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Runs one argon2id computation on the blocking pool (it is meant to be
/// slow; doing it on the async executor would stall other requests), once
/// a [`password_work`] permit is free.
async fn argon2_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // The semaphore is never closed, so acquiring only waits.
    let _permit = password_work().acquire().await.ok();
    tokio::task::spawn_blocking(work).await
}

/// Hashes a password with argon2id (see [`argon2_blocking`]).
pub async fn hash_password(password: String) -> CommandResult<String> {
    argon2_blocking(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| CommandError::crypto("password salt", e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| CommandError::crypto("password hashing", e.to_string()))
    })
    .await
    .map_err(|e| CommandError::crypto("password hashing task", e))?
}

pub async fn verify_password(hash: String, password: String) -> bool {
    argon2_blocking(move || {
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
    pub fn refresh_lifetime(&self, remember_me: bool) -> Duration {
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

impl Commands {
    /// Checks a username and password: the user from the directory, the
    /// hash from the credential table. Any mismatch is the same
    /// `AUTH_INVALID_CREDENTIALS`, and takes as long.
    pub async fn check_password_login(
        &self,
        username: &str,
        password: &str,
    ) -> CommandResult<(Uuid, bool)> {
        let mut user = self.directory.user_by_name(username);
        if user.is_none() {
            // Created a moment ago on another node?
            self.directory.sync().await?;
            user = self.directory.user_by_name(username);
        }
        let hash = match &user {
            Some(user) => {
                sqlx::query_scalar("SELECT password_hash FROM user_credentials WHERE user_id = $1")
                    .bind(user.id)
                    .fetch_optional(self.store.pool())
                    .await?
            }
            None => None,
        };
        let ok = match hash {
            Some(hash) => verify_password(hash, password.to_owned()).await,
            None => {
                verify_password(dummy_hash().await, password.to_owned()).await;
                false
            }
        };
        match user {
            Some(user) if ok => Ok((user.id, user.must_change_password)),
            _ => Err(CommandError::domain(
                ErrorCode::AUTH_INVALID_CREDENTIALS,
                "invalid username or password",
            )),
        }
    }

    /// Verifies a user's current password (for `PATCH /users/me/password`).
    pub async fn check_current_password(
        &self,
        user_id: Uuid,
        password: &str,
    ) -> CommandResult<bool> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM user_credentials WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.store.pool())
                .await?;
        Ok(match hash {
            Some(hash) => verify_password(hash, password.to_owned()).await,
            None => false,
        })
    }

    /// Starts a session (a new refresh-token family) for a user.
    pub async fn start_session(
        &self,
        user_id: Uuid,
        must_change_password: bool,
        remember_me: bool,
    ) -> CommandResult<Credentials> {
        // A UUIDv7: the family id carries its start time, which is how a
        // password change ends every session begun before it.
        let family = Uuid::now_v7();
        let refresh = random_token(32);
        let refresh_ttl = self.auth.refresh_lifetime(remember_me);
        insert_refresh(
            self.store.pool(),
            &refresh,
            family,
            user_id,
            remember_me,
            refresh_ttl,
        )
        .await?;
        Ok(Credentials {
            user_id,
            access_token: self
                .auth
                .issue_access(user_id, family, must_change_password)?,
            access_ttl: self.auth.access_ttl,
            refresh_token: refresh,
            refresh_ttl,
        })
    }

    /// Rotates a refresh token. Presenting a token that was already
    /// rotated means it leaked (or a client replayed it): the whole family
    /// is revoked, and the revocation is an event, so the family's access
    /// tokens stop working on every node too.
    pub async fn rotate_session(&self, meta: &Metadata, raw: &str) -> CommandResult<Credentials> {
        let mut tx = self.store.begin().await?;
        let row = sqlx::query(
            "SELECT family_id, user_id, remember_me, expires_at, rotated_at, revoked_at
             FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        )
        .bind(sha256_hex(raw))
        .fetch_optional(tx.conn())
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
            let families = revoke_families_in(&mut tx, FamilyOf::Family(family)).await?;
            self.record_revocation(&mut tx, meta, user_id, families, SessionEnd::RefreshReuse)
                .await?;
            tx.commit().await?;
            tracing::warn!(%user_id, %family, "refresh token reuse detected; session family revoked");
            return Err(invalid_token(
                "refresh token reuse detected; session revoked",
            ));
        }
        let user = match self.directory.session(user_id, family) {
            Err(Refusal::UnknownUser) => {
                self.directory.sync().await?;
                self.directory.session(user_id, family)
            }
            other => other,
        };
        let user = match user {
            Ok(user) if row.get::<DateTime<Utc>, _>("expires_at") > Utc::now() => user,
            _ => return Err(invalid_token("refresh token expired")),
        };
        let remember_me: bool = row.get("remember_me");
        sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
            .bind(sha256_hex(raw))
            .execute(tx.conn())
            .await?;
        let refresh = random_token(32);
        let refresh_ttl = self.auth.refresh_lifetime(remember_me);
        insert_refresh(
            tx.conn(),
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
            access_token: self
                .auth
                .issue_access(user_id, family, user.must_change_password)?,
            access_ttl: self.auth.access_ttl,
            refresh_token: refresh,
            refresh_ttl,
        })
    }

    /// Ends a session: the family of the access token used, and the family
    /// of the refresh token presented (normally the same). Both become
    /// unusable at once on every node.
    pub async fn logout(
        &self,
        meta: &Metadata,
        user_id: Uuid,
        family: Option<Uuid>,
        refresh_raw: Option<&str>,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            let mut families = Vec::new();
            if let Some(family) = family {
                families.push(family);
                revoke_families_in(tx, FamilyOf::Family(family)).await?;
            }
            if let Some(raw) = refresh_raw {
                for revoked in revoke_families_in(tx, FamilyOf::Refresh(raw)).await? {
                    if !families.contains(&revoked) {
                        families.push(revoked);
                    }
                }
            }
            self.record_revocation(tx, meta, user_id, families, SessionEnd::Logout).await
        }.await)
    }

    async fn record_revocation(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        user_id: Uuid,
        family_ids: Vec<Uuid>,
        reason: SessionEnd,
    ) -> CommandResult<()> {
        let mut decide = |user: &User| {
            Ok((
                user.decide(UserCommand::RevokeSessions {
                    family_ids: family_ids.clone(),
                    reason,
                })?,
                vec![],
            ))
        };
        self.execute_in(tx, user_id, None, User::evolve, meta, &mut decide, None)
            .await?;
        Ok(())
    }

    /// Resolves a raw API key to `(key_id, user)`, refusing revoked and
    /// expired keys with their own codes. The hash -> key mapping never
    /// changes, so it is cached; whether the key may still be used comes
    /// from the directory.
    pub async fn authenticate_api_key(&self, raw: &str) -> CommandResult<(Uuid, UserAccess)> {
        if !raw.starts_with(API_KEY_PREFIX) {
            return Err(invalid_token("malformed API key"));
        }
        let hash = sha256_hex(raw);
        let (key_id, user_id) = match self.directory.api_key(&hash) {
            Some(found) => found,
            None => {
                let row: Option<(Uuid, Uuid)> = sqlx::query_as(
                    "SELECT key_id, user_id FROM api_key_secrets WHERE key_hash = $1",
                )
                .bind(&hash)
                .fetch_optional(self.store.pool())
                .await?;
                let Some((key_id, user_id)) = row else {
                    return Err(invalid_token("unknown API key"));
                };
                self.directory.remember_api_key(hash, key_id, user_id);
                (key_id, user_id)
            }
        };
        let now = Utc::now();
        let user = match self.directory.api_key_user(key_id, user_id, now) {
            Err(Refusal::UnknownUser) => {
                self.directory.sync().await?;
                self.directory.api_key_user(key_id, user_id, now)
            }
            other => other,
        };
        let user = user.map_err(|refusal| match refusal {
            Refusal::ApiKeyRevoked => {
                CommandError::domain(ErrorCode::API_KEY_REVOKED, "API key has been revoked")
            }
            Refusal::ApiKeyExpired => {
                CommandError::domain(ErrorCode::API_KEY_EXPIRED, "API key has expired")
            }
            _ => invalid_token("unknown API key"),
        })?;
        self.touch_api_key(key_id, now).await?;
        Ok((key_id, user))
    }

    /// `last_used_at` is operational data, not a domain fact: not an event,
    /// and written at most once a minute per key per node.
    async fn touch_api_key(&self, key_id: Uuid, now: DateTime<Utc>) -> CommandResult<()> {
        static TOUCHED: std::sync::LazyLock<
            std::sync::Mutex<std::collections::HashMap<Uuid, DateTime<Utc>>>,
        > = std::sync::LazyLock::new(Default::default);
        let due = {
            let mut touched = TOUCHED.lock().unwrap_or_else(|e| e.into_inner());
            if touched.len() > 100_000 {
                touched.clear();
            }
            let due = touched
                .get(&key_id)
                .is_none_or(|at| now - *at > chrono::Duration::seconds(60));
            if due {
                touched.insert(key_id, now);
            }
            due
        };
        if due {
            sqlx::query("UPDATE api_key_secrets SET last_used_at = now() WHERE key_id = $1")
                .bind(key_id)
                .execute(self.store.pool())
                .await?;
        }
        Ok(())
    }
}

enum FamilyOf<'a> {
    Family(Uuid),
    /// The family a raw refresh token belongs to.
    Refresh(&'a str),
}

/// Marks the families' refresh tokens revoked; returns the families that
/// had live tokens.
async fn revoke_families_in(tx: &mut AppendTx, of: FamilyOf<'_>) -> CommandResult<Vec<Uuid>> {
    let query = match of {
        FamilyOf::Family(family) => sqlx::query_scalar(
            "UPDATE refresh_tokens SET revoked_at = now()
             WHERE family_id = $1 AND revoked_at IS NULL RETURNING family_id",
        )
        .bind(family),
        FamilyOf::Refresh(raw) => sqlx::query_scalar(
            "UPDATE refresh_tokens SET revoked_at = now()
             WHERE revoked_at IS NULL
               AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)
             RETURNING family_id",
        )
        .bind(sha256_hex(raw)),
    };
    let mut families: Vec<Uuid> = query.fetch_all(tx.conn()).await?;
    families.sort();
    families.dedup();
    Ok(families)
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

/// A new raw API key (`paca_` + 40 hex), its display prefix and its hash.
pub fn generate_api_key() -> (String, String, String) {
    let raw = format!("{API_KEY_PREFIX}{}", random_token(20));
    let prefix = raw[..API_KEY_PREFIX.len() + 8].to_owned();
    let hash = sha256_hex(&raw);
    (raw, prefix, hash)
}

/// Constant-time comparison for pre-shared keys.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
