//! The plugin cache (`cache_get/set/delete`): Valkey/Redis through `fred`
//! when `REDIS_URL` is set, otherwise a bounded in-process map. Keys are
//! namespaced per plugin by the caller (`plugin:<len>:<name>:<key>`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fred::prelude::{Builder, ClientLike, Config, Expiration, KeysInterface};

#[async_trait::async_trait]
pub trait Cache: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String>;
    async fn delete(&self, key: &str) -> Result<(), String>;
}

/// A cached value and when it expires.
type Entry = (Vec<u8>, Option<Instant>);

/// In-process cache, bounded in entries.
#[derive(Default)]
pub struct MemoryCache {
    map: Mutex<HashMap<String, Entry>>,
}

const MAX_ENTRIES: usize = 100_000;
const MAX_VALUE: usize = 1 << 20;

#[async_trait::async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((_, Some(expires))) if *expires <= Instant::now() => {
                map.remove(key);
                Ok(None)
            }
            Some((v, _)) => Ok(Some(v.clone())),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String> {
        if value.len() > MAX_VALUE {
            return Err(format!("cache values are limited to {MAX_VALUE} bytes"));
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            let now = Instant::now();
            map.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
            if map.len() >= MAX_ENTRIES {
                return Err("cache is full".into());
            }
        }
        map.insert(key.to_owned(), (value, ttl.map(|t| Instant::now() + t)));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), String> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Ok(())
    }
}

pub struct RedisCache {
    client: fred::clients::Client,
}

impl RedisCache {
    pub async fn connect(url: &str) -> Result<Self, String> {
        let config = Config::from_url(url).map_err(|e| e.to_string())?;
        let client = Builder::from_config(config)
            .build()
            .map_err(|e| e.to_string())?;
        client.init().await.map_err(|e| e.to_string())?;
        Ok(Self { client })
    }
}

#[async_trait::async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.client
            .get::<Option<Vec<u8>>, _>(key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), String> {
        if value.len() > MAX_VALUE {
            return Err(format!("cache values are limited to {MAX_VALUE} bytes"));
        }
        let expiration = ttl.map(|t| Expiration::EX(t.as_secs().max(1) as i64));
        self.client
            .set::<(), _, _>(key, value, expiration, None, false)
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete(&self, key: &str) -> Result<(), String> {
        self.client
            .del::<i64, _>(key)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
