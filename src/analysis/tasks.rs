//! Asynchronous analysis tasks (`POST /v1/analyze?async=true`): their state for
//! `GET /v1/tasks/{id}`, kept in memory for the most recent `keep` tasks (a task is a
//! short-lived job, not an archive: its event, if any, is what gets stored).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use time::OffsetDateTime;

use crate::model::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Processing,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookStatus {
    pub url: String,
    pub attempts: u32,
    pub delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub task_id: String,
    pub status: TaskStatus,
    /// 0..1.
    pub progress: f32,
    #[serde(with = "crate::model::rfc3339_ms")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::model::rfc3339_ms")]
    pub updated_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Arc<Event>>,
    /// `{error, message, details}` when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookStatus>,
}

pub struct TaskStore {
    inner: Mutex<(HashMap<String, Task>, VecDeque<String>)>,
    keep: usize,
}

impl TaskStore {
    pub fn new(keep: usize) -> Self {
        Self { inner: Mutex::new((HashMap::new(), VecDeque::new())), keep: keep.max(1) }
    }

    /// A new queued task; the oldest finished ones make room.
    pub fn create(&self, webhook_url: Option<String>) -> Task {
        let now = OffsetDateTime::now_utc();
        let task = Task {
            task_id: uuid::Uuid::new_v4().to_string(),
            status: TaskStatus::Queued,
            progress: 0.0,
            created_at: now,
            updated_at: now,
            result: None,
            error: None,
            webhook: webhook_url.map(|url| WebhookStatus { url, attempts: 0, delivered: false, last_error: None }),
        };
        let mut g = self.inner.lock();
        let (map, order) = &mut *g;
        map.insert(task.task_id.clone(), task.clone());
        order.push_back(task.task_id.clone());
        while order.len() > self.keep {
            // Unfinished tasks are never evicted: they are bounded by the queue.
            let Some(pos) = order.iter().position(|id| map.get(id).is_none_or(|t| matches!(t.status, TaskStatus::Completed | TaskStatus::Failed))) else {
                break;
            };
            if let Some(id) = order.remove(pos) {
                map.remove(&id);
            }
        }
        task
    }

    pub fn get(&self, id: &str) -> Option<Task> {
        self.inner.lock().0.get(id).cloned()
    }

    /// Applies `f` to the task and returns the new state (None: evicted or unknown).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Task)) -> Option<Task> {
        let mut g = self.inner.lock();
        let t = g.0.get_mut(id)?;
        f(t);
        t.updated_at = OffsetDateTime::now_utc();
        Some(t.clone())
    }

    pub fn len(&self) -> usize {
        self.inner.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_eviction_of_finished_tasks_only() {
        let s = TaskStore::new(2);
        let a = s.create(None);
        let b = s.create(Some("http://127.0.0.1:1/hook".into()));
        assert_eq!(s.get(&a.task_id).unwrap().status, TaskStatus::Queued);
        s.update(&a.task_id, |t| {
            t.status = TaskStatus::Completed;
            t.progress = 1.0;
        });
        // c evicts a (finished), not b (still queued).
        let c = s.create(None);
        assert!(s.get(&a.task_id).is_none());
        assert!(s.get(&b.task_id).is_some() && s.get(&c.task_id).is_some());
        // Nothing finished: the store goes over `keep` rather than lose a live task.
        s.create(None);
        assert_eq!(s.len(), 3);
        assert_eq!(serde_json::to_value(s.get(&b.task_id).unwrap()).unwrap()["webhook"]["attempts"], 0);
    }
}
