//! Agent secrets at rest: AES-256-GCM under `ENCRYPTION_KEY` (64 hex
//! characters), one random 96-bit nonce per value, and the row's identity
//! (`agent_id`, `name`) as associated data so a ciphertext copied to
//! another row does not decrypt. Values live in `agent_credentials`, never
//! in the log.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use uuid::Uuid;

use crate::{CommandError, CommandResult};

/// The name of an agent's LLM key in `agent_credentials`.
pub const LLM_API_KEY: &str = "llm_api_key";

/// The name of one secret MCP env value.
pub fn mcp_env_name(server_id: Uuid, key: &str) -> String {
    format!("mcp:{server_id}:{key}")
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// From the 64-hex-character `ENCRYPTION_KEY` (seed page 19).
    pub fn from_hex(key: &str) -> Result<Self, String> {
        let bytes = hex::decode(key.trim())
            .map_err(|_| "ENCRYPTION_KEY must be 64 hex characters (32 bytes)".to_owned())?;
        if bytes.len() != 32 {
            return Err("ENCRYPTION_KEY must be 64 hex characters (32 bytes)".into());
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(Self { cipher })
    }

    fn aad(agent_id: Uuid, name: &str) -> Vec<u8> {
        let mut aad = agent_id.as_bytes().to_vec();
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    pub fn seal(&self, agent_id: Uuid, name: &str, plaintext: &str) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce[..]);
        let aad = Self::aad(agent_id, name);
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            // Encryption only fails for inputs beyond GCM's size limit.
            .unwrap_or_default();
        (nonce.to_vec(), ciphertext)
    }

    pub fn open(
        &self,
        agent_id: Uuid,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> CommandResult<String> {
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| {
            CommandError::Infra(crate::InfraError::Credential {
                name: name.to_owned(),
                agent_id,
                reason: "bad nonce",
            })
        })?;
        let aad = Self::aad(agent_id, name);
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                CommandError::Infra(crate::InfraError::Credential {
                    name: name.to_owned(),
                    agent_id,
                    reason: "does not decrypt (ENCRYPTION_KEY changed?)",
                })
            })?;
        String::from_utf8(plain).map_err(|_| {
            CommandError::Infra(crate::InfraError::Credential {
                name: name.to_owned(),
                agent_id,
                reason: "not UTF-8",
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bound_to_its_row() {
        let key = "11".repeat(32);
        let secrets = SecretBox::from_hex(&key).unwrap();
        let agent = Uuid::from_u128(1);
        let (nonce, ct) = secrets.seal(agent, LLM_API_KEY, "sk-live-123");
        assert!(!ct.windows(11).any(|w| w == b"sk-live-123"));
        assert_eq!(
            secrets.open(agent, LLM_API_KEY, &nonce, &ct).unwrap(),
            "sk-live-123"
        );
        // Moved to another agent or name: refused.
        assert!(
            secrets
                .open(Uuid::from_u128(2), LLM_API_KEY, &nonce, &ct)
                .is_err()
        );
        assert!(secrets.open(agent, "other", &nonce, &ct).is_err());
        let other = SecretBox::from_hex(&"22".repeat(32)).unwrap();
        assert!(other.open(agent, LLM_API_KEY, &nonce, &ct).is_err());
        assert!(SecretBox::from_hex("abc").is_err());
    }
}
