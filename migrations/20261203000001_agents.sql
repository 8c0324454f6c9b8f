-- AI agents (issues 11 and 12): secrets and the trigger outbox. Neither is a
-- read model; both are written by command handlers inside the append
-- transaction.

-- Encrypted agent secrets (AES-256-GCM under ENCRYPTION_KEY): the LLM API key
-- (name 'llm_api_key') and the values of secret-like MCP env keys (name
-- 'mcp:<server_id>:<KEY>'). The log records only that they changed.
CREATE TABLE agent_credentials (
    agent_id   UUID NOT NULL,
    name       TEXT NOT NULL,
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, name)
);

-- Messages for Valkey (`paca:agent:triggers`), inserted in the transaction
-- that appends the conversation's creation (or its stop), and deleted by the
-- relay once XADDed. `id` is the dedup key the relay claims in Valkey, so a
-- relay that dies between XADD and DELETE never adds an entry twice.
CREATE TABLE agent_outbox (
    id         UUID PRIMARY KEY,
    stream     TEXT NOT NULL,
    -- [[field, value], ...] in the order they are XADDed.
    fields     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts   INT NOT NULL DEFAULT 0,
    last_error TEXT NULL
);
CREATE INDEX agent_outbox_created_idx ON agent_outbox (created_at);
