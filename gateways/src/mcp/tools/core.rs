//! Handlers of the REST-backed core tools (everything but the path-based
//! doc tools). Each one maps page 18's camelCase inputs to the REST body of
//! the seeds and formats the result the way Paca's MCP server does.

use serde_json::{Map, Value, json};

use super::args::*;
use super::{Ctx, ToolError, ToolResult, seg};
use crate::mcp::client::items;
use crate::mcp::format as f;
use crate::mcp::markdown::markdown_to_blocks;

fn pp(project_id: &str) -> String {
    format!("/projects/{}", seg(project_id))
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        map.insert(key.into(), v.into());
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

// ------------------------------------------------------------------ projects

pub async fn list_projects(ctx: &Ctx) -> ToolResult {
    let mut all = Vec::new();
    let mut page = 1;
    // Offset pages of 100 until a short page (bounded).
    loop {
        let data = ctx
            .api
            .get_q(
                "/projects",
                &[("page", page.to_string()), ("page_size", "100".into())],
            )
            .await?;
        let batch = items(data, &["projects"]);
        let n = batch.len();
        all.extend(batch);
        if n < 100 || page >= 50 {
            break;
        }
        page += 1;
    }
    Ok(format!("Projects:\n\n{}", f::list(&all, f::project)))
}

pub async fn get_project(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    Ok(f::project(&ctx.api.get(&pp(&a.project_id)).await?))
}

pub async fn create_project(ctx: &Ctx, a: CreateProjectArgs) -> ToolResult {
    let mut body = Map::new();
    body.insert("name".into(), json!(a.name));
    put(&mut body, "description", a.description);
    let p = ctx.api.post("/projects", &Value::Object(body)).await?;
    Ok(format!(
        "Project created successfully:\n\n{}",
        f::project(&p)
    ))
}

pub async fn update_project(ctx: &Ctx, a: UpdateProjectArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "name", a.name);
    put(&mut body, "description", a.description);
    let p = ctx
        .api
        .patch(&pp(&a.project_id), &Value::Object(body))
        .await?;
    Ok(format!(
        "Project updated successfully:\n\n{}",
        f::project(&p)
    ))
}

pub async fn delete_project(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    ctx.api.delete(&pp(&a.project_id)).await?;
    Ok(format!("Project {} deleted successfully", a.project_id))
}

// --------------------------------------------------------------------- tasks

pub async fn list_tasks(ctx: &Ctx, a: ListTasksArgs) -> ToolResult {
    let mut query = Vec::new();
    if let Some(size) = a.page_size {
        if !(1..=200).contains(&size) {
            return Err(ToolError::Args("pageSize must be between 1 and 200".into()));
        }
        query.push(("page_size", size.to_string()));
    }
    if let Some(cursor) = a.cursor.filter(|c| !c.is_empty()) {
        query.push(("cursor", cursor));
    }
    let data = ctx
        .api
        .get_q(&format!("{}/tasks", pp(&a.project_id)), &query)
        .await?;
    let next = data
        .get("next_cursor")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let tasks = items(data, &["tasks"]);
    let note = next
        .as_ref()
        .map(|c| {
            format!(
                "\n\n_There are more tasks. Call list_tasks again with cursor=\"{c}\" to fetch the next page._"
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "Tasks ({} returned{}):\n\n{}{}",
        tasks.len(),
        if next.is_some() {
            ", more available"
        } else {
            ""
        },
        f::list(&tasks, f::task),
        note
    ))
}

async fn task_detail(ctx: &Ctx, project_id: &str, task: Value) -> ToolResult {
    let base = pp(project_id);
    let task_id = task
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let tp = format!("{base}/tasks/{}", seg(&task_id));
    let api = &ctx.api;
    // Everything the web app's task panel shows; a part that fails (no
    // permission, endpoint not available) is left out, not fatal.
    let paths = [
        format!("{base}/task-statuses"),
        format!("{base}/task-types"),
        format!("{base}/sprints"),
        format!("{base}/members"),
        format!("{base}/tasks"),
        format!("{tp}/attachments"),
        format!("{tp}/activities"),
        format!("{base}/custom-fields"),
    ];
    let sub_query = [
        ("parent_task_id", task_id.clone()),
        ("page_size", "200".to_owned()),
    ];
    let (project, statuses, types, sprints, members, subtasks, attachments, activities, fields) = tokio::join!(
        api.get(&base),
        api.get(&paths[0]),
        api.get(&paths[1]),
        api.get(&paths[2]),
        api.get(&paths[3]),
        api.get_q(&paths[4], &sub_query),
        api.get(&paths[5]),
        api.get(&paths[6]),
        api.get(&paths[7]),
    );
    let list = |r: Result<Value, _>| r.map(|v| items(v, &[])).unwrap_or_default();
    let parent = match task.get("parent_task_id").and_then(Value::as_str) {
        Some(pid) if !pid.is_empty() => api.get(&format!("{base}/tasks/{}", seg(pid))).await.ok(),
        _ => None,
    };
    let project = project.ok();
    let (statuses, types, sprints, members) =
        (list(statuses), list(types), list(sprints), list(members));
    let (subtasks, attachments, activities, fields) = (
        list(subtasks),
        list(attachments),
        list(activities),
        list(fields),
    );
    Ok(f::task_detail(&f::TaskDetail {
        task: &task,
        project: project.as_ref(),
        statuses: &statuses,
        types: &types,
        sprints: &sprints,
        members: &members,
        parent: parent.as_ref(),
        subtasks: &subtasks,
        attachments: &attachments,
        activities: &activities,
        custom_fields: &fields,
    }))
}

pub async fn get_task(ctx: &Ctx, a: TaskArgs) -> ToolResult {
    let task = ctx
        .api
        .get(&format!("{}/tasks/{}", pp(&a.project_id), seg(&a.task_id)))
        .await?;
    task_detail(ctx, &a.project_id, task).await
}

/// `42`, `"42"`, `"#42"` or `"PAC-42"` (the prefix must be the project's).
async fn resolve_number(ctx: &Ctx, project_id: &str, n: TaskNumber) -> Result<i64, ToolError> {
    let text = match n {
        TaskNumber::Number(n) => return Ok(n),
        TaskNumber::Reference(s) => s.trim().to_owned(),
    };
    let bad = || {
        ToolError::Args(format!(
            "taskNumber {text:?} is not a task number or a reference like \"#42\" or \"PAC-42\""
        ))
    };
    let digits = text.trim_start_matches('#');
    if let Ok(n) = digits.parse::<i64>() {
        return Ok(n);
    }
    let (prefix, number) = text.rsplit_once('-').ok_or_else(bad)?;
    let number: i64 = number.trim().parse().map_err(|_| bad())?;
    let project = ctx.api.get(&pp(project_id)).await?;
    let expected = f::s(&project, "task_id_prefix", "");
    if !prefix.trim().eq_ignore_ascii_case(&expected) {
        return Err(ToolError::Text(format!(
            "Error: {text} does not belong to this project (its task prefix is {expected}); use list_projects to find the project whose task_id_prefix is {}",
            prefix.trim().to_uppercase()
        )));
    }
    Ok(number)
}

pub async fn get_task_by_number(ctx: &Ctx, a: TaskNumberArgs) -> ToolResult {
    let number = resolve_number(ctx, &a.project_id, a.task_number).await?;
    let task = ctx
        .api
        .get(&format!("{}/tasks/by-number/{number}", pp(&a.project_id)))
        .await?;
    task_detail(ctx, &a.project_id, task).await
}

fn description_blocks(md: &str) -> Value {
    let blocks = markdown_to_blocks(md);
    if blocks.is_empty() {
        Value::Null
    } else {
        Value::Array(blocks)
    }
}

pub async fn create_task(ctx: &Ctx, a: CreateTaskArgs) -> ToolResult {
    let mut body = Map::new();
    body.insert("title".into(), json!(a.title));
    if let Some(d) = a.description.as_deref() {
        body.insert("description".into(), description_blocks(d));
    }
    put(&mut body, "status_id", a.status_id);
    put(&mut body, "task_type_id", a.type_id);
    put(&mut body, "sprint_id", a.sprint_id);
    if let Some(assignee) = a.assignee_id {
        body.insert(
            "assignee_ids".into(),
            if assignee.is_empty() {
                json!([])
            } else {
                json!([assignee])
            },
        );
    }
    put(&mut body, "parent_task_id", a.parent_task_id);
    put(&mut body, "importance", a.importance);
    put(&mut body, "story_points", a.story_points);
    put(&mut body, "tags", a.tags);
    put(&mut body, "start_date", a.start_date);
    put(&mut body, "due_date", a.due_date);
    let task = ctx
        .api
        .post(
            &format!("{}/tasks", pp(&a.project_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!("Task created successfully:\n\n{}", f::task(&task)))
}

pub async fn update_task(ctx: &Ctx, a: UpdateTaskArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "title", a.title);
    if let Some(d) = a.description.as_deref() {
        body.insert("description".into(), description_blocks(d));
    }
    put(&mut body, "status_id", a.status_id);
    put(&mut body, "task_type_id", a.type_id);
    put(&mut body, "sprint_id", a.sprint_id);
    if let Some(assignee) = a.assignee_id {
        body.insert(
            "assignee_ids".into(),
            if assignee.is_empty() {
                json!([])
            } else {
                json!([assignee])
            },
        );
    }
    if let Some(parent) = a.parent_task_id {
        body.insert("parent_task_id".into(), json!(parent));
    }
    put(&mut body, "importance", a.importance);
    if let Some(points) = a.story_points {
        body.insert("story_points".into(), json!(points));
    }
    put(&mut body, "tags", a.tags);
    put(&mut body, "start_date", a.start_date);
    put(&mut body, "due_date", a.due_date);
    let task = ctx
        .api
        .patch(
            &format!("{}/tasks/{}", pp(&a.project_id), seg(&a.task_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!("Task updated successfully:\n\n{}", f::task(&task)))
}

pub async fn delete_task(ctx: &Ctx, a: TaskArgs) -> ToolResult {
    ctx.api
        .delete(&format!("{}/tasks/{}", pp(&a.project_id), seg(&a.task_id)))
        .await?;
    Ok(format!("Task {} deleted successfully", a.task_id))
}

// ------------------------------------------------------------------- sprints

fn sp(a: &SprintArgs) -> String {
    format!("{}/sprints/{}", pp(&a.project_id), seg(&a.sprint_id))
}

pub async fn list_sprints(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!("{}/sprints", pp(&a.project_id)))
        .await?;
    Ok(format!(
        "Sprints:\n\n{}",
        f::list(&items(data, &["sprints"]), f::sprint)
    ))
}

pub async fn get_sprint(ctx: &Ctx, a: SprintArgs) -> ToolResult {
    Ok(f::sprint(&ctx.api.get(&sp(&a)).await?))
}

pub async fn create_sprint(ctx: &Ctx, a: CreateSprintArgs) -> ToolResult {
    let body = json!({"name": a.name, "start_date": a.start_date, "end_date": a.end_date});
    let s = ctx
        .api
        .post(&format!("{}/sprints", pp(&a.project_id)), &body)
        .await?;
    Ok(format!("Sprint created successfully:\n\n{}", f::sprint(&s)))
}

pub async fn update_sprint(ctx: &Ctx, a: UpdateSprintArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "name", a.name);
    put(&mut body, "start_date", a.start_date);
    put(&mut body, "end_date", a.end_date);
    let path = format!("{}/sprints/{}", pp(&a.project_id), seg(&a.sprint_id));
    let s = ctx.api.patch(&path, &Value::Object(body)).await?;
    Ok(format!("Sprint updated successfully:\n\n{}", f::sprint(&s)))
}

pub async fn delete_sprint(ctx: &Ctx, a: SprintArgs) -> ToolResult {
    ctx.api.delete(&sp(&a)).await?;
    Ok(format!("Sprint {} deleted successfully", a.sprint_id))
}

pub async fn complete_sprint(ctx: &Ctx, a: SprintArgs) -> ToolResult {
    let s = ctx
        .api
        .post(&format!("{}/complete", sp(&a)), &json!({}))
        .await?;
    Ok(format!(
        "Sprint completed successfully:\n\n{}",
        f::sprint(&s)
    ))
}

// ------------------------------------------------------------------- members

pub async fn list_members(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!("{}/members", pp(&a.project_id)))
        .await?;
    Ok(format!(
        "Project Members:\n\n{}",
        f::list(&items(data, &["members"]), f::member)
    ))
}

pub async fn add_member(ctx: &Ctx, a: MemberRoleArgs) -> ToolResult {
    // `project_role_id` is the seeds' field; `role_ids` lets an IAM-era
    // server read the same call.
    let body = json!({"user_id": a.user_id, "project_role_id": a.role_id, "role_ids": [a.role_id]});
    let m = ctx
        .api
        .post(&format!("{}/members", pp(&a.project_id)), &body)
        .await?;
    Ok(format!("Member added successfully:\n\n{}", f::member(&m)))
}

pub async fn my_permissions(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!("{}/members/me/permissions", pp(&a.project_id)))
        .await?;
    let perms = data.get("permissions").cloned().unwrap_or(data);
    Ok(format!("My Permissions:\n\n{}", pretty(&perms)))
}

pub async fn update_member_role(ctx: &Ctx, a: MemberRoleArgs) -> ToolResult {
    let body = json!({"project_role_id": a.role_id});
    let m = ctx
        .api
        .patch(
            &format!("{}/members/{}", pp(&a.project_id), seg(&a.user_id)),
            &body,
        )
        .await?;
    Ok(format!(
        "Member role updated successfully:\n\n{}",
        f::member(&m)
    ))
}

pub async fn remove_member(ctx: &Ctx, a: MemberArgs) -> ToolResult {
    ctx.api
        .delete(&format!(
            "{}/members/{}",
            pp(&a.project_id),
            seg(&a.user_id)
        ))
        .await?;
    Ok(format!("Member {} removed successfully", a.user_id))
}

// --------------------------------------------------------------------- roles

/// Role permissions: an array of keys, or a `{key: true}` map turned into
/// the array.
fn permission_list(v: Value) -> Result<Value, ToolError> {
    match v {
        Value::Array(_) => Ok(v),
        Value::Object(map) => Ok(Value::Array(
            map.into_iter()
                .filter(|(_, g)| g.as_bool() == Some(true))
                .map(|(k, _)| Value::String(k))
                .collect(),
        )),
        Value::String(s) => Ok(json!(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
        )),
        _ => Err(ToolError::Args(
            "permissions must be an array of permission keys".into(),
        )),
    }
}

pub async fn list_roles(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    let data = ctx.api.get(&format!("{}/roles", pp(&a.project_id))).await?;
    Ok(format!(
        "Project Roles:\n\n{}",
        f::list(&items(data, &["roles"]), f::role)
    ))
}

pub async fn create_role(ctx: &Ctx, a: CreateRoleArgs) -> ToolResult {
    let mut body = Map::new();
    body.insert("role_name".into(), json!(a.name));
    body.insert("permissions".into(), permission_list(a.permissions)?);
    put(&mut body, "description", a.description);
    let r = ctx
        .api
        .post(
            &format!("{}/roles", pp(&a.project_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!("Role created successfully:\n\n{}", f::role(&r)))
}

pub async fn update_role(ctx: &Ctx, a: UpdateRoleArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "role_name", a.name);
    put(&mut body, "description", a.description);
    if let Some(p) = a.permissions {
        body.insert("permissions".into(), permission_list(p)?);
    }
    let r = ctx
        .api
        .patch(
            &format!("{}/roles/{}", pp(&a.project_id), seg(&a.role_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!("Role updated successfully:\n\n{}", f::role(&r)))
}

pub async fn delete_role(ctx: &Ctx, a: RoleArgs) -> ToolResult {
    ctx.api
        .delete(&format!("{}/roles/{}", pp(&a.project_id), seg(&a.role_id)))
        .await?;
    Ok(format!("Role {} deleted successfully", a.role_id))
}

// ------------------------------------------------------- task types/statuses

pub async fn list_types(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!("{}/task-types", pp(&a.project_id)))
        .await?;
    Ok(format!(
        "Task Types:\n\n{}",
        f::list(&items(data, &[]), f::task_type)
    ))
}

pub async fn create_type(ctx: &Ctx, a: CreateTaskTypeArgs) -> ToolResult {
    let mut body = Map::new();
    body.insert("name".into(), json!(a.name));
    put(&mut body, "icon", a.icon);
    put(&mut body, "color", a.color);
    put(&mut body, "description", a.description);
    let t = ctx
        .api
        .post(
            &format!("{}/task-types", pp(&a.project_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!(
        "Task type created successfully:\n\n{}",
        f::task_type(&t)
    ))
}

pub async fn update_type(ctx: &Ctx, a: UpdateTaskTypeArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "name", a.name);
    put(&mut body, "icon", a.icon);
    put(&mut body, "color", a.color);
    put(&mut body, "description", a.description);
    let t = ctx
        .api
        .patch(
            &format!("{}/task-types/{}", pp(&a.project_id), seg(&a.type_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!(
        "Task type updated successfully:\n\n{}",
        f::task_type(&t)
    ))
}

pub async fn delete_type(ctx: &Ctx, a: TypeArgs) -> ToolResult {
    ctx.api
        .delete(&format!(
            "{}/task-types/{}",
            pp(&a.project_id),
            seg(&a.type_id)
        ))
        .await?;
    Ok(format!("Task type {} deleted successfully", a.type_id))
}

pub async fn default_type(ctx: &Ctx, a: TypeArgs) -> ToolResult {
    let t = ctx
        .api
        .put(
            &format!(
                "{}/task-types/{}/set-default",
                pp(&a.project_id),
                seg(&a.type_id)
            ),
            &json!({}),
        )
        .await?;
    Ok(format!(
        "Default task type set successfully:\n\n{}",
        f::task_type(&t)
    ))
}

pub async fn list_statuses(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!("{}/task-statuses", pp(&a.project_id)))
        .await?;
    Ok(format!(
        "Task Statuses:\n\n{}",
        f::list(&items(data, &[]), f::task_status)
    ))
}

pub async fn create_status(ctx: &Ctx, a: CreateStatusArgs) -> ToolResult {
    let mut body = Map::new();
    body.insert("name".into(), json!(a.name));
    body.insert("category".into(), json!(a.category));
    put(&mut body, "color", a.color);
    let s = ctx
        .api
        .post(
            &format!("{}/task-statuses", pp(&a.project_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!(
        "Task status created successfully:\n\n{}",
        f::task_status(&s)
    ))
}

pub async fn update_status(ctx: &Ctx, a: UpdateStatusArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "name", a.name);
    put(&mut body, "color", a.color);
    put(&mut body, "category", a.category);
    put(&mut body, "position", a.position);
    let s = ctx
        .api
        .patch(
            &format!("{}/task-statuses/{}", pp(&a.project_id), seg(&a.status_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!(
        "Task status updated successfully:\n\n{}",
        f::task_status(&s)
    ))
}

pub async fn delete_status(ctx: &Ctx, a: StatusArgs) -> ToolResult {
    ctx.api
        .delete(&format!(
            "{}/task-statuses/{}",
            pp(&a.project_id),
            seg(&a.status_id)
        ))
        .await?;
    Ok(format!("Task status {} deleted successfully", a.status_id))
}

pub async fn default_status(ctx: &Ctx, a: StatusArgs) -> ToolResult {
    let s = ctx
        .api
        .put(
            &format!(
                "{}/task-statuses/{}/set-default",
                pp(&a.project_id),
                seg(&a.status_id)
            ),
            &json!({}),
        )
        .await?;
    Ok(format!(
        "Default task status set successfully:\n\n{}",
        f::task_status(&s)
    ))
}

// --------------------------------------------------------------------- views

fn scope_query(context: &str, sprint_id: Option<&str>) -> Vec<(&'static str, String)> {
    let mut q = vec![("context", context.to_owned())];
    if let Some(s) = sprint_id.filter(|s| !s.is_empty()) {
        q.push(("sprint_id", s.to_owned()));
    }
    q
}

pub async fn list_views(ctx: &Ctx, a: ListViewsArgs) -> ToolResult {
    // Without a context, the backlog views (the sprint context needs a sprint).
    let context = a.context.unwrap_or_else(|| "backlog".into());
    let data = ctx
        .api
        .get_q(
            &format!("{}/views", pp(&a.project_id)),
            &scope_query(&context, a.sprint_id.as_deref()),
        )
        .await?;
    let views = items(data, &["views"]);
    let text: Vec<String> = views.iter().map(|v| f::view(v, &context)).collect();
    Ok(format!("Views:\n\n{}", text.join("\n\n---\n\n")))
}

pub async fn create_view(ctx: &Ctx, a: CreateViewArgs) -> ToolResult {
    let body = json!({"name": a.name, "view_type": a.view_type});
    let v = ctx
        .api
        .request(
            reqwest::Method::POST,
            &format!("{}/views", pp(&a.project_id)),
            &scope_query(&a.context, a.sprint_id.as_deref()),
            Some(&body),
        )
        .await?;
    Ok(format!(
        "View created successfully:\n\n{}",
        f::view(&v, &a.context)
    ))
}

/// The context a view belongs to (the API does not return it).
async fn view_context(
    ctx: &Ctx,
    project_id: &str,
    view: &Value,
) -> Result<(String, Option<String>), ToolError> {
    if let Some(sprint) = view.get("sprint_id").and_then(Value::as_str) {
        return Ok(("sprint".into(), Some(sprint.to_owned())));
    }
    let id = view.get("id").and_then(Value::as_str).unwrap_or("");
    let backlog = ctx
        .api
        .get_q(
            &format!("{}/views", pp(project_id)),
            &scope_query("backlog", None),
        )
        .await?;
    let in_backlog = items(backlog, &[])
        .iter()
        .any(|v| v.get("id").and_then(Value::as_str) == Some(id));
    Ok((if in_backlog { "backlog" } else { "timeline" }.into(), None))
}

pub async fn reorder_views(ctx: &Ctx, a: ReorderViewsArgs) -> ToolResult {
    let first = a
        .view_ids
        .first()
        .ok_or_else(|| ToolError::Args("viewIds must name at least one view".into()))?;
    let view = ctx
        .api
        .get(&format!("{}/views/{}", pp(&a.project_id), seg(first)))
        .await?;
    let (context, sprint) = view_context(ctx, &a.project_id, &view).await?;
    ctx.api
        .request(
            reqwest::Method::PUT,
            &format!("{}/views/positions", pp(&a.project_id)),
            &scope_query(&context, sprint.as_deref()),
            Some(&json!({"view_ids": a.view_ids})),
        )
        .await?;
    Ok("Views reordered successfully".into())
}

fn vp(project_id: &str, view_id: &str) -> String {
    format!("{}/views/{}", pp(project_id), seg(view_id))
}

pub async fn get_view(ctx: &Ctx, a: ViewArgs) -> ToolResult {
    let v = ctx.api.get(&vp(&a.project_id, &a.view_id)).await?;
    let (context, _) = view_context(ctx, &a.project_id, &v).await?;
    Ok(f::view(&v, &context))
}

pub async fn update_view(ctx: &Ctx, a: UpdateViewArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "name", a.name);
    put(&mut body, "view_type", a.view_type);
    let v = ctx
        .api
        .patch(&vp(&a.project_id, &a.view_id), &Value::Object(body))
        .await?;
    let (context, _) = view_context(ctx, &a.project_id, &v).await?;
    Ok(format!(
        "View updated successfully:\n\n{}",
        f::view(&v, &context)
    ))
}

pub async fn delete_view(ctx: &Ctx, a: ViewArgs) -> ToolResult {
    ctx.api.delete(&vp(&a.project_id, &a.view_id)).await?;
    Ok(format!("View {} deleted successfully", a.view_id))
}

pub async fn list_positions(ctx: &Ctx, a: ViewArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!("{}/task-positions", vp(&a.project_id, &a.view_id)))
        .await?;
    Ok(format!(
        "Task Positions:\n\n{}",
        pretty(&Value::Array(items(data, &["positions"])))
    ))
}

/// Where the task goes: the given position, or after the last task of the
/// target view; a status move also sets the task's status (a board column).
async fn placement(ctx: &Ctx, a: &MoveTaskArgs) -> Result<Value, ToolError> {
    if let Some(status) = a.target_status_id.as_deref().filter(|s| !s.is_empty()) {
        ctx.api
            .patch(
                &format!("{}/tasks/{}", pp(&a.project_id), seg(&a.task_id)),
                &json!({"status_id": status}),
            )
            .await?;
    }
    let position = match a.target_position {
        Some(p) => p,
        None => {
            let data = ctx
                .api
                .get(&format!(
                    "{}/task-positions",
                    vp(&a.project_id, &a.target_view_id)
                ))
                .await?;
            items(data, &[])
                .iter()
                .filter(|p| p.get("task_id").and_then(Value::as_str) != Some(a.task_id.as_str()))
                .filter_map(|p| p.get("position").and_then(Value::as_f64))
                .fold(0.0, f64::max)
                + 1.0
        }
    };
    let mut item = json!({"task_id": a.task_id, "position": position});
    if let Some(status) = a.target_status_id.as_deref().filter(|s| !s.is_empty()) {
        item["group_key"] = json!(status);
    }
    Ok(item)
}

pub async fn bulk_move_tasks(ctx: &Ctx, a: MoveTaskArgs) -> ToolResult {
    let item = placement(ctx, &a).await?;
    ctx.api
        .put(
            &format!("{}/task-positions", vp(&a.project_id, &a.target_view_id)),
            &json!({"items": [item]}),
        )
        .await?;
    Ok("Tasks moved successfully".into())
}

pub async fn move_task(ctx: &Ctx, a: MoveTaskArgs) -> ToolResult {
    let item = placement(ctx, &a).await?;
    ctx.api
        .put(
            &format!(
                "{}/task-positions/{}",
                vp(&a.project_id, &a.target_view_id),
                seg(&a.task_id)
            ),
            &item,
        )
        .await?;
    Ok("Task moved successfully".into())
}

// ------------------------------------------------------------- custom fields

fn fp(a: &FieldArgs) -> String {
    format!("{}/custom-fields/{}", pp(&a.project_id), seg(&a.field_id))
}

pub async fn list_fields(ctx: &Ctx, a: ProjectArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!("{}/custom-fields", pp(&a.project_id)))
        .await?;
    Ok(format!(
        "Custom Fields:\n\n{}",
        f::list(&items(data, &["fields"]), f::custom_field)
    ))
}

fn options_json(options: Option<Vec<FieldOption>>) -> Option<Value> {
    options.map(|o| {
        Value::Array(
            o.into_iter()
                .map(|opt| match opt {
                    FieldOption::Plain(value) => json!({"value": value}),
                    full => json!(full),
                })
                .collect(),
        )
    })
}

pub async fn create_field(ctx: &Ctx, a: CreateFieldArgs) -> ToolResult {
    let mut body = Map::new();
    body.insert("field_key".into(), json!(a.field_key));
    body.insert("display_name".into(), json!(a.display_name));
    body.insert("field_type".into(), json!(a.field_type));
    put(&mut body, "options", options_json(a.options));
    put(&mut body, "is_required", a.is_required);
    let field = ctx
        .api
        .post(
            &format!("{}/custom-fields", pp(&a.project_id)),
            &Value::Object(body),
        )
        .await?;
    Ok(format!(
        "Custom field created successfully:\n\n{}",
        f::custom_field(&field)
    ))
}

pub async fn get_field(ctx: &Ctx, a: FieldArgs) -> ToolResult {
    Ok(f::custom_field(&ctx.api.get(&fp(&a)).await?))
}

pub async fn update_field(ctx: &Ctx, a: UpdateFieldArgs) -> ToolResult {
    let mut body = Map::new();
    put(&mut body, "display_name", a.display_name);
    put(&mut body, "field_type", a.field_type);
    put(&mut body, "options", options_json(a.options));
    put(&mut body, "is_required", a.is_required);
    let path = format!("{}/custom-fields/{}", pp(&a.project_id), seg(&a.field_id));
    let field = ctx.api.patch(&path, &Value::Object(body)).await?;
    Ok(format!(
        "Custom field updated successfully:\n\n{}",
        f::custom_field(&field)
    ))
}

pub async fn delete_field(ctx: &Ctx, a: FieldArgs) -> ToolResult {
    ctx.api.delete(&fp(&a)).await?;
    Ok(format!("Custom field {} deleted successfully", a.field_id))
}

// --------------------------------------------------------------- attachments

fn ap(a: &AttachmentArgs) -> String {
    format!(
        "{}/tasks/{}/attachments/{}",
        pp(&a.project_id),
        seg(&a.task_id),
        seg(&a.attachment_id)
    )
}

pub async fn list_attachments(ctx: &Ctx, a: TaskArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&format!(
            "{}/tasks/{}/attachments",
            pp(&a.project_id),
            seg(&a.task_id)
        ))
        .await?;
    Ok(format!(
        "Attachments:\n\n{}",
        f::list(&items(data, &["attachments"]), f::attachment)
    ))
}

pub async fn attachment_url(ctx: &Ctx, a: AttachmentArgs) -> ToolResult {
    let data = ctx.api.get(&format!("{}/download-url", ap(&a))).await?;
    let url = data
        .get("url")
        .or_else(|| data.get("download_url"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(format!("Download URL: {url}"))
}

pub async fn delete_attachment(ctx: &Ctx, a: AttachmentArgs) -> ToolResult {
    ctx.api.delete(&ap(&a)).await?;
    Ok(format!(
        "Attachment {} deleted successfully",
        a.attachment_id
    ))
}

// ------------------------------------------------------ activities, comments

fn activities_path(project_id: &str, task_id: &str) -> String {
    format!("{}/tasks/{}/activities", pp(project_id), seg(task_id))
}

pub async fn list_activities(ctx: &Ctx, a: TaskArgs) -> ToolResult {
    let data = ctx
        .api
        .get(&activities_path(&a.project_id, &a.task_id))
        .await?;
    Ok(format!(
        "Task Activities:\n\n{}",
        f::list(&items(data, &["activities"]), f::activity)
    ))
}

fn comment_blocks(md: &str) -> Result<Value, ToolError> {
    let blocks = markdown_to_blocks(md);
    if blocks.is_empty() {
        return Err(ToolError::Args("content must not be empty".into()));
    }
    Ok(Value::Array(blocks))
}

pub async fn add_comment(ctx: &Ctx, a: AddCommentArgs) -> ToolResult {
    let body = json!({"content": comment_blocks(&a.content)?});
    let c = ctx
        .api
        .post(
            &format!("{}/comments", activities_path(&a.project_id, &a.task_id)),
            &body,
        )
        .await?;
    Ok(format!("Comment added successfully:\n\n{}", f::comment(&c)))
}

pub async fn update_comment(ctx: &Ctx, a: UpdateCommentArgs) -> ToolResult {
    let body = json!({"content": comment_blocks(&a.content)?});
    let c = ctx
        .api
        .patch(
            &format!(
                "{}/comments/{}",
                activities_path(&a.project_id, &a.task_id),
                seg(&a.comment_id)
            ),
            &body,
        )
        .await?;
    Ok(format!(
        "Comment updated successfully:\n\n{}",
        f::comment(&c)
    ))
}

pub async fn delete_comment(ctx: &Ctx, a: CommentArgs) -> ToolResult {
    ctx.api
        .delete(&format!(
            "{}/comments/{}",
            activities_path(&a.project_id, &a.task_id),
            seg(&a.comment_id)
        ))
        .await?;
    Ok(format!("Comment {} deleted successfully", a.comment_id))
}
