//! Domain values, parsed once at the edge (HTTP, import, CLI) so nothing
//! downstream re-validates them: ids, user kinds, visibility, roles, grants,
//! and the world document that import, export, entity slices and the policy
//! test suites all share (CONTRACT §5).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest id Warden accepts, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// An id of a user, workspace, project or asset: non-empty text of at most
/// [`MAX_ID_LEN`] bytes without control characters.
///
/// ```
/// use warden::domain::Id;
/// assert!(Id::parse("asset-7").is_ok());
/// assert!(Id::parse("").is_err());
/// ```
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct Id(String);

impl Id {
    /// Parses an id, saying what is wrong with a bad one.
    pub fn parse(raw: impl Into<String>) -> Result<Self, String> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err("an id must not be empty".into());
        }
        if raw.len() > MAX_ID_LEN {
            return Err(format!(
                "an id must be at most {MAX_ID_LEN} bytes, got {}",
                raw.len()
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err("an id must not contain control characters".into());
        }
        Ok(Self(raw))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(raw)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares a closed set of lower-case words stored as text in the database.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(
                #[doc = concat!("`", $word, "`")]
                #[serde(rename = $word)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and serialized word.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        other,
                        [$($word),+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(
    /// How a user came to exist: minted by Warden, or linked to an identity provider.
    UserKind { Anonymous => "anonymous", Registered => "registered" }
);
word_enum!(
    /// Whether a workspace, project or asset is reachable by link.
    Visibility { Private => "private", Public => "public" }
);
word_enum!(
    /// What a public asset lets anyone with its id do.
    PublicAccess { None => "none", Read => "read", Write => "write" }
);
word_enum!(
    /// Where a membership applies.
    Scope { Workspace => "workspace", Project => "project" }
);
word_enum!(
    /// A member's role. Projects accept editor and viewer only.
    Role { Owner => "owner", Editor => "editor", Viewer => "viewer" }
);
word_enum!(
    /// What a per-user grant on one asset allows.
    Permission { Read => "read", Write => "write" }
);

#[allow(clippy::derivable_impls, reason = "declared by word_enum!")]
impl Default for Visibility {
    fn default() -> Self {
        Visibility::Private
    }
}

#[allow(clippy::derivable_impls, reason = "declared by word_enum!")]
impl Default for PublicAccess {
    fn default() -> Self {
        PublicAccess::None
    }
}

/// A user as stored (profile fields beyond name and email live with identity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// Warden's canonical user id.
    pub id: Id,
    /// Anonymous or registered.
    pub kind: UserKind,
    /// Contact email, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The registered user this anonymous user's content moved to when it
    /// signed in as an identity that already had a user (CONTRACT §4). Its
    /// anonymous tokens are dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Id>,
}

/// A workspace and its one owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceRecord {
    /// Workspace id.
    pub id: Id,
    /// The owning user.
    pub owner: Id,
    /// Private unless said otherwise.
    #[serde(default)]
    pub visibility: Visibility,
}

/// A project inside one workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRecord {
    /// Project id.
    pub id: Id,
    /// The workspace it belongs to.
    pub workspace: Id,
    /// Private unless said otherwise.
    #[serde(default)]
    pub visibility: Visibility,
}

/// An asset inside one project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetRecord {
    /// Asset id (often the app's own id).
    pub id: Id,
    /// The project it belongs to.
    pub project: Id,
    /// Private unless said otherwise.
    #[serde(default)]
    pub visibility: Visibility,
    /// `none` unless said otherwise: public write is never on by default.
    #[serde(default)]
    pub public_access: PublicAccess,
}

/// A user's role in one workspace or project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembershipRecord {
    /// The member.
    pub user: Id,
    /// Workspace or project.
    pub scope: Scope,
    /// The workspace's or project's id.
    pub id: Id,
    /// The role held there.
    pub role: Role,
}

impl MembershipRecord {
    /// Says why this membership cannot exist, if it cannot.
    pub fn problem(&self) -> Option<String> {
        (self.scope == Scope::Project && self.role == Role::Owner).then(|| {
            "projects have no owner role (ownership comes from the workspace); use editor or viewer"
                .to_string()
        })
    }
}

/// A per-user grant on one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRecord {
    /// The grantee (anonymous users included).
    pub user: Id,
    /// The asset.
    pub asset: Id,
    /// Read or write.
    pub permission: Permission,
}

/// A set of facts: the import/export document, an entity slice loaded for a
/// request, or the world of a policy test suite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// Users.
    #[serde(default)]
    pub users: Vec<UserRecord>,
    /// Workspaces.
    #[serde(default)]
    pub workspaces: Vec<WorkspaceRecord>,
    /// Projects.
    #[serde(default)]
    pub projects: Vec<ProjectRecord>,
    /// Assets.
    #[serde(default)]
    pub assets: Vec<AssetRecord>,
    /// Workspace and project memberships.
    #[serde(default)]
    pub memberships: Vec<MembershipRecord>,
    /// Per-user asset grants.
    #[serde(default)]
    pub grants: Vec<GrantRecord>,
}

impl World {
    /// Number of records of every kind, for summaries and audit events.
    pub fn counts(&self) -> serde_json::Value {
        serde_json::json!({
            "users": self.users.len(),
            "workspaces": self.workspaces.len(),
            "projects": self.projects.len(),
            "assets": self.assets.len(),
            "memberships": self.memberships.len(),
            "grants": self.grants.len(),
        })
    }

    /// Number of records in all.
    pub fn records(&self) -> usize {
        self.users.len()
            + self.workspaces.len()
            + self.projects.len()
            + self.assets.len()
            + self.memberships.len()
            + self.grants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_empty_bounded_and_printable() {
        assert!(Id::parse("asset/7 ünïcode").is_ok());
        assert!(Id::parse("").is_err());
        assert!(Id::parse("a\nb").is_err());
        assert!(Id::parse("x".repeat(MAX_ID_LEN)).is_ok());
        assert!(Id::parse("x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn words_round_trip_and_unknown_words_name_the_choices() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
        }
        let err = "admin".parse::<Role>().unwrap_err();
        assert!(err.contains("owner, editor, viewer"), "{err}");
        assert_eq!(Visibility::default(), Visibility::Private);
        assert_eq!(PublicAccess::default(), PublicAccess::None);
    }

    #[test]
    fn projects_have_no_owner_role() {
        let m = |scope, role| MembershipRecord {
            user: Id::parse("u").unwrap(),
            scope,
            id: Id::parse("x").unwrap(),
            role,
        };
        assert!(m(Scope::Project, Role::Owner).problem().is_some());
        assert!(m(Scope::Workspace, Role::Owner).problem().is_none());
        assert!(m(Scope::Project, Role::Editor).problem().is_none());
    }
}
