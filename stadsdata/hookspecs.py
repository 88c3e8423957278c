"""The plugin hooks: what a plugin can add to stadsdata.

A plugin is a module or object with functions named as these hooks and marked with
``hookimpl``; it is found through the ``stadsdata`` entry-point group of an installed
package (``[project.entry-points.stadsdata] my_decoders = "my_package.decoders"``). The
built-in features register through the same hooks (``stadsdata.plugins.DEFAULT_PLUGINS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("stadsdata")
hookimpl = pluggy.HookimplMarker("stadsdata")

PayloadDecoder = Callable[[bytes], Any]
"""The bytes of a payload → a JSON value (dict, list, str, number, bool or None); ``ValueError`` with the reason
when the bytes are not in the decoder's format."""


@hookspec
def stadsdata_payload_decoders() -> dict[str, PayloadDecoder]:  # type: ignore[empty-body]
    """Payload decoders by name, for the ``payload`` of LoRaWAN devices and MQTT topic rules in the ingest mapping."""
