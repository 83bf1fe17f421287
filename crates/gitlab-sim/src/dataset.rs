//! The whole state of the simulated instance, with the lookups and the permission model.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SimError};
use crate::model::*;

/// Next free id per kind; ids are global across projects like GitLab's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Ids {
    pub user: u64,
    pub group: u64,
    pub project: u64,
    pub merge_request: u64,
    pub issue: u64,
    pub note: u64,
    pub pipeline: u64,
    pub job: u64,
    pub label: u64,
    pub token: u64,
    pub hook: u64,
    #[serde(default)]
    pub release: u64,
    #[serde(default)]
    pub deployment: u64,
}

impl Ids {
    pub fn next(counter: &mut u64) -> u64 {
        *counter += 1;
        *counter
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    pub seed: u64,
    pub instance: Instance,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub projects: Vec<Project>,
    pub members: Vec<Member>,
    pub tokens: Vec<Token>,
    pub hooks: Vec<Hook>,
    pub ids: Ids,
}

impl Dataset {
    pub fn load(path: impl AsRef<Path>) -> Result<Dataset> {
        let bytes = std::fs::read(path)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        std::fs::write(path, self.to_json()?)?;
        Ok(())
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn group(&self, id: u64) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn project(&self, id: u64) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    pub fn project_mut(&mut self, id: u64) -> Option<&mut Project> {
        self.projects.iter_mut().find(|p| p.id == id)
    }

    /// A group by numeric id or full path, as `:id` in the API accepts both.
    pub fn group_by_ref(&self, key: &str) -> Option<&Group> {
        match key.parse::<u64>() {
            Ok(id) => self.group(id),
            Err(_) => self.groups.iter().find(|g| g.full_path.eq_ignore_ascii_case(key)),
        }
    }

    pub fn project_by_ref(&self, key: &str) -> Option<&Project> {
        match key.parse::<u64>() {
            Ok(id) => self.project(id),
            Err(_) => self.projects.iter().find(|p| p.path_with_namespace.eq_ignore_ascii_case(key)),
        }
    }

    /// The group and its ancestors, nearest first.
    pub fn ancestry(&self, group_id: u64) -> Vec<&Group> {
        let mut out = Vec::new();
        let mut next = self.group(group_id);
        while let Some(g) = next {
            out.push(g);
            next = g.parent_id.and_then(|id| self.group(id));
        }
        out
    }

    pub fn root_of(&self, group_id: u64) -> Option<&Group> {
        self.ancestry(group_id).pop()
    }

    /// The group and all groups below it.
    pub fn descendants(&self, group_id: u64) -> Vec<u64> {
        let mut out = vec![group_id];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            out.extend(self.groups.iter().filter(|g| g.parent_id == Some(parent)).map(|g| g.id));
            i += 1;
        }
        out
    }

    /// Every project of the group and its subgroups, in id order: what GitLab lists for
    /// `GET /groups/:id/projects?include_subgroups=true`.
    pub fn projects_under(&self, group_id: u64) -> Vec<u64> {
        let groups = self.descendants(group_id);
        let mut ids: Vec<u64> = self.projects.iter().filter(|p| groups.contains(&p.namespace_id)).map(|p| p.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The effective access level: the highest of direct and inherited memberships.
    pub fn group_access(&self, user_id: u64, group_id: u64) -> Option<u8> {
        let chain: Vec<u64> = self.ancestry(group_id).iter().map(|g| g.id).collect();
        self.members
            .iter()
            .filter(|m| m.user_id == user_id)
            .filter(|m| matches!(m.source, MemberSource::Group(g) if chain.contains(&g)))
            .map(|m| m.access_level)
            .max()
    }

    pub fn project_access(&self, user_id: u64, project: &Project) -> Option<u8> {
        let direct = self
            .members
            .iter()
            .filter(|m| m.user_id == user_id && m.source == MemberSource::Project(project.id))
            .map(|m| m.access_level)
            .max();
        direct.max(self.group_access(user_id, project.namespace_id))
    }

    /// Authenticated users see internal and public resources as well as their own.
    pub fn can_see_project(&self, user_id: u64, project: &Project) -> bool {
        project.visibility != Visibility::Private || self.project_access(user_id, project).is_some()
    }

    pub fn can_see_group(&self, user_id: u64, group: &Group) -> bool {
        if group.visibility != Visibility::Private || self.group_access(user_id, group.id).is_some() {
            return true;
        }
        // Members of a project or subgroup below can see the group it lives in.
        let below = self.descendants(group.id);
        self.projects.iter().filter(|p| below.contains(&p.namespace_id)).any(|p| self.project_access(user_id, p).is_some())
            || below.iter().any(|g| self.group_access(user_id, *g).is_some())
    }

    pub fn visible_project(&self, user_id: u64, key: &str) -> Result<&Project> {
        self.project_by_ref(key).filter(|p| self.can_see_project(user_id, p)).ok_or(SimError::NotFound("Project"))
    }

    pub fn visible_group(&self, user_id: u64, key: &str) -> Result<&Group> {
        self.group_by_ref(key).filter(|g| self.can_see_group(user_id, g)).ok_or(SimError::NotFound("Group"))
    }

    pub fn token_by_value(&self, value: &str) -> Option<&Token> {
        self.tokens.iter().find(|t| t.value == value)
    }

    /// Whether group hooks can fire for projects and events under this group.
    pub fn group_hooks_licensed(&self, group_id: u64) -> bool {
        if self.instance.self_managed {
            return self.instance.edition == Edition::Ee && self.instance.license.is_some_and(Plan::has_group_webhooks);
        }
        self.instance.edition == Edition::Ee && self.root_of(group_id).is_some_and(|root| root.plan.has_group_webhooks())
    }

    /// The users holding Owner on the group or above, as `project_create` hooks list them.
    pub fn owners_of_group(&self, group_id: u64) -> Vec<&User> {
        let mut ids: Vec<u64> = self
            .members
            .iter()
            .filter(|m| m.access_level >= OWNER)
            .filter(|m| matches!(m.source, MemberSource::Group(g) if g == group_id))
            .map(|m| m.user_id)
            .collect();
        ids.dedup();
        ids.iter().filter_map(|id| self.user(*id)).collect()
    }
}
