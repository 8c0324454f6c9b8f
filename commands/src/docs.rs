//! Project documentation commands: folders, documents, their versions
//! (restore of a snapshot), comments and files.
//!
//! Every decision reads only the streams involved: the project (is it
//! live), the document or folder, the target folder, and for re-parenting
//! the proposed parent's chain walked through the folders' streams. Folder
//! re-parenting in a project is serialised by a transaction advisory lock,
//! so two concurrent moves (A under B, B under A) cannot both pass a cycle
//! check that cannot see the other.

use domain::doc::{
    Doc, DocCommand, DocEvent, DocFolder, DocFolderCommand, DocFolderEvent, FOLDER_DEPTH_MAX,
    FolderCheck, ParentChain, Patch,
};
use domain::{DomainError, DomainEvent, ErrorCode};
use eventstore::{AppendTx, LockMode, Metadata};
use serde_json::Value;
use uuid::Uuid;

use crate::{CommandError, CommandResult, Commands};

fn doc_not_found() -> DomainError {
    DomainError::new(ErrorCode::DOC_NOT_FOUND, "document not found")
}

fn folder_not_found() -> DomainError {
    DomainError::new(ErrorCode::DOC_FOLDER_NOT_FOUND, "folder not found")
}

async fn lock_folder_tree(tx: &mut AppendTx, project_id: Uuid) -> CommandResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('paca.doc_tree.' || $1::text, 0))")
        .bind(project_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// New documents and folders.
pub struct NewDoc {
    pub title: String,
    pub folder_id: Option<Uuid>,
    pub content: Option<Value>,
    pub position: Option<f64>,
}

#[derive(Default)]
pub struct DocPatch {
    pub title: Option<String>,
    pub content: Patch<Value>,
    pub folder_id: Patch<Uuid>,
    pub position: Option<f64>,
}

impl Commands {
    async fn require_project(&self, tx: &mut AppendTx, project_id: Uuid) -> CommandResult<()> {
        if !self.project_state(tx.conn(), project_id).await?.is_live() {
            return Err(CommandError::domain(
                ErrorCode::PROJECT_NOT_FOUND,
                "project not found",
            ));
        }
        Ok(())
    }

    /// A folder's state, when `id` is a folder stream.
    async fn folder_in(&self, tx: &mut AppendTx, id: Uuid) -> CommandResult<DocFolder> {
        if self.store.stream_type_in(tx.conn(), id).await?.as_deref()
            != Some(DocFolderEvent::STREAM_TYPE)
        {
            return Ok(DocFolder::default());
        }
        Ok(self
            .load_in::<DocFolderEvent, DocFolder>(tx.conn(), id, DocFolder::evolve)
            .await?
            .state)
    }

    /// The folder a document goes into: live in the project or missing.
    async fn folder_check(
        &self,
        tx: &mut AppendTx,
        project_id: Uuid,
        id: Uuid,
    ) -> CommandResult<FolderCheck> {
        Ok(if self.folder_in(tx, id).await?.is_live_in(project_id) {
            FolderCheck::Live(id)
        } else {
            FolderCheck::Missing(id)
        })
    }

    /// The proposed parent and its ancestors, nearest first. Deleted
    /// folders in the chain are skipped (their children moved up to their
    /// parent), as the read models do.
    async fn parent_chain(
        &self,
        tx: &mut AppendTx,
        project_id: Uuid,
        parent_id: Uuid,
    ) -> CommandResult<ParentChain> {
        let first = self.folder_in(tx, parent_id).await?;
        if !first.is_live_in(project_id) {
            return Ok(ParentChain::Missing);
        }
        let mut chain = vec![parent_id];
        let mut next = first.parent_id;
        // Bounded: a chain longer than the depth limit (plus deleted links)
        // is refused by the domain anyway.
        while let Some(id) = next {
            if chain.contains(&id) || chain.len() > FOLDER_DEPTH_MAX * 4 {
                break;
            }
            let folder = self.folder_in(tx, id).await?;
            if folder.exists && folder.project_id == project_id && !folder.deleted {
                chain.push(id);
            }
            next = folder.parent_id.filter(|_| folder.exists);
        }
        Ok(ParentChain::Found(chain))
    }

    pub async fn create_doc_folder(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        name: String,
        parent_id: Option<Uuid>,
        position: Option<i64>,
    ) -> CommandResult<Uuid> {
        let folder_id = Uuid::now_v7();
        transact!(self, tx => async {
            self.require_project(tx, project_id).await?;
            let parent = match parent_id {
                None => None,
                Some(p) => {
                    lock_folder_tree(tx, project_id).await?;
                    Some((p, self.parent_chain(tx, project_id, p).await?))
                }
            };
            let command = DocFolderCommand::Create {
                project_id,
                name: name.clone(),
                parent,
                position,
            };
            let mut decide = |f: &DocFolder| Ok((f.decide(command.clone())?, vec![]));
            self.execute_in(tx, folder_id, Some(project_id), DocFolder::evolve, meta, &mut decide, None)
                .await
        }
        .await)?;
        Ok(folder_id)
    }

    pub async fn update_doc_folder(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        folder_id: Uuid,
        name: Option<String>,
        parent_id: Patch<Uuid>,
        position: Option<i64>,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            if !self.folder_in(tx, folder_id).await?.is_live_in(project_id) {
                return Err(folder_not_found().into());
            }
            let parent = match parent_id {
                None => None,
                Some(None) => Some(None),
                Some(Some(p)) => {
                    lock_folder_tree(tx, project_id).await?;
                    let chain = if p == folder_id {
                        ParentChain::Found(vec![p])
                    } else {
                        self.parent_chain(tx, project_id, p).await?
                    };
                    Some(Some((p, chain)))
                }
            };
            let command = DocFolderCommand::Update {
                self_id: folder_id,
                name: name.clone(),
                parent,
                position,
            };
            let mut decide = |f: &DocFolder| Ok((f.decide(command.clone())?, vec![]));
            self.execute_in(tx, folder_id, Some(project_id), DocFolder::evolve, meta, &mut decide, None)
                .await
        }
        .await)?;
        Ok(())
    }

    /// Deletes a folder and everything inside it (subfolders, documents),
    /// each with its own event, in one transaction.
    pub async fn delete_doc_folder(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        folder_id: Uuid,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            // Under the tree lock no folder or document can enter the
            // subtree while it is collected and deleted.
            lock_folder_tree(tx, project_id).await?;
            if !self.folder_in(tx, folder_id).await?.is_live_in(project_id) {
                return Err(folder_not_found().into());
            }
            let subtree: Vec<(Uuid, bool, i32)> = sqlx::query_as(
                "WITH RECURSIVE sub(id, is_folder, depth) AS (
                     SELECT id, is_folder, 0 FROM doc_index WHERE id = $1
                     UNION ALL
                     SELECT d.id, d.is_folder, s.depth + 1
                     FROM doc_index d JOIN sub s ON d.parent_id = s.id
                     WHERE s.is_folder AND NOT d.deleted AND s.depth < 64
                 )
                 SELECT id, is_folder, depth FROM sub WHERE id <> $1",
            )
            .bind(folder_id)
            .fetch_all(tx.conn())
            .await?;
            let mut ids: Vec<Uuid> = subtree.iter().map(|(id, _, _)| *id).collect();
            ids.push(folder_id);
            tx.lock_streams(&ids, LockMode::Exclusive).await?;
            for (id, is_folder, _) in &subtree {
                if !is_folder {
                    self.doc_command_in(tx, meta, project_id, *id, DocCommand::Delete)
                        .await?;
                }
            }
            // Deepest folders first, the folder itself last.
            let mut folders: Vec<(i32, Uuid)> = subtree
                .iter()
                .filter(|(_, is_folder, _)| *is_folder)
                .map(|(id, _, depth)| (-depth, *id))
                .collect();
            folders.sort();
            folders.push((0, folder_id));
            for (_, id) in folders {
                let mut decide = |f: &DocFolder| Ok((f.decide(DocFolderCommand::Delete)?, vec![]));
                self.execute_in(tx, id, Some(project_id), DocFolder::evolve, meta, &mut decide, None)
                    .await?;
            }
            Ok(())
        }
        .await)
    }

    pub async fn create_doc(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        new: NewDoc,
    ) -> CommandResult<Uuid> {
        let doc_id = Uuid::now_v7();
        transact!(self, tx => async {
            self.require_project(tx, project_id).await?;
            let folder = match new.folder_id {
                None => None,
                Some(f) => {
                    lock_folder_tree(tx, project_id).await?;
                    Some(self.folder_check(tx, project_id, f).await?)
                }
            };
            let command = DocCommand::Create {
                project_id,
                title: new.title.clone(),
                folder,
                content: new.content.clone(),
                position: new.position,
            };
            let mut decide = |d: &Doc| Ok((d.decide(command.clone())?, vec![]));
            self.execute_in(tx, doc_id, Some(project_id), Doc::evolve, meta, &mut decide, None)
                .await
        }
        .await)?;
        Ok(doc_id)
    }

    /// Load -> decide -> append on a document of the project.
    pub async fn doc_command_in(
        &self,
        tx: &mut AppendTx,
        meta: &Metadata,
        project_id: Uuid,
        doc_id: Uuid,
        command: DocCommand,
    ) -> CommandResult<(Doc, i64)> {
        if self
            .store
            .stream_type_in(tx.conn(), doc_id)
            .await?
            .as_deref()
            != Some(DocEvent::STREAM_TYPE)
        {
            return Err(doc_not_found().into());
        }
        let mut decide = |d: &Doc| {
            if !d.is_live_in(project_id) {
                return Err(doc_not_found());
            }
            Ok((d.decide(command.clone())?, vec![]))
        };
        self.execute_in(
            tx,
            doc_id,
            Some(project_id),
            Doc::evolve,
            meta,
            &mut decide,
            None,
        )
        .await
    }

    pub async fn doc_command(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        doc_id: Uuid,
        command: DocCommand,
    ) -> CommandResult<(Doc, i64)> {
        transact!(self, tx => {
            self.doc_command_in(tx, meta, project_id, doc_id, command.clone()).await
        })
    }

    pub async fn update_doc(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        doc_id: Uuid,
        patch: DocPatch,
    ) -> CommandResult<()> {
        transact!(self, tx => async {
            let folder = match patch.folder_id {
                None => None,
                Some(None) => Some(None),
                Some(Some(f)) => {
                    lock_folder_tree(tx, project_id).await?;
                    Some(Some(self.folder_check(tx, project_id, f).await?))
                }
            };
            let command = DocCommand::Update {
                title: patch.title.clone(),
                content: patch.content.clone(),
                folder,
                position: patch.position,
            };
            self.doc_command_in(tx, meta, project_id, doc_id, command).await
        }
        .await)?;
        Ok(())
    }

    /// Restores snapshot `snapshot_id` (the id of the event that made that
    /// version) as a new version; the event's metadata names what it
    /// restores (`causation_id`, `extra.restores`).
    pub async fn restore_doc_snapshot(
        &self,
        meta: &Metadata,
        project_id: Uuid,
        doc_id: Uuid,
        snapshot_id: Uuid,
    ) -> CommandResult<()> {
        let mut meta = meta.clone();
        meta.causation_id = Some(snapshot_id);
        meta.extra
            .insert("restores".into(), Value::String(snapshot_id.to_string()));
        transact!(self, tx => async {
            if self.store.stream_type_in(tx.conn(), doc_id).await?.as_deref() != Some(DocEvent::STREAM_TYPE) {
                return Err(doc_not_found().into());
            }
            let events = self.store.read_stream_in(tx.conn(), doc_id, 0).await?;
            let number = events
                .iter()
                .find(|e| e.event_id == snapshot_id)
                .and_then(|e| e.payload.get("snapshot_number"))
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    DomainError::new(ErrorCode::DOC_SNAPSHOT_NOT_FOUND, "snapshot not found")
                })?;
            let command = DocCommand::Restore {
                snapshot_id,
                snapshot_number: number,
            };
            self.doc_command_in(tx, &meta, project_id, doc_id, command).await
        }
        .await)?;
        Ok(())
    }
}
