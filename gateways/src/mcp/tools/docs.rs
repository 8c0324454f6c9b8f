//! The path-based documentation tools of page 18 (`list_docs`, `read_doc`,
//! `write_doc`, `delete_doc`, `move_doc`), built on the docs and doc-folder
//! REST endpoints: a path `A/B/Title` names folders `A` then `B` and the
//! document titled `Title`; missing folders are created on write and move.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::args::*;
use super::{Ctx, ToolError, ToolResult, seg};
use crate::mcp::client::items;
use crate::mcp::markdown::{blocks_to_markdown, markdown_to_blocks};

struct Tree {
    /// parent folder id (None = root) -> folders
    folders: HashMap<Option<String>, Vec<Value>>,
    /// folder id (None = root) -> documents
    docs: HashMap<Option<String>, Vec<Value>>,
}

enum Resolved {
    Root,
    Folder(Value),
    Doc(Value),
}

fn id(v: &Value) -> String {
    v.get("id").and_then(Value::as_str).unwrap_or("").to_owned()
}

fn parent_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn position(v: &Value) -> f64 {
    v.get("position").and_then(Value::as_f64).unwrap_or(0.0)
}

async fn tree(ctx: &Ctx, project_id: &str) -> Result<Tree, ToolError> {
    let base = format!("/projects/{}/docs", seg(project_id));
    let folders_path = format!("{base}/folders");
    let (folders, docs) = tokio::join!(ctx.api.get(&folders_path), ctx.api.get(&base));
    let mut tree = Tree {
        folders: HashMap::new(),
        docs: HashMap::new(),
    };
    for f in items(folders?, &["folders"]) {
        tree.folders
            .entry(parent_of(&f, "parent_id"))
            .or_default()
            .push(f);
    }
    for d in items(docs?, &["documents", "docs"]) {
        tree.docs
            .entry(parent_of(&d, "folder_id"))
            .or_default()
            .push(d);
    }
    Ok(tree)
}

fn parse_path(path: &str) -> Vec<String> {
    path.split('/')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn find_folder<'a>(tree: &'a Tree, parent: &Option<String>, name: &str) -> Option<&'a Value> {
    tree.folders
        .get(parent)
        .and_then(|fs| fs.iter().find(|f| text(f, "name") == name))
}

fn resolve(tree: &Tree, path: &str) -> Option<Resolved> {
    let parts = parse_path(path);
    let Some((last, folders)) = parts.split_last() else {
        return Some(Resolved::Root);
    };
    let mut current: Option<String> = None;
    for name in folders {
        current = Some(id(find_folder(tree, &current, name)?));
    }
    if let Some(folder) = find_folder(tree, &current, last) {
        return Some(Resolved::Folder(folder.clone()));
    }
    tree.docs
        .get(&current)
        .and_then(|ds| ds.iter().find(|d| text(d, "title") == *last))
        .map(|d| Resolved::Doc(d.clone()))
}

/// Walks (and creates) the folders of `names`; returns the last folder id.
async fn ensure_folders(
    ctx: &Ctx,
    project_id: &str,
    tree: &mut Tree,
    names: &[String],
) -> Result<Option<String>, ToolError> {
    let mut current: Option<String> = None;
    for name in names {
        let existing = find_folder(tree, &current, name).map(id);
        let folder_id = match existing {
            Some(fid) => fid,
            None => {
                let mut body = json!({"name": name});
                if let Some(parent) = &current {
                    body["parent_id"] = json!(parent);
                }
                let created = ctx
                    .api
                    .post(
                        &format!("/projects/{}/docs/folders", seg(project_id)),
                        &body,
                    )
                    .await?;
                let fid = id(&created);
                tree.folders
                    .entry(current.clone())
                    .or_default()
                    .push(created);
                fid
            }
        };
        current = Some(folder_id);
    }
    Ok(current)
}

fn render(tree: &Tree, parent: &Option<String>, out: &mut Vec<String>) {
    let mut folders = tree.folders.get(parent).cloned().unwrap_or_default();
    folders.sort_by(|a, b| {
        position(a)
            .total_cmp(&position(b))
            .then_with(|| text(a, "name").cmp(&text(b, "name")))
    });
    let mut docs = tree.docs.get(parent).cloned().unwrap_or_default();
    docs.sort_by(|a, b| {
        position(a)
            .total_cmp(&position(b))
            .then_with(|| text(a, "title").cmp(&text(b, "title")))
    });
    let entries: Vec<(String, Option<String>)> = folders
        .iter()
        .map(|f| (format!("📁 {}/", text(f, "name")), Some(id(f))))
        .chain(
            docs.iter()
                .map(|d| (format!("📄 {}", text(d, "title")), None)),
        )
        .collect();
    let count = entries.len();
    for (i, (label, folder)) in entries.into_iter().enumerate() {
        let last = i + 1 == count;
        out.push(format!("{}{label}", if last { "└── " } else { "├── " }));
        if let Some(fid) = folder {
            let mut child = Vec::new();
            render(tree, &Some(fid), &mut child);
            let indent = if last { "    " } else { "│   " };
            out.extend(child.into_iter().map(|l| format!("{indent}{l}")));
        }
    }
}

pub async fn list_docs(ctx: &Ctx, a: ListDocsArgs) -> ToolResult {
    let tree = tree(ctx, &a.project_id).await?;
    let path = a.path.unwrap_or_default();
    let mut root = None;
    let mut header = "/".to_owned();
    if !path.trim().is_empty() && path.trim() != "/" {
        match resolve(&tree, &path) {
            None => return Err(ToolError::Text(format!("Path not found: {path}"))),
            Some(Resolved::Doc(_)) => {
                return Err(ToolError::Text(format!(
                    "'{path}' is a document, not a folder. Use read_doc to read it."
                )));
            }
            Some(Resolved::Folder(f)) => {
                root = Some(id(&f));
                header = path.clone();
            }
            Some(Resolved::Root) => {}
        }
    }
    let mut lines = Vec::new();
    render(&tree, &root, &mut lines);
    let body = if lines.is_empty() {
        "(empty)".to_owned()
    } else {
        lines.join("\n")
    };
    Ok(format!("📂 {header}\n{body}"))
}

pub async fn read_doc(ctx: &Ctx, a: DocPathArgs) -> ToolResult {
    let tree = tree(ctx, &a.project_id).await?;
    match resolve(&tree, &a.path) {
        None | Some(Resolved::Root) => Err(ToolError::Text(format!("Not found: {}", a.path))),
        Some(Resolved::Folder(_)) => Err(ToolError::Text(format!(
            "'{}' is a folder, not a document. Use list_docs to see its contents.",
            a.path
        ))),
        Some(Resolved::Doc(d)) => {
            let doc = ctx
                .api
                .get(&format!(
                    "/projects/{}/docs/{}",
                    seg(&a.project_id),
                    seg(&id(&d))
                ))
                .await?;
            let content = doc
                .get("content")
                .map(blocks_to_markdown)
                .unwrap_or_default();
            Ok(format!(
                "📄 {}\nPath: {}\nUpdated: {}\n\n---\n\n{}",
                text(&doc, "title"),
                a.path,
                text(&doc, "updated_at"),
                content
            ))
        }
    }
}

pub async fn write_doc(ctx: &Ctx, a: WriteDocArgs) -> ToolResult {
    let mut tree = tree(ctx, &a.project_id).await?;
    let parts = parse_path(&a.path);
    let Some((title, folders)) = parts.split_last() else {
        return Err(ToolError::Text(
            "Path must include at least a document name.".into(),
        ));
    };
    let folder_id = ensure_folders(ctx, &a.project_id, &mut tree, folders).await?;
    let content = Value::Array(markdown_to_blocks(&a.content));
    let existing = tree
        .docs
        .get(&folder_id)
        .and_then(|ds| ds.iter().find(|d| text(d, "title") == *title))
        .map(id);
    let base = format!("/projects/{}/docs", seg(&a.project_id));
    if let Some(doc_id) = existing {
        ctx.api
            .patch(
                &format!("{base}/{}", seg(&doc_id)),
                &json!({"content": content}),
            )
            .await?;
        return Ok(format!("Updated document: {}", a.path));
    }
    let mut body = json!({"title": title, "content": content});
    if let Some(fid) = folder_id {
        body["folder_id"] = json!(fid);
    }
    ctx.api.post(&base, &body).await?;
    Ok(format!("Created document: {}", a.path))
}

pub async fn delete_doc(ctx: &Ctx, a: DocPathArgs) -> ToolResult {
    let tree = tree(ctx, &a.project_id).await?;
    let base = format!("/projects/{}/docs", seg(&a.project_id));
    match resolve(&tree, &a.path) {
        None | Some(Resolved::Root) => Err(ToolError::Text(format!("Not found: {}", a.path))),
        Some(Resolved::Doc(d)) => {
            ctx.api.delete(&format!("{base}/{}", seg(&id(&d)))).await?;
            Ok(format!("Deleted document: {}", a.path))
        }
        Some(Resolved::Folder(f)) => {
            ctx.api
                .delete(&format!("{base}/folders/{}", seg(&id(&f))))
                .await?;
            Ok(format!("Deleted folder: {}", a.path))
        }
    }
}

pub async fn move_doc(ctx: &Ctx, a: MoveDocArgs) -> ToolResult {
    let mut tree = tree(ctx, &a.project_id).await?;
    let source = match resolve(&tree, &a.source_path) {
        None | Some(Resolved::Root) => {
            return Err(ToolError::Text(format!("Not found: {}", a.source_path)));
        }
        Some(r) => r,
    };
    let parts = parse_path(&a.dest_path);
    let Some((name, folders)) = parts.split_last() else {
        return Err(ToolError::Text(
            "Destination path must include at least a name.".into(),
        ));
    };
    let folder_id = ensure_folders(ctx, &a.project_id, &mut tree, folders).await?;
    let base = format!("/projects/{}/docs", seg(&a.project_id));
    match source {
        Resolved::Doc(d) => {
            ctx.api
                .patch(
                    &format!("{base}/{}", seg(&id(&d))),
                    &json!({"title": name, "folder_id": folder_id}),
                )
                .await?;
            Ok(format!(
                "Moved document: {} → {}",
                a.source_path, a.dest_path
            ))
        }
        Resolved::Folder(f) => {
            ctx.api
                .patch(
                    &format!("{base}/folders/{}", seg(&id(&f))),
                    &json!({"name": name, "parent_id": folder_id}),
                )
                .await?;
            Ok(format!("Moved folder: {} → {}", a.source_path, a.dest_path))
        }
        Resolved::Root => Err(ToolError::Text(format!("Not found: {}", a.source_path))),
    }
}
