"""A Redis Cluster client whose pipelines find their Lua scripts on the node they run on.

bullmq adds jobs in MULTI pipelines of ``EVALSHA`` calls (``addBulk``, flows, and
bullworker's guarded add and pause). A plain client's pipeline loads its scripts
before it runs; redis-py's cluster pipeline does not, and a node's script cache
is its own: after a failover the new master has none of them (Redis does not
replicate ``SCRIPT LOAD``), so every such pipeline failed with ``NOSCRIPT`` for
good, and inside MULTI the commands around the failed one still ran.

:class:`ScriptingCluster` remembers the text of each script registered on it,
and its pipelines load the scripts they call onto the node that serves their slot
before they run, once per node (its name changes with a failover). A node
map may still name the old master: when every call of a pipeline fails with
``NOSCRIPT`` (nothing ran), it loads them where they went and runs it once more.
A node restarted at the same address with an empty cache can make a pipeline
fail once (and, if it mixes loaded and unloaded scripts, run in part, as redis-py
would); what is known loaded is then forgotten. Direct script calls need none of
this: redis-py loads a script again on ``NOSCRIPT``.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError


class ScriptingCluster(RedisCluster):
    """A RedisCluster whose pipelines load the scripts they call first (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script_texts: dict[str, Any] = {}
        #: The shas each node (by name) is known to have loaded.
        self.loaded: dict[str, set[str]] = {}

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        self.script_texts[registered.sha] = script
        return registered

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as ever
        return _ScriptLoadingPipeline(self, transaction)  # type: ignore[abstract]


class _ScriptLoadingPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, ScriptingCluster)
        queued = [(c.args, c.kwargs) for c in self._queue()]
        await self._load_scripts(client)
        results = await super().execute(False, allow_redirections)
        if results and all(isinstance(r, NoScriptError) for r in results):
            # Sent to a node the slot map did not name yet (a failover): nothing ran, as
            # every command was a script call that failed. Load them there, once more.
            client.loaded.clear()
            for args, kwargs in queued:
                self.execute_command(*args, **kwargs)
            await self._load_scripts(client)
            results = await super().execute(False, allow_redirections)
        if any(isinstance(r, NoScriptError) for r in results):
            client.loaded.clear()  # a node restarted with an empty cache: load again next time
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results

    def _queue(self) -> list[Any]:
        return list(self._execution_strategy._command_queue)  # type: ignore[attr-defined]

    async def _load_scripts(self, client: ScriptingCluster) -> None:
        """Load the scripts of the queued ``EVALSHA`` calls onto the nodes they go to."""
        if not client.script_texts:
            return
        if not client.nodes_manager.slots_cache:
            await client.initialize()
        for command in self._queue():
            args = command.args
            if not args or str(args[0]).upper() != "EVALSHA" or int(args[2]) < 1:
                continue
            sha, first_key = str(args[1]), args[3]
            node = client.nodes_manager.get_node_from_slot(client.keyslot(first_key))
            known = client.loaded.setdefault(node.name, set())
            if sha not in known and sha in client.script_texts:
                await client.execute_command(
                    "SCRIPT LOAD", client.script_texts[sha], target_nodes=node
                )
                known.add(sha)
