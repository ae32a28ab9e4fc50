-- Identity (issue 3): profiles, links to the identity provider, anonymous
-- tokens (hashes only), Warden's signing keys, and rate-limit counters
-- shared by every replica.

ALTER TABLE users ADD COLUMN username TEXT;
ALTER TABLE users ADD COLUMN avatar_url TEXT;
-- Set when an anonymous user's content moved to an existing registered user
-- (CONTRACT §4, merge path). The record is kept; its tokens are dead.
ALTER TABLE users ADD COLUMN merged_into TEXT REFERENCES users (id);

-- One canonical user per (provider, subject): the source of truth for
-- linking. A user has at most one subject per provider.
CREATE TABLE identities (
    provider    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE UNIQUE INDEX identities_user ON identities (provider, user_id);

-- The anonymous token last issued to each anonymous user: its id (jti) and
-- the SHA-256 of its text, never the token. Removed when the user signs up.
CREATE TABLE anonymous_tokens (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    jti         TEXT NOT NULL,
    token_hash  TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- Warden's ES256 signing keys (PKCS#8 PEM). A key is published from its
-- creation and signs from `signs_from` (later than creation when a rotation
-- publishes first) until `retired_at`; a retired key stays published until
-- `published_until`, when the last token it signed has expired.
CREATE TABLE signing_keys (
    kid              TEXT PRIMARY KEY,
    private_key      TEXT NOT NULL,
    public_jwk       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    signs_from       BIGINT NOT NULL,
    retired_at       BIGINT,
    published_until  BIGINT
);

-- Fixed-window request counters per client address, shared by replicas.
CREATE TABLE rate_limits (
    bucket        TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    hits          BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
