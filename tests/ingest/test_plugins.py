"""The plugin hooks: documented, the built-ins registered through them, third-party decoders usable in a mapping."""

from __future__ import annotations

import inspect
import tomllib
from typing import Any

import pluggy
import pytest

from stadsdata import hookspecs
from stadsdata.hookspecs import PayloadDecoder, hookimpl
from stadsdata.ingest.mapping import MappingError, parse
from stadsdata.plugins import DEFAULT_PLUGINS, PluginError, new_plugin_manager, payload_decoders


def test_every_hook_has_a_docstring() -> None:
    hooks = [
        (name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("stadsdata_")
    ]
    assert hooks, "hookspecs defines no hooks"
    for name, fn in hooks:
        assert fn.__doc__ and fn.__doc__.strip(), f"hook {name} has no docstring"
    # Every hook is a specification that the manager knows.
    pm = new_plugin_manager(entry_points=False)
    assert {name for name, _ in hooks} <= {h for h in dir(pm.hook) if h.startswith("stadsdata_")}


def test_the_built_in_decoders_come_through_the_hook() -> None:
    pm = new_plugin_manager(entry_points=False)
    assert [pm.get_name(p) for p in pm.get_plugins()] == list(DEFAULT_PLUGINS)
    assert set(payload_decoders(pm)) == {"json", "cayenne-lpp", "number"}


class HexPlugin:
    """A third-party plugin: payloads of hex text."""

    @hookimpl
    def stadsdata_payload_decoders(self) -> dict[str, PayloadDecoder]:
        def hex_bytes(payload: bytes) -> Any:
            return {"first": bytes.fromhex(payload.decode())[0]}

        return {"hex": hex_bytes}


def test_a_plugin_decoder_is_usable_in_a_mapping() -> None:
    decoders = payload_decoders(new_plugin_manager([HexPlugin()], entry_points=False))
    assert decoders["hex"](b"2a00") == {"first": 42}
    text = '[[topic]]\nname = "t"\npattern = "a/{b}"\npayload = "hex"\nfields = { first = 1 }'
    rule = parse(tomllib.loads(text), "m.toml", decoders).topics[0]
    assert rule.decode_payload is decoders["hex"]
    with pytest.raises(
        MappingError, match=r"payload 'hex' is no payload decoder; installed: cayenne-lpp, json, number"
    ):
        parse(tomllib.loads(text), "m.toml", payload_decoders(new_plugin_manager(entry_points=False)))


def test_two_plugins_with_one_name_are_refused() -> None:
    class Clash:
        @hookimpl
        def stadsdata_payload_decoders(self) -> dict[str, PayloadDecoder]:
            return {"json": lambda payload: None}

    pm = new_plugin_manager([Clash()], entry_points=False)
    with pytest.raises(PluginError, match="payload decoder 'json' is given by both stadsdata.ingest.decoders and"):
        payload_decoders(pm)


def test_a_plugin_that_returns_no_dict_is_named() -> None:
    class Wrong:
        @hookimpl
        def stadsdata_payload_decoders(self) -> Any:
            return ["json"]

    pm = new_plugin_manager([Wrong()], entry_points=False)
    with pytest.raises(PluginError, match="must return a dict"):
        payload_decoders(pm)


def test_entry_points_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", lambda self, group: seen.append(group))
    new_plugin_manager()
    assert seen == ["stadsdata"]
