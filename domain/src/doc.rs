//! Project documentation: folders (one stream each) and documents (one
//! stream each).
//!
//! A document's versions are its own events: every event that changes the
//! title or the content carries the next `snapshot_number`, and the
//! snapshot's id is that event's id. Restoring a snapshot is a new
//! `doc.updated` that names what it restores, so history only grows.
//!
//! Folder parentage is checked by the command handler, which walks the
//! proposed parent's chain through the folders' own streams under a
//! per-project lock and passes it in ([`ParentChain`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::{Changes, FieldChange};
use crate::task::validate_blocks;
use crate::{Decision, DomainError, DomainEvent, ErrorCode, validate};

crate::fields! {
    /// A doc folder's tracked fields.
    pub enum FolderField {
        Name = "name",
        ParentId = "parent_id",
        Position = "position",
    }
}

crate::fields! {
    /// A document's tracked fields (its folder moves by `doc.moved`).
    pub enum DocField {
        Title = "title",
        Content = "content",
        Position = "position",
    }
}

pub const TITLE_MAX: usize = 500;
pub const FOLDER_NAME_MAX: usize = 255;
/// Folder nesting is bounded so that a parent chain is always short.
pub const FOLDER_DEPTH_MAX: usize = 32;

/// A three-state PATCH value: absent (`None`), `null` (`Some(None)`), set.
pub type Patch<T> = Option<Option<T>>;

fn err(code: ErrorCode, message: impl Into<String>) -> DomainError {
    DomainError::new(code, message)
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

// ------------------------------------------------------------------ folders

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum DocFolderEvent {
    #[serde(rename = "doc.folder.created")]
    Created {
        project_id: Uuid,
        name: String,
        parent_id: Option<Uuid>,
        position: i64,
    },
    #[serde(rename = "doc.folder.updated")]
    Updated {
        changes: Vec<FieldChange<FolderField>>,
    },
    /// Deleting a folder deletes its subtree, as Paca does: the command
    /// appends `doc.deleted` / `doc.folder.deleted` to every document and
    /// subfolder inside it in the same transaction.
    #[serde(rename = "doc.folder.deleted")]
    Deleted {
        name: String,
        parent_id: Option<Uuid>,
    },
}

impl DomainEvent for DocFolderEvent {
    const STREAM_TYPE: &'static str = "doc_folder";
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocFolder {
    pub exists: bool,
    pub deleted: bool,
    pub project_id: Uuid,
    pub name: String,
    pub parent_id: Option<Uuid>,
    pub position: i64,
}

/// The proposed parent folder as the handler found it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParentChain {
    /// No live folder of this project has that id.
    Missing,
    /// The parent and its live ancestors, nearest first (deleted folders
    /// in between are skipped, as the read models skip them).
    Found(Vec<Uuid>),
}

#[derive(Debug, Clone)]
pub enum DocFolderCommand {
    Create {
        project_id: Uuid,
        name: String,
        parent: Option<(Uuid, ParentChain)>,
        position: Option<i64>,
    },
    Update {
        self_id: Uuid,
        name: Option<String>,
        parent: Patch<(Uuid, ParentChain)>,
        position: Option<i64>,
    },
    Delete,
}

fn folder_name(name: &str) -> Result<String, DomainError> {
    validate::bounded_name(
        name,
        FOLDER_NAME_MAX,
        ErrorCode::DOC_FOLDER_NAME_INVALID,
        "name",
    )
}

fn check_parent(self_id: Option<Uuid>, parent: &(Uuid, ParentChain)) -> Result<Uuid, DomainError> {
    let (parent_id, chain) = parent;
    if Some(*parent_id) == self_id {
        return Err(err(
            ErrorCode::DOC_FOLDER_SELF_PARENT,
            "a folder cannot be its own parent",
        ));
    }
    match chain {
        ParentChain::Missing => Err(err(
            ErrorCode::DOC_FOLDER_NOT_FOUND,
            "parent_id: folder not found",
        )),
        ParentChain::Found(chain) => {
            if self_id.is_some_and(|me| chain.contains(&me)) {
                return Err(err(
                    ErrorCode::DOC_FOLDER_CYCLE,
                    "parent_id: the folder would become its own ancestor",
                ));
            }
            if chain.len() >= FOLDER_DEPTH_MAX {
                return Err(err(
                    ErrorCode::BAD_REQUEST,
                    format!("folders nest at most {FOLDER_DEPTH_MAX} levels deep"),
                ));
            }
            Ok(*parent_id)
        }
    }
}

impl DocFolder {
    pub fn evolve(mut self, event: &DocFolderEvent) -> Self {
        match event {
            DocFolderEvent::Created {
                project_id,
                name,
                parent_id,
                position,
            } => {
                self.exists = true;
                self.project_id = *project_id;
                self.name.clone_from(name);
                self.parent_id = *parent_id;
                self.position = *position;
            }
            DocFolderEvent::Updated { changes } => {
                for c in changes {
                    match c.field {
                        FolderField::Name => {
                            self.name = c.new.as_str().unwrap_or_default().to_owned()
                        }
                        FolderField::ParentId => {
                            self.parent_id = serde_json::from_value(c.new.clone()).ok().flatten()
                        }
                        FolderField::Position => self.position = c.new.as_i64().unwrap_or_default(),
                    }
                }
            }
            DocFolderEvent::Deleted { .. } => self.deleted = true,
        }
        self
    }

    pub fn is_live_in(&self, project_id: Uuid) -> bool {
        self.exists && !self.deleted && self.project_id == project_id
    }

    pub fn decide(&self, command: DocFolderCommand) -> Decision<DocFolderEvent> {
        match command {
            DocFolderCommand::Create {
                project_id,
                name,
                parent,
                position,
            } => {
                if self.exists {
                    return Err(err(ErrorCode::CONFLICT, "folder already exists"));
                }
                let name = folder_name(&name)?;
                let parent_id = parent.as_ref().map(|p| check_parent(None, p)).transpose()?;
                Ok(vec![DocFolderEvent::Created {
                    project_id,
                    name,
                    parent_id,
                    position: position.unwrap_or(0),
                }])
            }
            DocFolderCommand::Update {
                self_id,
                name,
                parent,
                position,
            } => {
                if !self.exists || self.deleted {
                    return Err(err(ErrorCode::DOC_FOLDER_NOT_FOUND, "folder not found"));
                }
                let mut changes = Changes::new();
                if let Some(name) = name {
                    let name = folder_name(&name)?;
                    changes.record(FolderField::Name, json(&self.name), json(&name));
                }
                if let Some(parent) = parent {
                    let parent_id = parent
                        .as_ref()
                        .map(|p| check_parent(Some(self_id), p))
                        .transpose()?;
                    changes.record(
                        FolderField::ParentId,
                        json(&self.parent_id),
                        json(&parent_id),
                    );
                }
                if let Some(position) = position {
                    changes.record(FolderField::Position, json(&self.position), json(&position));
                }
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![DocFolderEvent::Updated {
                    changes: changes.into_vec(),
                }])
            }
            DocFolderCommand::Delete => {
                if !self.exists || self.deleted {
                    return Err(err(ErrorCode::DOC_FOLDER_NOT_FOUND, "folder not found"));
                }
                Ok(vec![DocFolderEvent::Deleted {
                    name: self.name.clone(),
                    parent_id: self.parent_id,
                }])
            }
        }
    }
}

// ---------------------------------------------------------------- documents

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum DocEvent {
    #[serde(rename = "doc.created")]
    Created {
        project_id: Uuid,
        title: String,
        folder_id: Option<Uuid>,
        content: Value,
        position: f64,
        snapshot_number: i64,
    },
    /// A change of title or content makes a new version (`snapshot_number`); a restore names the
    /// snapshot it brought back.
    #[serde(rename = "doc.updated")]
    Updated {
        changes: Vec<FieldChange<DocField>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot_number: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restored_from: Option<Restored>,
    },
    #[serde(rename = "doc.moved")]
    Moved {
        old_folder_id: Option<Uuid>,
        folder_id: Option<Uuid>,
    },
    #[serde(rename = "doc.deleted")]
    Deleted { title: String },
    #[serde(rename = "doc.comment_added")]
    CommentAdded {
        comment_id: Uuid,
        content: Value,
        author_user_id: Uuid,
    },
    #[serde(rename = "doc.comment_edited")]
    CommentEdited {
        comment_id: Uuid,
        content: Value,
        old_content: Value,
    },
    #[serde(rename = "doc.comment_deleted")]
    CommentDeleted { comment_id: Uuid },
    #[serde(rename = "doc.file_added")]
    FileAdded {
        file_id: Uuid,
        file_name: String,
        content_type: String,
        file_size: i64,
    },
    #[serde(rename = "doc.file_removed")]
    FileRemoved {
        file_id: Uuid,
        file_name: String,
        file_size: i64,
    },
}

impl DomainEvent for DocEvent {
    const STREAM_TYPE: &'static str = "doc";
}

/// The snapshot a restore brought back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    pub snapshot_id: Uuid,
    pub snapshot_number: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocComment {
    pub author_user_id: Uuid,
    pub content: Value,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocFile {
    pub file_name: String,
    pub file_size: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doc {
    pub exists: bool,
    pub deleted: bool,
    pub project_id: Uuid,
    pub title: String,
    pub folder_id: Option<Uuid>,
    pub content: Value,
    pub position: f64,
    /// Versions, `snapshots[n - 1]` = (title, content) of snapshot `n`.
    pub snapshots: Vec<(String, Value)>,
    pub comments: BTreeMap<Uuid, DocComment>,
    pub files: BTreeMap<Uuid, DocFile>,
}

/// Whether the folder a document goes into is a live folder of its project.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FolderCheck {
    Live(Uuid),
    Missing(Uuid),
}

#[derive(Debug, Clone)]
pub enum DocCommand {
    Create {
        project_id: Uuid,
        title: String,
        folder: Option<FolderCheck>,
        content: Option<Value>,
        position: Option<f64>,
    },
    Update {
        title: Option<String>,
        /// `Some(None)` (JSON null) empties the document.
        content: Patch<Value>,
        folder: Patch<FolderCheck>,
        position: Option<f64>,
    },
    Restore {
        snapshot_id: Uuid,
        snapshot_number: i64,
    },
    Delete,
    AddComment {
        comment_id: Uuid,
        author_user_id: Uuid,
        content: Value,
    },
    EditComment {
        comment_id: Uuid,
        actor_user_id: Uuid,
        content: Value,
    },
    DeleteComment {
        comment_id: Uuid,
        actor_user_id: Uuid,
    },
    AddFile {
        file_id: Uuid,
        file_name: String,
        content_type: String,
        file_size: i64,
    },
    RemoveFile {
        file_id: Uuid,
    },
}

fn doc_title(title: &str) -> Result<String, DomainError> {
    validate::bounded_name(title, TITLE_MAX, ErrorCode::DOC_TITLE_INVALID, "title")
}

fn doc_content(content: Value) -> Result<Value, DomainError> {
    validate_blocks(&content, "content")?;
    Ok(content)
}

fn doc_position(position: f64) -> Result<f64, DomainError> {
    if !position.is_finite() {
        return Err(err(
            ErrorCode::BAD_REQUEST,
            "position must be a finite number",
        ));
    }
    Ok(position)
}

fn folder_id(check: FolderCheck) -> Result<Uuid, DomainError> {
    match check {
        FolderCheck::Live(id) => Ok(id),
        FolderCheck::Missing(_) => Err(err(
            ErrorCode::DOC_FOLDER_NOT_FOUND,
            "folder_id: folder not found",
        )),
    }
}

fn validate_comment(content: &Value) -> Result<(), DomainError> {
    crate::task::validate_comment(content)
        .map_err(|e| err(ErrorCode::DOC_COMMENT_CONTENT_INVALID, e.message))
}

impl Doc {
    pub fn evolve(mut self, event: &DocEvent) -> Self {
        match event {
            DocEvent::Created {
                project_id,
                title,
                folder_id,
                content,
                position,
                ..
            } => {
                self.exists = true;
                self.project_id = *project_id;
                self.title.clone_from(title);
                self.folder_id = *folder_id;
                self.content = content.clone();
                self.position = *position;
                self.snapshots.push((title.clone(), content.clone()));
            }
            DocEvent::Updated {
                changes,
                snapshot_number,
                ..
            } => {
                for c in changes {
                    match c.field {
                        DocField::Title => {
                            self.title = c.new.as_str().unwrap_or_default().to_owned()
                        }
                        DocField::Content => self.content = c.new.clone(),
                        DocField::Position => self.position = c.new.as_f64().unwrap_or_default(),
                    }
                }
                if snapshot_number.is_some() {
                    self.snapshots
                        .push((self.title.clone(), self.content.clone()));
                }
            }
            DocEvent::Moved { folder_id, .. } => self.folder_id = *folder_id,
            DocEvent::Deleted { .. } => self.deleted = true,
            DocEvent::CommentAdded {
                comment_id,
                content,
                author_user_id,
            } => {
                self.comments.insert(
                    *comment_id,
                    DocComment {
                        author_user_id: *author_user_id,
                        content: content.clone(),
                        deleted: false,
                    },
                );
            }
            DocEvent::CommentEdited {
                comment_id,
                content,
                ..
            } => {
                if let Some(c) = self.comments.get_mut(comment_id) {
                    c.content = content.clone();
                }
            }
            DocEvent::CommentDeleted { comment_id } => {
                if let Some(c) = self.comments.get_mut(comment_id) {
                    c.deleted = true;
                }
            }
            DocEvent::FileAdded {
                file_id,
                file_name,
                file_size,
                ..
            } => {
                self.files.insert(
                    *file_id,
                    DocFile {
                        file_name: file_name.clone(),
                        file_size: *file_size,
                    },
                );
            }
            DocEvent::FileRemoved { file_id, .. } => {
                self.files.remove(file_id);
            }
        }
        self
    }

    pub fn is_live_in(&self, project_id: Uuid) -> bool {
        self.exists && !self.deleted && self.project_id == project_id
    }

    fn live(&self) -> Result<(), DomainError> {
        if !self.exists || self.deleted {
            return Err(err(ErrorCode::DOC_NOT_FOUND, "document not found"));
        }
        Ok(())
    }

    fn comment(&self, comment_id: Uuid, actor: Uuid) -> Result<&DocComment, DomainError> {
        let comment = self
            .comments
            .get(&comment_id)
            .filter(|c| !c.deleted)
            .ok_or_else(|| err(ErrorCode::DOC_ACTIVITY_NOT_FOUND, "comment not found"))?;
        if comment.author_user_id != actor {
            return Err(err(
                ErrorCode::DOC_ACTIVITY_FORBIDDEN,
                "only the author can change a comment",
            ));
        }
        Ok(comment)
    }

    fn next_snapshot(&self) -> i64 {
        self.snapshots.len() as i64 + 1
    }

    pub fn decide(&self, command: DocCommand) -> Decision<DocEvent> {
        match command {
            DocCommand::Create {
                project_id,
                title,
                folder,
                content,
                position,
            } => {
                if self.exists {
                    return Err(err(ErrorCode::CONFLICT, "document already exists"));
                }
                let title = doc_title(&title)?;
                let folder_id = folder.map(folder_id).transpose()?;
                let content = doc_content(content.unwrap_or_else(|| Value::Array(vec![])))?;
                let position = doc_position(position.unwrap_or(0.0))?;
                Ok(vec![DocEvent::Created {
                    project_id,
                    title,
                    folder_id,
                    content,
                    position,
                    snapshot_number: 1,
                }])
            }
            DocCommand::Update {
                title,
                content,
                folder,
                position,
            } => {
                self.live()?;
                let mut changes = Vec::new();
                if let Some(title) = title {
                    let title = doc_title(&title)?;
                    if title != self.title {
                        changes.push(FieldChange {
                            field: DocField::Title,
                            old: json(&self.title),
                            new: json(&title),
                        });
                    }
                }
                if let Some(content) = content {
                    let content = doc_content(content.unwrap_or_else(|| Value::Array(vec![])))?;
                    if content != self.content {
                        changes.push(FieldChange {
                            field: DocField::Content,
                            old: self.content.clone(),
                            new: content,
                        });
                    }
                }
                let versioned = !changes.is_empty();
                if let Some(position) = position {
                    let position = doc_position(position)?;
                    if position != self.position {
                        changes.push(FieldChange {
                            field: DocField::Position,
                            old: json(&self.position),
                            new: json(&position),
                        });
                    }
                }
                let mut events = Vec::new();
                if let Some(folder) = folder {
                    let folder_id = folder.map(folder_id).transpose()?;
                    if folder_id != self.folder_id {
                        events.push(DocEvent::Moved {
                            old_folder_id: self.folder_id,
                            folder_id,
                        });
                    }
                }
                if !changes.is_empty() {
                    events.insert(
                        0,
                        DocEvent::Updated {
                            changes,
                            snapshot_number: versioned.then(|| self.next_snapshot()),
                            restored_from: None,
                        },
                    );
                }
                Ok(events)
            }
            DocCommand::Restore {
                snapshot_id,
                snapshot_number,
            } => {
                self.live()?;
                let index = usize::try_from(snapshot_number - 1).ok();
                let Some((title, content)) = index.and_then(|i| self.snapshots.get(i)) else {
                    return Err(err(ErrorCode::DOC_SNAPSHOT_NOT_FOUND, "snapshot not found"));
                };
                let mut changes = Vec::new();
                if *title != self.title {
                    changes.push(FieldChange {
                        field: DocField::Title,
                        old: json(&self.title),
                        new: json(title),
                    });
                }
                if *content != self.content {
                    changes.push(FieldChange {
                        field: DocField::Content,
                        old: self.content.clone(),
                        new: content.clone(),
                    });
                }
                // A restore always records a version, even when the
                // document already reads like the snapshot: the history
                // then shows that it was asked for.
                Ok(vec![DocEvent::Updated {
                    changes,
                    snapshot_number: Some(self.next_snapshot()),
                    restored_from: Some(Restored {
                        snapshot_id,
                        snapshot_number,
                    }),
                }])
            }
            DocCommand::Delete => {
                self.live()?;
                Ok(vec![DocEvent::Deleted {
                    title: self.title.clone(),
                }])
            }
            DocCommand::AddComment {
                comment_id,
                author_user_id,
                content,
            } => {
                self.live()?;
                validate_comment(&content)?;
                Ok(vec![DocEvent::CommentAdded {
                    comment_id,
                    content,
                    author_user_id,
                }])
            }
            DocCommand::EditComment {
                comment_id,
                actor_user_id,
                content,
            } => {
                self.live()?;
                let comment = self.comment(comment_id, actor_user_id)?;
                validate_comment(&content)?;
                if comment.content == content {
                    return Ok(vec![]);
                }
                Ok(vec![DocEvent::CommentEdited {
                    comment_id,
                    old_content: comment.content.clone(),
                    content,
                }])
            }
            DocCommand::DeleteComment {
                comment_id,
                actor_user_id,
            } => {
                self.live()?;
                self.comment(comment_id, actor_user_id)?;
                Ok(vec![DocEvent::CommentDeleted { comment_id }])
            }
            DocCommand::AddFile {
                file_id,
                file_name,
                content_type,
                file_size,
            } => {
                self.live()?;
                if self.files.contains_key(&file_id) {
                    return Ok(vec![]);
                }
                Ok(vec![DocEvent::FileAdded {
                    file_id,
                    file_name,
                    content_type,
                    file_size,
                }])
            }
            DocCommand::RemoveFile { file_id } => {
                self.live()?;
                let Some(file) = self.files.get(&file_id) else {
                    return Err(err(ErrorCode::FILE_NOT_FOUND, "file not found"));
                };
                Ok(vec![DocEvent::FileRemoved {
                    file_id,
                    file_name: file.file_name.clone(),
                    file_size: file.file_size,
                }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn given(events: &[DocEvent]) -> Doc {
        events.iter().fold(Doc::default(), Doc::evolve)
    }

    fn blocks(text: &str) -> Value {
        json!([{"type": "paragraph", "content": [{"type": "text", "text": text}]}])
    }

    fn created(project_id: Uuid) -> DocEvent {
        Doc::default()
            .decide(DocCommand::Create {
                project_id,
                title: " Spec ".into(),
                folder: None,
                content: Some(blocks("v1")),
                position: None,
            })
            .unwrap()
            .remove(0)
    }

    #[test]
    fn versions_number_title_and_content_changes_only() {
        let p = Uuid::now_v7();
        let c = created(p);
        let DocEvent::Created {
            title,
            snapshot_number,
            ..
        } = &c
        else {
            panic!("{c:?}")
        };
        assert_eq!((title.as_str(), *snapshot_number), ("Spec", 1));
        let doc = given(std::slice::from_ref(&c));
        let edit = doc
            .decide(DocCommand::Update {
                title: None,
                content: Some(Some(blocks("v2"))),
                folder: None,
                position: Some(3.0),
            })
            .unwrap();
        assert!(matches!(
            &edit[..],
            [DocEvent::Updated { snapshot_number: Some(2), changes, .. }] if changes.len() == 2
        ));
        let doc = given(&[c.clone(), edit[0].clone()]);
        let only_position = doc
            .decide(DocCommand::Update {
                title: None,
                content: None,
                folder: None,
                position: Some(4.0),
            })
            .unwrap();
        assert!(matches!(
            &only_position[..],
            [DocEvent::Updated {
                snapshot_number: None,
                ..
            }]
        ));
        // Unchanged values record nothing.
        assert!(
            doc.decide(DocCommand::Update {
                title: Some("Spec".into()),
                content: Some(Some(blocks("v2"))),
                folder: Some(None),
                position: None,
            })
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn restore_brings_back_a_snapshot_as_a_new_version() {
        let p = Uuid::now_v7();
        let c = created(p);
        let doc = given(std::slice::from_ref(&c));
        let edit = doc
            .decide(DocCommand::Update {
                title: Some("Spec 2".into()),
                content: Some(Some(blocks("v2"))),
                folder: None,
                position: None,
            })
            .unwrap();
        let doc = given(&[c, edit[0].clone()]);
        let snap = Uuid::now_v7();
        let restored = doc
            .decide(DocCommand::Restore {
                snapshot_id: snap,
                snapshot_number: 1,
            })
            .unwrap();
        let DocEvent::Updated {
            changes,
            snapshot_number,
            restored_from,
        } = &restored[0]
        else {
            panic!()
        };
        assert_eq!(*snapshot_number, Some(3));
        assert_eq!(restored_from.as_ref().unwrap().snapshot_number, 1);
        assert_eq!(changes[0].new, json!("Spec"));
        assert_eq!(changes[1].new, blocks("v1"));
        let e = doc
            .decide(DocCommand::Restore {
                snapshot_id: snap,
                snapshot_number: 9,
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::DOC_SNAPSHOT_NOT_FOUND);
    }

    #[test]
    fn invalid_input_is_refused() {
        let p = Uuid::now_v7();
        let create = |title: &str, content: Value| {
            Doc::default().decide(DocCommand::Create {
                project_id: p,
                title: title.into(),
                folder: None,
                content: Some(content),
                position: None,
            })
        };
        assert_eq!(
            create("  ", json!([])).unwrap_err().code,
            ErrorCode::DOC_TITLE_INVALID
        );
        assert_eq!(
            create("x", json!("text")).unwrap_err().code,
            ErrorCode::BAD_REQUEST
        );
        let e = Doc::default()
            .decide(DocCommand::Create {
                project_id: p,
                title: "x".into(),
                folder: Some(FolderCheck::Missing(Uuid::nil())),
                content: None,
                position: None,
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::DOC_FOLDER_NOT_FOUND);
    }

    #[test]
    fn comments_are_changed_by_their_author_only() {
        let p = Uuid::now_v7();
        let (ann, bob, cid) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let doc = given(&[created(p)]);
        let added = doc
            .decide(DocCommand::AddComment {
                comment_id: cid,
                author_user_id: ann,
                content: blocks("hi"),
            })
            .unwrap();
        let doc = given(&[created(p), added[0].clone()]);
        let e = doc
            .decide(DocCommand::DeleteComment {
                comment_id: cid,
                actor_user_id: bob,
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::DOC_ACTIVITY_FORBIDDEN);
        assert!(
            doc.decide(DocCommand::DeleteComment {
                comment_id: cid,
                actor_user_id: ann,
            })
            .is_ok()
        );
        let e = doc
            .decide(DocCommand::AddComment {
                comment_id: Uuid::now_v7(),
                author_user_id: ann,
                content: json!([]),
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::DOC_COMMENT_CONTENT_INVALID);
    }

    #[test]
    fn folders_refuse_self_parents_and_cycles() {
        let p = Uuid::now_v7();
        let (me, a) = (Uuid::now_v7(), Uuid::now_v7());
        let folder = DocFolder::default()
            .decide(DocFolderCommand::Create {
                project_id: p,
                name: "Root".into(),
                parent: None,
                position: None,
            })
            .unwrap();
        let folder = folder.iter().fold(DocFolder::default(), DocFolder::evolve);
        let update = |parent| DocFolderCommand::Update {
            self_id: me,
            name: None,
            parent: Some(Some(parent)),
            position: None,
        };
        assert_eq!(
            folder
                .decide(update((me, ParentChain::Found(vec![me]))))
                .unwrap_err()
                .code,
            ErrorCode::DOC_FOLDER_SELF_PARENT
        );
        assert_eq!(
            folder
                .decide(update((a, ParentChain::Found(vec![a, me]))))
                .unwrap_err()
                .code,
            ErrorCode::DOC_FOLDER_CYCLE
        );
        assert_eq!(
            folder
                .decide(update((a, ParentChain::Missing)))
                .unwrap_err()
                .code,
            ErrorCode::DOC_FOLDER_NOT_FOUND
        );
        let moved = folder
            .decide(update((a, ParentChain::Found(vec![a]))))
            .unwrap();
        let folder = moved.iter().fold(folder, DocFolder::evolve);
        assert_eq!(folder.parent_id, Some(a));
        // null moves it back to the root
        let root = folder
            .decide(DocFolderCommand::Update {
                self_id: me,
                name: None,
                parent: Some(None),
                position: None,
            })
            .unwrap();
        assert_eq!(root.iter().fold(folder, DocFolder::evolve).parent_id, None);
    }
}
