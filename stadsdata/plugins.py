"""The plugin manager: the built-in plugins, and the third-party ones of the ``stadsdata`` entry-point group.

Nothing is loaded at import time; ``plugin_manager()`` builds the manager on first use and
keeps it for the process.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import pluggy

from stadsdata import hookspecs
from stadsdata.hookspecs import PayloadDecoder

DEFAULT_PLUGINS = ("stadsdata.ingest.decoders",)
"""Modules of the core that register through the hooks, as any plugin does."""

ENTRY_POINT_GROUP = "stadsdata"


class PluginError(Exception):
    """A plugin that gives something the core cannot use; the message names the plugin."""


def new_plugin_manager(plugins: Iterable[object] = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """A manager with the built-in plugins, ``plugins`` and (unless ``entry_points`` is False) the installed ones."""
    import importlib

    pm = pluggy.PluginManager("stadsdata")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    for plugin in plugins:
        pm.register(plugin)
    if entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    """The process's plugin manager."""
    return new_plugin_manager()


def payload_decoders(pm: pluggy.PluginManager | None = None) -> dict[str, PayloadDecoder]:
    """Every payload decoder by name; two plugins that give the same name are a ``PluginError`` naming both."""
    pm = pm or plugin_manager()
    found: dict[str, PayloadDecoder] = {}
    owner: dict[str, str] = {}
    for impl in pm.hook.stadsdata_payload_decoders.get_hookimpls():  # in registration order
        given = impl.function()
        if not isinstance(given, dict):
            raise PluginError(f"plugin {_name(impl)}: stadsdata_payload_decoders must return a dict of name → function")
        for name, decode in given.items():
            if not isinstance(name, str) or not callable(decode):
                raise PluginError(f"plugin {_name(impl)}: payload decoder {name!r} is not a name with a function")
            if name in found:
                raise PluginError(
                    f"payload decoder {name!r} is given by both {owner[name]} and {_name(impl)}; uninstall one"
                )
            found[name] = decode
            owner[name] = _name(impl)
    return found


def _name(impl: pluggy.HookImpl) -> str:
    """A plugin as a person knows it: its module or entry-point name, else its class."""
    if not impl.plugin_name.isdigit():  # pluggy names a plugin registered without a name by its id()
        return impl.plugin_name
    return getattr(impl.plugin, "__name__", None) or type(impl.plugin).__qualname__
