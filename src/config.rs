//! Configuration: one typed struct read from the seeds' environment
//! variables, with generated-and-persisted defaults for secrets so that
//! `paca serve` works with zero configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub const PORT: &str = "PORT";
pub const REALTIME_PORT: &str = "REALTIME_PORT";
pub const DATABASE_URL: &str = "DATABASE_URL";
pub const JWT_SECRET: &str = "JWT_SECRET";
pub const ADMIN_USERNAME: &str = "ADMIN_USERNAME";
pub const ADMIN_PASSWORD: &str = "ADMIN_PASSWORD";
pub const COOKIE_SECURE: &str = "COOKIE_SECURE";
pub const JWT_ACCESS_TTL: &str = "JWT_ACCESS_TTL";
pub const JWT_REFRESH_TTL: &str = "JWT_REFRESH_TTL";
pub const JWT_REFRESH_SESSION_TTL: &str = "JWT_REFRESH_SESSION_TTL";
pub const AGENT_API_KEY: &str = "AGENT_API_KEY";
pub const ENCRYPTION_KEY: &str = "ENCRYPTION_KEY";
pub const REDIS_URL: &str = "REDIS_URL";
pub const PACA_DATA_DIR: &str = "PACA_DATA_DIR";
pub const PACA_BIND: &str = "PACA_BIND";
pub const PACA_WORKERS: &str = "PACA_WORKERS";
pub const PACA_DB_MAX_CONNECTIONS: &str = "PACA_DB_MAX_CONNECTIONS";
pub const PACA_FUSED_WRITES: &str = "PACA_FUSED_WRITES";
pub const PACA_LOGIN_MAX_FAILURES: &str = "PACA_LOGIN_MAX_FAILURES";
pub const PACA_LOGIN_MAX_FAILURES_PER_IP: &str = "PACA_LOGIN_MAX_FAILURES_PER_IP";
pub const PACA_TRUSTED_PROXIES: &str = "PACA_TRUSTED_PROXIES";
pub const CORS_ORIGINS: &str = "CORS_ORIGINS";
pub const METRICS_TOKEN: &str = "METRICS_TOKEN";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}")),
    }
}

fn parse_bool(name: &str, default: bool) -> Result<bool> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => bail!("{name}={v:?} is not a boolean (use true or false)"),
    }
}

/// Go-style durations as the seeds write them: `15m`, `168h`, `1h30m`, `90s`.
pub fn parse_duration(raw: &str) -> Result<Duration> {
    let raw = raw.trim();
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = raw.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            'd' => 86400.0,
            _ => bail!("duration {raw:?}: unknown unit {c:?}"),
        };
        let value: f64 = number
            .parse()
            .with_context(|| format!("duration {raw:?}: missing number"))?;
        total += value * unit;
        number.clear();
        any = true;
    }
    if !number.is_empty() {
        bail!("duration {raw:?}: missing unit (e.g. 15m, 24h)");
    }
    if !any || total <= 0.0 {
        bail!("duration {raw:?} must be positive");
    }
    Ok(Duration::from_secs_f64(total))
}

fn duration(name: &str, default: &str) -> Result<Duration> {
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    parse_duration(&raw).with_context(|| format!("{name} is not valid"))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// A listener of its own for Socket.IO (`REALTIME_PORT`, unset: only
    /// the API port's `/ws/socket.io`). Unset by default so that a second
    /// fixed port never stops `paca serve` from starting.
    pub realtime_port: Option<u16>,
    pub bind: String,
    pub workers: usize,
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    pub data_dir: PathBuf,
    pub admin_username: String,
    pub cookie_secure: bool,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub refresh_session_ttl: Duration,
    pub agent_api_key: Option<String>,
    pub login_max_failures: usize,
    pub login_max_failures_per_ip: usize,
    /// Comma-separated browser origins; empty: any origin, no credentials.
    pub cors_origins: String,
    /// Valkey/Redis for agent triggers; `None`: an in-process queue.
    pub redis_url: Option<String>,
    /// One-round-trip task writes (`PACA_FUSED_WRITES`, default on; off
    /// sends every task write through the transactional path).
    pub fused_writes: bool,
    /// Bearer token `GET /metrics` wants; `None`: open (docs/operations.md).
    pub metrics_token: Option<String>,
    /// Reverse proxies whose `X-Real-IP`/`X-Forwarded-For` are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        let data_dir = PathBuf::from(var(PACA_DATA_DIR).unwrap_or_else(|| "./paca-data".into()));
        let data_dir = std::path::absolute(&data_dir).with_context(|| {
            format!(
                "{PACA_DATA_DIR}={} is not a usable path",
                data_dir.display()
            )
        })?;
        // `absolute` keeps `.` components; drop them for readable messages.
        let data_dir: PathBuf = data_dir
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        Ok(Self {
            port: parse(PORT, 8080)?,
            realtime_port: var(REALTIME_PORT)
                .map(|raw| {
                    raw.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| {
                            anyhow::anyhow!("{REALTIME_PORT}={raw:?} is not a port (1-65535)")
                        })
                })
                .transpose()?,
            bind: var(PACA_BIND).unwrap_or_else(|| "0.0.0.0".into()),
            workers: parse(
                PACA_WORKERS,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )?,
            database_url: var(DATABASE_URL),
            db_max_connections: parse(PACA_DB_MAX_CONNECTIONS, 16)?,
            data_dir,
            admin_username: var(ADMIN_USERNAME).unwrap_or_else(|| "admin".into()),
            cookie_secure: parse_bool(COOKIE_SECURE, false)?,
            access_ttl: duration(JWT_ACCESS_TTL, "15m")?,
            refresh_ttl: duration(JWT_REFRESH_TTL, "168h")?,
            refresh_session_ttl: duration(JWT_REFRESH_SESSION_TTL, "24h")?,
            agent_api_key: var(AGENT_API_KEY),
            login_max_failures: parse(PACA_LOGIN_MAX_FAILURES, 10)?,
            login_max_failures_per_ip: parse(
                PACA_LOGIN_MAX_FAILURES_PER_IP,
                gateways::auth::DEFAULT_LOGIN_FAILURES_PER_IP,
            )?,
            cors_origins: var(CORS_ORIGINS).unwrap_or_default(),
            redis_url: var(REDIS_URL),
            fused_writes: parse_bool(PACA_FUSED_WRITES, true)?,
            metrics_token: var(METRICS_TOKEN),
            trusted_proxies: trusted_proxies(var(PACA_TRUSTED_PROXIES).as_deref())?,
        })
    }
}

/// `PACA_TRUSTED_PROXIES`: addresses (`10.0.0.2`) or ranges (`10.0.0.0/8`),
/// comma-separated.
fn trusted_proxies(value: Option<&str>) -> Result<Vec<ipnet::IpNet>> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{PACA_TRUSTED_PROXIES}: {s:?} is neither an IP address nor a CIDR range"
                    )
                })
        })
        .collect()
}

/// Reads a secret from the environment, or from `<data_dir>/<file>`, or
/// generates it and stores it there (mode 0600). Returns the value and
/// whether it was generated just now.
pub fn secret(
    env: &str,
    data_dir: &Path,
    file: &str,
    generate: impl FnOnce() -> String,
) -> Result<(String, bool)> {
    if let Some(value) = var(env) {
        return Ok((value, false));
    }
    let path = data_dir.join(file);
    if path.exists() {
        let value = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok((value.trim().to_owned(), false));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let value = generate();
    write_private(&path, &value)?;
    Ok((value, true))
}

fn write_private(path: &Path, value: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(value.as_bytes())?;
    Ok(())
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("168h").unwrap(),
            Duration::from_secs(168 * 3600)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
