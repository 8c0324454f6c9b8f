//! The seeds' dotted permission model (page 15): `users.read`,
//! `project.members.write`, wildcards `*` and `tasks.*`.

/// Global permissions (granted by a user's global role).
pub mod global {
    pub const USERS_READ: &str = "users.read";
    pub const USERS_WRITE: &str = "users.write";
    pub const USERS_DELETE: &str = "users.delete";
    pub const GLOBAL_ROLES_READ: &str = "global_roles.read";
    pub const GLOBAL_ROLES_WRITE: &str = "global_roles.write";
    pub const GLOBAL_ROLES_ASSIGN: &str = "global_roles.assign";
    pub const PROJECTS_CREATE: &str = "projects.create";
    pub const PROJECTS_READ: &str = "projects.read";
    pub const PROJECTS_WRITE: &str = "projects.write";
    pub const PROJECTS_DELETE: &str = "projects.delete";
    /// The whole log as an audit trail (`GET /admin/audit`); only
    /// `SUPER_ADMIN` (`*`) has it unless granted.
    pub const AUDIT_READ: &str = "audit.read";
}

/// Project-scoped permissions (granted by a member's project role).
pub mod project {
    pub const MEMBERS_READ: &str = "project.members.read";
    pub const MEMBERS_WRITE: &str = "project.members.write";
    pub const ROLES_READ: &str = "project.roles.read";
    pub const ROLES_WRITE: &str = "project.roles.write";
    pub const TASKS_READ: &str = "tasks.read";
    pub const TASKS_WRITE: &str = "tasks.write";
    pub const SPRINTS_READ: &str = "sprints.read";
    pub const SPRINTS_WRITE: &str = "sprints.write";
    pub const DOCS_READ: &str = "docs.read";
    pub const DOCS_WRITE: &str = "docs.write";
    pub const AGENTS_READ: &str = "agents.read";
    pub const AGENTS_WRITE: &str = "agents.write";
    /// A project's audit trail: the Admin role has it through `projects.*`.
    pub const AUDIT_READ: &str = "projects.audit.read";
}

/// True when one granted pattern satisfies `required`: `*` grants
/// everything, `X.*` grants every permission that starts with `X.`.
pub fn pattern_grants(pattern: &str, required: &str) -> bool {
    if pattern == "*" || pattern == required {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => required
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => false,
    }
}

pub fn grants<S: AsRef<str>>(granted: &[S], required: &str) -> bool {
    granted.iter().any(|p| pattern_grants(p.as_ref(), required))
}

/// A permission string is lowercase dotted words, optionally ending in `*`.
pub fn is_valid(permission: &str) -> bool {
    if permission == "*" {
        return true;
    }
    let body = permission.strip_suffix(".*").unwrap_or(permission);
    !body.is_empty()
        && body.split('.').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// The one shared copy of a permission list. Every project seeds the same
/// three roles, so a process holding every project (the directory) keeps
/// three lists instead of three per project; access checks clone the `Arc`
/// instead of the strings. Lists nobody holds any more are dropped when
/// the set has grown, so custom roles cannot make it grow without bound.
pub fn intern(permissions: &[String]) -> std::sync::Arc<[String]> {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex, OnceLock};

    /// Past this many lists, unheld ones are pruned before adding one.
    const PRUNE_ABOVE: usize = 1_024;
    static LISTS: OnceLock<Mutex<HashSet<Arc<[String]>>>> = OnceLock::new();

    let mut lists = LISTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(list) = lists.get(permissions) {
        return Arc::clone(list);
    }
    if lists.len() >= PRUNE_ABOVE {
        lists.retain(|list| Arc::strong_count(list) > 1);
    }
    let list: Arc<[String]> = Arc::from(permissions);
    lists.insert(Arc::clone(&list));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(pattern_grants("*", "users.read"));
        assert!(pattern_grants("tasks.*", "tasks.write"));
        assert!(!pattern_grants("tasks.*", "tasksx.write"));
        assert!(!pattern_grants("project.*", "projects.read"));
        assert!(pattern_grants("project.*", "project.members.read"));
        assert!(pattern_grants("project.members.*", "project.members.write"));
        assert!(!pattern_grants("users.read", "users.write"));
        assert!(grants(&["users.read", "projects.*"], "projects.create"));
        assert!(!grants::<&str>(&[], "projects.create"));
    }

    #[test]
    fn validity() {
        assert!(is_valid("*"));
        assert!(is_valid("tasks.*"));
        assert!(is_valid("project.members.read"));
        assert!(!is_valid(""));
        assert!(!is_valid("Tasks.read"));
        assert!(!is_valid("tasks..read"));
        assert!(!is_valid(".*"));
    }

    #[test]
    fn equal_permission_lists_share_one_copy() {
        let list = vec!["tasks.read".to_owned(), "docs.*".to_owned()];
        let a = super::intern(&list);
        let b = super::intern(&list.clone());
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, list.as_slice());
        let other = super::intern(&["tasks.read".to_owned()]);
        assert!(!std::sync::Arc::ptr_eq(&a, &other));
    }
}
