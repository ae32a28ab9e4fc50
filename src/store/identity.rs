//! Identity tables: users' profiles, links to the identity provider,
//! anonymous tokens (hashes), Warden's signing keys — and the sign-in
//! transactions over them (CONTRACT §4).
//!
//! Races are settled by the database: the `(provider, subject)` primary key
//! makes twenty concurrent first sign-ins of one person create one user (the
//! losers' inserts find the row, roll back and retry, reading the winner's
//! user), and refresh is a compare-and-set on the stored token hash.

use super::{now_millis, opt_i64, opt_text, revision, text, values_list, Store, StoreError, Tx};
use crate::audit::{Actor, AuditEvent};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A signing key as stored. `Debug` prints no private key.
#[derive(Clone)]
pub struct StoredKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// Public JWK JSON.
    pub public_jwk: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it starts signing (Unix milliseconds).
    pub signs_from: i64,
    /// When it stops signing.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// What the store keeps of an issued anonymous token.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    /// Token id.
    pub jti: String,
    /// SHA-256 of the token text, hex.
    pub hash: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The ids of a new anonymous user and its own workspace and project.
#[derive(Clone, Debug)]
pub struct NewAnonymous {
    /// User id.
    pub user: String,
    /// Workspace id.
    pub workspace: String,
    /// Project id.
    pub project: String,
}

/// The profile claims of a verified provider token.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// The provider's subject.
    pub subject: String,
    /// The canonical id the provider carries, if any.
    pub external_id: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
}

/// Proof of an anonymous identity: a verified token's user, id and hash.
#[derive(Clone, Debug)]
pub struct AnonymousProof {
    /// The anonymous user.
    pub user: String,
    /// The token's `jti`.
    pub jti: String,
    /// SHA-256 of the token text.
    pub hash: String,
}

/// The outcome of a sign-in.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The canonical user.
    pub user_id: String,
    /// True when this sign-in created the user or linked the subject.
    pub linked: bool,
    /// What the upgrade secured, when an anonymous user signed up.
    pub upgrade: Option<Value>,
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The provider's claims disagree with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The anonymous token is not the live token of an anonymous user.
    #[error("the anonymous token is no longer valid: it was replaced by a refresh, or its user has already signed in")]
    DeadAnonymousToken,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> Self {
        LinkError::Store(e.into())
    }
}

/// Attempts before a sign-in that keeps losing races gives up.
const ATTEMPTS: usize = 8;
/// Ids per statement when securing content.
const CHUNK: usize = 500;
/// Ids listed per kind in an audit event; counts are always complete.
const AUDIT_IDS: usize = 1000;

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl Store {
    /// Keys still published (live, or retired with tokens that may still be
    /// valid), newest first.
    pub async fn published_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, private_key, public_jwk, created_at, signs_from, retired_at FROM signing_keys \
             WHERE published_until IS NULL OR published_until > $1 \
             ORDER BY created_at DESC, kid DESC",
        )
        .bind(now_millis())
        .fetch_all(self.pool())
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            keys.push(StoredKey {
                kid: text(row, "kid")?,
                private_key: text(row, "private_key")?,
                public_jwk: text(row, "public_jwk")?,
                created_at: opt_i64(row, "created_at")?.unwrap_or_default(),
                signs_from: opt_i64(row, "signs_from")?.unwrap_or_default(),
                retired_at: opt_i64(row, "retired_at")?,
            });
        }
        Ok(keys)
    }

    /// Stores `key` unless a key signs now or will (first start; replicas
    /// starting together may each add one, which is harmless).
    pub async fn add_first_signing_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let live =
            sqlx::query("SELECT kid FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1")
                .bind(now_millis())
                .fetch_optional(tx.conn())
                .await?;
        if live.is_some() {
            return Ok(());
        }
        insert_key(&mut tx, key).await?;
        // Signing keys are no decision's facts (each process re-reads them).
        tx.changed_only([]);
        tx.commit(AuditEvent {
            actor: Actor::system(),
            action: "signing_key.create",
            target_type: "signing_key",
            target_id: key.kid.clone(),
            before: None,
            after: Some(json!({"kid": key.kid})),
            request_id: None,
        })
        .await
    }

    /// Stores `key`, which signs from `key.signs_from`, and retires every
    /// key still signing at that moment (published until `published_until`).
    pub async fn rotate_signing_key(
        &self,
        key: &StoredKey,
        published_until: i64,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1, published_until = $2 \
             WHERE retired_at IS NULL OR retired_at > $1",
        )
        .bind(key.signs_from)
        .bind(published_until)
        .execute(tx.conn())
        .await?;
        insert_key(&mut tx, key).await?;
        tx.changed_only([]);
        tx.commit(event).await
    }

    /// The live token id of each of `users` that is an anonymous user with
    /// a live token. Read before anything else by every request that
    /// carries an anonymous token (checks and management alike), so it is
    /// read again when its connection turns out lost
    /// ([`Store::read_again_if_lost`]).
    pub async fn live_anonymous_tokens(
        &self,
        users: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        let select = "SELECT user_id AS k, jti AS v FROM anonymous_tokens WHERE user_id IN";
        self.read_again_if_lost(|| self.by_keys(select, None, users))
            .await
    }

    /// The users linked to `subjects` of `provider`: the first read of a
    /// request that carries a provider token without an `external_id`,
    /// read again when its connection turns out lost, as
    /// [`Store::live_anonymous_tokens`].
    pub async fn users_for_subjects(
        &self,
        provider: &str,
        subjects: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        let select =
            "SELECT subject AS k, user_id AS v FROM identities WHERE provider = $1 AND subject IN";
        self.read_again_if_lost(|| self.by_keys(select, Some(provider), subjects))
            .await
    }

    /// `k` to `v` of the rows `select` (ending in `IN`; `leading`, when
    /// given, is its `$1`) finds for `keys`, asked [`CHUNK`] keys at a time.
    async fn by_keys(
        &self,
        select: &str,
        leading: Option<&str>,
        keys: &[&str],
    ) -> Result<HashMap<String, String>, StoreError> {
        let first = 1 + usize::from(leading.is_some());
        let mut found = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let statement = format!("{select} (VALUES {})", values_list(first, chunk.len()));
            let mut query = sqlx::query(&statement);
            if let Some(value) = leading {
                query = query.bind(value);
            }
            for key in chunk {
                query = query.bind(*key);
            }
            for row in query.fetch_all(self.pool()).await? {
                found.insert(text(&row, "k")?, text(&row, "v")?);
            }
        }
        Ok(found)
    }

    /// Creates an anonymous user with its own private workspace and project
    /// (the user as owner) and records its first token, in one transaction.
    pub async fn create_anonymous(
        &self,
        ids: &NewAnonymous,
        token: &TokenRecord,
        request_id: Option<String>,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, kind, created_at, updated_at) VALUES ($1, 'anonymous', $2, $2)",
        )
        .bind(&ids.user)
        .bind(now)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO workspaces (id, owner_id, visibility, created_at, updated_at) \
             VALUES ($1, $2, 'private', $3, $3)",
        )
        .bind(&ids.workspace)
        .bind(&ids.user)
        .bind(now)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO projects (id, workspace_id, visibility, created_at, updated_at) \
             VALUES ($1, $2, 'private', $3, $3)",
        )
        .bind(&ids.project)
        .bind(&ids.workspace)
        .bind(now)
        .execute(tx.conn())
        .await?;
        store_token(&mut tx, &ids.user, token, now).await?;
        // New entities: only cached "unknown" answers about them go.
        tx.changed_only([
            revision::user(&ids.user),
            revision::workspace(&ids.workspace),
            revision::project(&ids.project),
        ]);
        tx.commit(AuditEvent {
            actor: Actor::user(&ids.user),
            action: "anonymous.create",
            target_type: "user",
            target_id: ids.user.clone(),
            before: None,
            after: Some(json!({
                "kind": "anonymous",
                "workspace": ids.workspace,
                "project": ids.project,
                "token_expires_at": token.expires_at,
            })),
            request_id,
        })
        .await
    }

    /// Replaces the live token of `proof.user` with `next`, only if the
    /// presented token (`proof`) is the live one. False when it is not: a
    /// replayed older token, or a user who has signed in.
    pub async fn refresh_anonymous(
        &self,
        proof: &AnonymousProof,
        next: &TokenRecord,
        request_id: Option<String>,
    ) -> Result<bool, StoreError> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE anonymous_tokens SET jti = $1, token_hash = $2, issued_at = $3, expires_at = $4 \
             WHERE user_id = $5 AND jti = $6 AND token_hash = $7",
        )
        .bind(&next.jti)
        .bind(&next.hash)
        .bind(now)
        .bind(i64::try_from(next.expires_at).unwrap_or(i64::MAX))
        .bind(&proof.user)
        .bind(&proof.jti)
        .bind(&proof.hash)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        // Tokens are checked on every request, never cached: no fact changed.
        tx.changed_only([]);
        tx.commit(AuditEvent {
            actor: Actor::user(&proof.user),
            action: "anonymous.refresh",
            target_type: "user",
            target_id: proof.user.clone(),
            before: Some(json!({"jti": proof.jti})),
            after: Some(json!({"jti": next.jti, "token_expires_at": next.expires_at})),
            request_id,
        })
        .await?;
        Ok(true)
    }

    /// Signs in the provider's user `profile`: finds, creates or links the
    /// canonical user, syncs the profile, and — given an anonymous token —
    /// upgrades that anonymous user (CONTRACT §4), all in one transaction.
    pub async fn resolve_user(
        &self,
        provider: &str,
        profile: &Profile,
        anonymous: Option<&AnonymousProof>,
        request_id: Option<String>,
    ) -> Result<Resolved, LinkError> {
        for _ in 0..ATTEMPTS {
            let tx = self.begin().await?;
            if let Some(resolved) =
                resolve_once(tx, provider, profile, anonymous, request_id.clone()).await?
            {
                return Ok(resolved);
            }
            // Lost a race with a concurrent sign-in of the same person: the
            // transaction rolled back; the next attempt reads the winner's link.
        }
        Err(
            StoreError::Unavailable("too many concurrent sign-ins of one identity; retry".into())
                .into(),
        )
    }
}

async fn insert_key(tx: &mut Tx, key: &StoredKey) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key, public_jwk, created_at, signs_from) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.kid)
    .bind(&key.private_key)
    .bind(&key.public_jwk)
    .bind(key.created_at)
    .bind(key.signs_from)
    .execute(tx.conn())
    .await?;
    Ok(())
}

async fn store_token(
    tx: &mut Tx,
    user: &str,
    token: &TokenRecord,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO anonymous_tokens (user_id, jti, token_hash, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user)
    .bind(&token.jti)
    .bind(&token.hash)
    .bind(now)
    .bind(i64::try_from(token.expires_at).unwrap_or(i64::MAX))
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A stored user's kind and profile.
struct UserRow {
    kind: String,
    merged_into: Option<String>,
    profile: Value,
}

async fn user_row(tx: &mut Tx, id: &str) -> Result<Option<UserRow>, StoreError> {
    let row = sqlx::query(
        "SELECT kind, merged_into, email, name, username, avatar_url FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(UserRow {
        kind: text(&row, "kind")?,
        merged_into: opt_text(&row, "merged_into")?,
        profile: json!({
            "email": opt_text(&row, "email")?,
            "name": opt_text(&row, "name")?,
            "username": opt_text(&row, "username")?,
            "avatar_url": opt_text(&row, "avatar_url")?,
        }),
    }))
}

/// Inserts the `(provider, subject)` link; false when a concurrent sign-in
/// got there first.
async fn link(tx: &mut Tx, provider: &str, subject: &str, user: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO identities (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(provider)
    .bind(subject)
    .bind(user)
    .bind(now_millis())
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Writes the provider's profile onto `user` (claims absent from the token
/// keep the stored value) and makes it registered. Returns the profile
/// before and after.
async fn sync_profile(
    tx: &mut Tx,
    user: &str,
    profile: &Profile,
) -> Result<(Value, Value), StoreError> {
    let before = user_row(tx, user)
        .await?
        .map(|u| json!({"kind": u.kind, "profile": u.profile}))
        .unwrap_or(Value::Null);
    sqlx::query(
        "UPDATE users SET kind = 'registered', email = COALESCE($1, email), name = COALESCE($2, name), \
         username = COALESCE($3, username), avatar_url = COALESCE($4, avatar_url), updated_at = $5 \
         WHERE id = $6",
    )
    .bind(profile.email.as_deref())
    .bind(profile.name.as_deref())
    .bind(profile.username.as_deref())
    .bind(profile.avatar_url.as_deref())
    .bind(now_millis())
    .bind(user)
    .execute(tx.conn())
    .await?;
    let after = user_row(tx, user)
        .await?
        .map(|u| json!({"kind": u.kind, "profile": u.profile}))
        .unwrap_or(Value::Null);
    Ok((before, after))
}

/// Checks that `proof` is the live token of an anonymous user that has not
/// signed in.
async fn check_anonymous(tx: &mut Tx, proof: &AnonymousProof) -> Result<(), LinkError> {
    let row = sqlx::query(
        "SELECT t.jti, t.token_hash, u.kind, u.merged_into FROM anonymous_tokens t \
         JOIN users u ON u.id = t.user_id WHERE t.user_id = $1",
    )
    .bind(&proof.user)
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else {
        return Err(LinkError::DeadAnonymousToken);
    };
    let live = text(&row, "jti")? == proof.jti
        && text(&row, "token_hash")? == proof.hash
        && text(&row, "kind")? == "anonymous"
        && opt_text(&row, "merged_into")?.is_none();
    if live {
        Ok(())
    } else {
        Err(LinkError::DeadAnonymousToken)
    }
}

/// One attempt of [`Store::resolve_user`]; `None` when it lost a race and
/// rolled back.
async fn resolve_once(
    mut tx: Tx,
    provider: &str,
    profile: &Profile,
    anonymous: Option<&AnonymousProof>,
    request_id: Option<String>,
) -> Result<Option<Resolved>, LinkError> {
    let mapped = sqlx::query("SELECT user_id FROM identities WHERE provider = $1 AND subject = $2")
        .bind(provider)
        .bind(&profile.subject)
        .fetch_optional(tx.conn())
        .await?
        .map(|row| text(&row, "user_id"))
        .transpose()?;
    let mut linked = false;
    let canonical = match (&mapped, &profile.external_id) {
        (Some(m), Some(e)) if m != e => {
            return Err(LinkError::Conflict(format!(
                "the token's external_id {e:?} disagrees with the user {m:?} linked to this identity; fix external_id at the identity provider"
            )))
        }
        (Some(m), _) => Some(m.clone()),
        (None, Some(e)) => {
            adopt_external_id(&mut tx, provider, e).await?;
            if !link(&mut tx, provider, &profile.subject, e).await? {
                return Ok(None);
            }
            linked = true;
            Some(e.clone())
        }
        (None, None) => None,
    };
    let actor_for = |user: &str| Actor::user(user);
    let (user_id, upgrade) = match (canonical, anonymous) {
        (None, None) => {
            let user = new_id("u");
            sqlx::query(
                "INSERT INTO users (id, kind, created_at, updated_at) VALUES ($1, 'registered', $2, $2)",
            )
            .bind(&user)
            .bind(now_millis())
            .execute(tx.conn())
            .await?;
            if !link(&mut tx, provider, &profile.subject, &user).await? {
                return Ok(None);
            }
            linked = true;
            (user, None)
        }
        (Some(c), None) => {
            // A user the provider names who is still anonymous (linked
            // through external_id without its token) signs up too.
            let was_anonymous = user_row(&mut tx, &c)
                .await?
                .is_some_and(|u| u.kind == "anonymous");
            let upgrade = if was_anonymous {
                Some(upgrade_in_place(&mut tx, &c).await?)
            } else {
                None
            };
            (c, upgrade)
        }
        (None, Some(proof)) => {
            check_anonymous(&mut tx, proof).await?;
            if !link(&mut tx, provider, &profile.subject, &proof.user).await? {
                return Ok(None);
            }
            linked = true;
            let summary = upgrade_in_place(&mut tx, &proof.user).await?;
            (proof.user.clone(), Some(summary))
        }
        (Some(c), Some(proof)) => {
            check_anonymous(&mut tx, proof).await?;
            let summary = if c == proof.user {
                // external_id already named this anonymous user: it signs
                // up in place.
                upgrade_in_place(&mut tx, &c).await?
            } else {
                // The identity's user may itself still be anonymous (named
                // by external_id before it ever signed up): it signs up
                // too, then receives the other's content.
                let target_was_anonymous = user_row(&mut tx, &c)
                    .await?
                    .is_some_and(|u| u.kind == "anonymous");
                let target = if target_was_anonymous {
                    Some(upgrade_in_place(&mut tx, &c).await?)
                } else {
                    None
                };
                let merged = merge(&mut tx, &proof.user, &c).await?;
                match target {
                    Some(target) => tagged(merged, json!({"target_upgrade": target})),
                    None => merged,
                }
            };
            (c, Some(summary))
        }
    };
    let (before, after) = sync_profile(&mut tx, &user_id, profile).await?;
    if let Some(summary) = &upgrade {
        tx.audit(AuditEvent {
            actor: actor_for(&user_id),
            action: "identity.upgrade",
            target_type: "user",
            target_id: user_id.clone(),
            before: None,
            after: Some(summary.clone()),
            request_id: request_id.clone(),
        })
        .await?;
    }
    if before != after || linked || upgrade.is_some() {
        // With what an upgrade or merge named: the user's own row (created,
        // or its kind and profile synced). Links are no decision's facts.
        tx.changed_only([revision::user(&user_id)]);
        tx.commit(AuditEvent {
            actor: actor_for(&user_id),
            action: "owner.synced",
            target_type: "user",
            target_id: user_id.clone(),
            before: Some(before),
            after: Some(json!({"user": after, "provider": provider, "subject": profile.subject, "linked": linked})),
            request_id,
        })
        .await?;
    }
    Ok(Some(Resolved {
        user_id,
        linked,
        upgrade,
    }))
}

/// A provider token names user `id` as `external_id` but the subject is
/// not linked yet: the user must exist and have no other subject here.
async fn adopt_external_id(tx: &mut Tx, provider: &str, id: &str) -> Result<(), LinkError> {
    let Some(user) = user_row(tx, id).await? else {
        return Err(LinkError::Conflict(format!(
            "the token's external_id {id:?} names no Warden user; clear external_id at the identity provider or import the user"
        )));
    };
    if user.merged_into.is_some() {
        return Err(LinkError::Conflict(format!(
            "the token's external_id {id:?} names an anonymous user whose content moved to another user; set external_id to that user"
        )));
    }
    let other = sqlx::query("SELECT subject FROM identities WHERE provider = $1 AND user_id = $2")
        .bind(provider)
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    if other.is_some() {
        return Err(LinkError::Conflict(format!(
            "the token's external_id {id:?} names a user already linked to another identity of this provider"
        )));
    }
    Ok(())
}

/// Workspaces `user` owns: by the owner field or an owner membership.
async fn owned_workspaces(tx: &mut Tx, user: &str) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM workspaces WHERE owner_id = $1 \
         UNION SELECT workspace_id AS id FROM workspace_members WHERE user_id = $1 AND role = 'owner' \
         ORDER BY id",
    )
    .bind(user)
    .fetch_all(tx.conn())
    .await?;
    rows.iter().map(|r| text(r, "id")).collect()
}

/// The anonymous user `user` becomes registered (the profile sync sets the
/// kind); its content is secured and its token dies.
async fn upgrade_in_place(tx: &mut Tx, user: &str) -> Result<Value, StoreError> {
    sqlx::query("UPDATE users SET kind = 'registered', updated_at = $1 WHERE id = $2")
        .bind(now_millis())
        .bind(user)
        .execute(tx.conn())
        .await?;
    let workspaces = owned_workspaces(tx, user).await?;
    let summary = secure(tx, &workspaces).await?;
    let revoked = revoke_tokens(tx, user).await?;
    // `secure` writes only inside these workspaces, on which every answer
    // about their projects and assets depends.
    tx.changed_only(changed_in(&[user], &workspaces));
    Ok(tagged(
        summary,
        json!({"path": "upgrade", "anonymous_user": user, "tokens_revoked": revoked}),
    ))
}

/// The anonymous user `from` signed in as an identity that already has user
/// `to`: `from`'s workspaces move to `to`, are secured, and `from` is kept,
/// marked merged, with its token dead. Nothing is deleted.
async fn merge(tx: &mut Tx, from: &str, to: &str) -> Result<Value, StoreError> {
    let workspaces = owned_workspaces(tx, from).await?;
    let now = now_millis();
    sqlx::query("UPDATE workspaces SET owner_id = $1, updated_at = $2 WHERE owner_id = $3")
        .bind(to)
        .bind(now)
        .bind(from)
        .execute(tx.conn())
        .await?;
    // Owner memberships pass to the registered user before the anonymous
    // user's rows are removed with the others below.
    sqlx::query(
        "INSERT INTO workspace_members (user_id, workspace_id, role, created_at) \
         SELECT $1, workspace_id, 'owner', $2 FROM workspace_members WHERE user_id = $3 AND role = 'owner' \
         ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = 'owner'",
    )
    .bind(to)
    .bind(now)
    .bind(from)
    .execute(tx.conn())
    .await?;
    sqlx::query("UPDATE users SET merged_into = $1, updated_at = $2 WHERE id = $3")
        .bind(to)
        .bind(now)
        .bind(from)
        .execute(tx.conn())
        .await?;
    let summary = secure(tx, &workspaces).await?;
    let revoked = revoke_tokens(tx, from).await?;
    // The owner changes and moved memberships are all in `workspaces`.
    tx.changed_only(changed_in(&[from, to], &workspaces));
    Ok(tagged(
        summary,
        json!({"path": "merge", "anonymous_user": from, "merged_into": to, "tokens_revoked": revoked}),
    ))
}

/// The change keys of `users` and `workspaces`.
fn changed_in(users: &[&str], workspaces: &[String]) -> Vec<String> {
    let users = users.iter().map(|u| revision::user(u));
    users
        .chain(workspaces.iter().map(|w| revision::workspace(w)))
        .collect()
}

/// `summary` with the fields of `tags` added.
fn tagged(mut summary: Value, tags: Value) -> Value {
    if let (Some(out), Value::Object(tags)) = (summary.as_object_mut(), tags) {
        out.extend(tags);
    }
    summary
}

async fn revoke_tokens(tx: &mut Tx, user: &str) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM anonymous_tokens WHERE user_id = $1")
        .bind(user)
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected())
}

/// Runs `statement` (which has `{ids}` where a VALUES list of ids goes) for
/// `ids` in chunks; returns the rows affected, or the rows returned when
/// `collect` names a column.
async fn per_chunk(
    tx: &mut Tx,
    statement: &str,
    ids: &[String],
    collect: &[&str],
) -> Result<(u64, Vec<Value>), StoreError> {
    let mut affected = 0;
    let mut rows_out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = statement.replace("{ids}", &values_list(1, chunk.len()));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        if collect.is_empty() {
            affected += query.execute(tx.conn()).await?.rows_affected();
        } else {
            for row in query.fetch_all(tx.conn()).await? {
                let mut object = serde_json::Map::new();
                for column in collect {
                    object.insert((*column).to_string(), json!(text(&row, column)?));
                }
                rows_out.push(Value::Object(object));
                affected += 1;
            }
        }
    }
    Ok((affected, rows_out))
}

fn listed(values: &[Value]) -> Value {
    json!(values.iter().take(AUDIT_IDS).collect::<Vec<_>>())
}

/// CONTRACT §4: every workspace in `workspaces`, its projects and assets
/// become private (`public_access` none), and every membership and grant
/// anonymous users hold on them is removed. Returns the audit summary.
async fn secure(tx: &mut Tx, workspaces: &[String]) -> Result<Value, StoreError> {
    let now = now_millis();
    let (_, projects) = per_chunk(
        tx,
        "SELECT id FROM projects WHERE workspace_id IN (VALUES {ids}) ORDER BY id",
        workspaces,
        &["id"],
    )
    .await?;
    let project_ids: Vec<String> = projects
        .iter()
        .filter_map(|p| p["id"].as_str().map(String::from))
        .collect();
    let (_, assets) = per_chunk(
        tx,
        "SELECT id FROM assets WHERE project_id IN (VALUES {ids}) ORDER BY id",
        &project_ids,
        &["id"],
    )
    .await?;
    let asset_ids: Vec<String> = assets
        .iter()
        .filter_map(|a| a["id"].as_str().map(String::from))
        .collect();
    let anonymous = "user_id IN (SELECT id FROM users WHERE kind = 'anonymous')";
    let (_, removed_workspace_members) = per_chunk(
        tx,
        &format!("SELECT user_id, workspace_id FROM workspace_members WHERE workspace_id IN (VALUES {{ids}}) AND {anonymous}"),
        workspaces,
        &["user_id", "workspace_id"],
    )
    .await?;
    let (_, removed_project_members) = per_chunk(
        tx,
        &format!("SELECT user_id, project_id FROM project_members WHERE project_id IN (VALUES {{ids}}) AND {anonymous}"),
        &project_ids,
        &["user_id", "project_id"],
    )
    .await?;
    let (_, removed_grants) = per_chunk(
        tx,
        &format!("SELECT user_id, asset_id FROM asset_grants WHERE asset_id IN (VALUES {{ids}}) AND {anonymous}"),
        &asset_ids,
        &["user_id", "asset_id"],
    )
    .await?;
    for (statement, ids) in [
        (format!("DELETE FROM workspace_members WHERE workspace_id IN (VALUES {{ids}}) AND {anonymous}"), workspaces),
        (format!("DELETE FROM project_members WHERE project_id IN (VALUES {{ids}}) AND {anonymous}"), &project_ids[..]),
        (format!("DELETE FROM asset_grants WHERE asset_id IN (VALUES {{ids}}) AND {anonymous}"), &asset_ids[..]),
    ] {
        per_chunk(tx, &statement, ids, &[]).await?;
    }
    let private = format!("visibility = 'private', updated_at = {now}");
    let (made_private_workspaces, _) = per_chunk(
        tx,
        &format!("UPDATE workspaces SET {private} WHERE id IN (VALUES {{ids}}) AND visibility <> 'private'"),
        workspaces,
        &[],
    )
    .await?;
    let (made_private_projects, _) = per_chunk(
        tx,
        &format!("UPDATE projects SET {private} WHERE id IN (VALUES {{ids}}) AND visibility <> 'private'"),
        &project_ids,
        &[],
    )
    .await?;
    let (made_private_assets, _) = per_chunk(
        tx,
        &format!(
            "UPDATE assets SET {private}, public_access = 'none' WHERE id IN (VALUES {{ids}}) \
                  AND (visibility <> 'private' OR public_access <> 'none')"
        ),
        &asset_ids,
        &[],
    )
    .await?;
    Ok(json!({
        "workspaces": workspaces.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
        "projects": project_ids.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
        "assets": asset_ids.iter().take(AUDIT_IDS).collect::<Vec<_>>(),
        "counts": {
            "workspaces": workspaces.len(),
            "projects": project_ids.len(),
            "assets": asset_ids.len(),
            "made_private": {
                "workspaces": made_private_workspaces,
                "projects": made_private_projects,
                "assets": made_private_assets,
            },
            "workspace_memberships_removed": removed_workspace_members.len(),
            "project_memberships_removed": removed_project_members.len(),
            "grants_removed": removed_grants.len(),
        },
        "workspace_memberships_removed": listed(&removed_workspace_members),
        "project_memberships_removed": listed(&removed_project_members),
        "grants_removed": listed(&removed_grants),
    }))
}
