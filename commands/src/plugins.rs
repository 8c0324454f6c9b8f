//! Plugin lifecycle commands: install, upgrade, manual update, enable,
//! disable, uninstall, extension settings. The artifacts (WASM, migrations,
//! bundles) are the plugin host's business; these only record the decisions
//! as events on the plugin's stream, after the host has staged and checked
//! everything it needs.

use domain::plugin::{Plugin, PluginCommand, PluginEvent, plugin_id};
use eventstore::Metadata;
use uuid::Uuid;

use crate::{CommandResult, Commands, Loaded};

impl Commands {
    /// The plugin aggregate of `name` as the log has it now.
    pub async fn plugin_state(&self, name: &str) -> CommandResult<Loaded<Plugin>> {
        self.load::<PluginEvent, Plugin>(plugin_id(name), Plugin::evolve)
            .await
    }

    /// Decides `command` on the plugin named `name` and appends the result.
    /// Returns the plugin's state afterwards and its stream id.
    pub async fn plugin_command(
        &self,
        name: &str,
        command: PluginCommand,
        metadata: &Metadata,
    ) -> CommandResult<(Plugin, Uuid)> {
        let id = plugin_id(name);
        let (state, _) = self
            .execute(id, None, Plugin::evolve, metadata, |state: &Plugin| {
                Ok((state.decide(command.clone())?, vec![]))
            })
            .await?;
        Ok((state, id))
    }
}
