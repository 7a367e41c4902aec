//! A deployment's tool catalog: the union of its databases' tools.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ewii_tools_schema::{StandardTool, ToolDescriptor};
use serde_json::Value;

use crate::{CallContext, Database, DatabaseConfig, DriverError, ToolError, dispatch, find_driver};

/// One open database of the catalog.
#[derive(Clone)]
pub struct CatalogEntry {
    /// Its configuration.
    pub config: DatabaseConfig,
    /// The open database.
    pub database: Arc<dyn Database>,
}

/// A tool name resolved to its database.
#[derive(Clone)]
pub struct ResolvedTool {
    /// Database name.
    pub database: String,
    /// Which standard tool.
    pub tool: StandardTool,
    /// The open database.
    pub handle: Arc<dyn Database>,
}

/// What [`Catalog::apply`] changed.
#[derive(Debug, Default)]
pub struct CatalogChange {
    /// Databases opened.
    pub added: Vec<String>,
    /// Databases closed.
    pub removed: Vec<String>,
    /// Databases reopened because their configuration changed.
    pub changed: Vec<String>,
    /// Databases that could not be opened, with the reason; they are left
    /// out of the catalog.
    pub failed: Vec<(String, DriverError)>,
}

impl CatalogChange {
    /// Whether the set of advertised tools may have changed.
    pub fn tools_changed(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty())
    }
}

/// The tool catalog of one deployment.
#[derive(Default)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
    tools: Vec<ToolDescriptor>,
    index: HashMap<String, (String, StandardTool)>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Brings the catalog to exactly `configs`: opens new databases, reopens
    /// changed ones, closes removed ones, and rebuilds the tool list.
    pub async fn apply(&mut self, configs: Vec<DatabaseConfig>) -> CatalogChange {
        let mut change = CatalogChange::default();
        let wanted: BTreeMap<String, DatabaseConfig> =
            configs.into_iter().map(|c| (c.name.clone(), c)).collect();

        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(name, e)| wanted.get(*name) != Some(&e.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(entry) = self.entries.remove(&name) {
                entry.database.close().await;
                if wanted.contains_key(&name) {
                    change.changed.push(name);
                } else {
                    change.removed.push(name);
                }
            }
        }
        for (name, config) in wanted {
            if self.entries.contains_key(&name) {
                continue;
            }
            match open(&config).await {
                Ok(database) => {
                    if !change.changed.contains(&name) {
                        change.added.push(name.clone());
                    }
                    self.entries.insert(name, CatalogEntry { config, database });
                }
                Err(e) => {
                    change.changed.retain(|n| n != &name);
                    change.removed.push(name.clone());
                    change.failed.push((name, e));
                }
            }
        }
        self.rebuild();
        change
    }

    fn rebuild(&mut self) {
        self.tools.clear();
        self.index.clear();
        for (name, entry) in &self.entries {
            for tool in entry.database.tools() {
                // Names were validated when the database was added; a name
                // that fails here is skipped rather than advertised broken.
                if let Ok(mut d) =
                    tool.descriptor(name, entry.database.dialect_name(), entry.config.read_only)
                {
                    if let Some(dialect) = entry.database.sql_dialect() {
                        let mut meta = serde_json::Map::new();
                        meta.insert(
                            crate::DIALECT_META.into(),
                            Value::String(dialect.as_str().into()),
                        );
                        d.meta = Some(meta);
                    }
                    self.index.insert(d.name.clone(), (name.clone(), *tool));
                    self.tools.push(d);
                }
            }
        }
    }

    /// The advertised tools, grouped by database (sorted by name) in
    /// standard tool order.
    pub fn tools(&self) -> &[ToolDescriptor] {
        &self.tools
    }

    /// The open databases, by name.
    pub fn entries(&self) -> &BTreeMap<String, CatalogEntry> {
        &self.entries
    }

    /// Resolves a tool name. Holds no lock of the caller's beyond this call,
    /// so the call itself can run while the catalog changes.
    pub fn resolve(&self, tool_name: &str) -> Result<ResolvedTool, ToolError> {
        let Some((database, tool)) = self.index.get(tool_name) else {
            let mut names: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
            let more = names.len().saturating_sub(20);
            names.truncate(20);
            let list = if names.is_empty() {
                "none (no database is attached)".to_owned()
            } else if more > 0 {
                format!("{} and {more} more", names.join(", "))
            } else {
                names.join(", ")
            };
            return Err(ToolError::UnknownTool(format!(
                "unknown tool '{tool_name}'. Available tools: {list}. Call tools/list for \
                 the current catalog."
            )));
        };
        let entry = self.entries.get(database).ok_or_else(|| {
            ToolError::Unavailable(format!("database '{database}' was just removed"))
        })?;
        Ok(ResolvedTool {
            database: database.clone(),
            tool: *tool,
            handle: entry.database.clone(),
        })
    }

    /// Closes every database.
    pub async fn close(&mut self) {
        for (_, entry) in std::mem::take(&mut self.entries) {
            entry.database.close().await;
        }
        self.rebuild();
    }
}

impl ResolvedTool {
    /// Runs the tool.
    pub async fn call(&self, arguments: Value, ctx: &CallContext) -> Result<Value, ToolError> {
        dispatch(self.handle.as_ref(), self.tool, arguments, ctx).await
    }
}

async fn open(config: &DatabaseConfig) -> Result<Arc<dyn Database>, DriverError> {
    find_driver(&config.driver)?.open(config).await
}
