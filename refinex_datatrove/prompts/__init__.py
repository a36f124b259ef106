"""Prompt templates shipped as package data (``refinex_datatrove/prompts/<name>.yaml``).

A prompt file has the keys ``version``, ``source``, ``variables``, ``system`` and ``user``. Placeholders are
written ``[[NAME]]`` and filled with :meth:`str.replace`, never ``str.format``: web text is full of braces and
dollar signs. Released files are never edited in place; a changed prompt gets a new ``_vN`` name.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass

REQUIRED_KEYS = ("version", "source", "variables", "system", "user")
_PLACEHOLDER = re.compile(r"\[\[([A-Za-z_][A-Za-z0-9_]*)\]\]")


class PromptError(ValueError):
    """A prompt file is missing, malformed, or rendered with the wrong variables."""


@dataclass(frozen=True)
class Prompt:
    """A chat prompt with ``[[VARIABLE]]`` placeholders.

    Attributes:
        name: file stem, e.g. ``"expert_refine_v1"``.
        version: the ``version`` field of the file.
        source: where the prompt comes from.
        variables: placeholder names (without brackets) that :meth:`render` must receive.
        system: system message template; an empty string means no system message.
        user: user message template.
    """

    name: str
    version: str
    source: str
    variables: tuple[str, ...]
    system: str
    user: str

    def __post_init__(self) -> None:
        found = set(_PLACEHOLDER.findall(self.system)) | set(_PLACEHOLDER.findall(self.user))
        unknown = sorted(found - set(self.variables))
        if unknown:
            raise PromptError(f"prompt {self.name!r}: placeholders {unknown} are not declared in `variables`")
        unused = sorted(set(self.variables) - found)
        if unused:
            raise PromptError(f"prompt {self.name!r}: declared variables {unused} appear in neither system nor user")

    @property
    def sha256(self) -> str:
        """Hex sha256 of the unrendered template (system and user), recorded with every generation."""
        payload = f"{self.system}\x00{self.user}".encode()
        return hashlib.sha256(payload).hexdigest()

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with every placeholder replaced by its value.

        Values are inserted verbatim in one pass, so a value that itself contains ``[[NAME]]`` is not expanded.

        Args:
            **values: one string per declared variable, keyed by its name.

        Raises:
            PromptError: a declared variable is missing or an undeclared one is given.
        """
        missing = sorted(set(self.variables) - set(values))
        extra = sorted(set(values) - set(self.variables))
        if missing or extra:
            raise PromptError(f"prompt {self.name!r}: missing variables {missing}, unknown variables {extra}")

        def fill(template: str) -> str:
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

        messages = []
        if self.system:
            messages.append({"role": "system", "content": fill(self.system)})
        messages.append({"role": "user", "content": fill(self.user)})
        return messages


def available_prompts() -> list[str]:
    """Names of the prompt files shipped with the package."""
    files = importlib.resources.files(__package__)
    return sorted(f.name.removesuffix(".yaml") for f in files.iterdir() if f.name.endswith(".yaml"))


def prompt_from_dict(name: str, data: object) -> Prompt:
    """Validate a parsed prompt file and build the :class:`Prompt`.

    Raises:
        PromptError: a required key is missing, has the wrong type, or the placeholders do not match.
    """
    if not isinstance(data, dict):
        raise PromptError(f"prompt {name!r}: expected a mapping at the top level, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise PromptError(f"prompt {name!r}: missing required keys {missing}")
    variables = data["variables"]
    if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
        raise PromptError(f"prompt {name!r}: `variables` must be a list of names")
    for key in ("system", "user"):
        if not isinstance(data[key], str):
            raise PromptError(f"prompt {name!r}: `{key}` must be a string")
    if not data["user"].strip():
        raise PromptError(f"prompt {name!r}: `user` is empty")
    return Prompt(
        name=name,
        version=str(data["version"]),
        source=str(data["source"]),
        variables=tuple(variables),
        system=data["system"],
        user=data["user"],
    )


def load_prompt(name: str) -> Prompt:
    """Load and validate ``refinex_datatrove/prompts/<name>.yaml``.

    Args:
        name: file stem, e.g. ``"expert_refine_v1"``.

    Raises:
        PromptError: no such prompt, or the file does not validate.
    """
    import yaml

    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise PromptError(f"invalid prompt name {name!r}: use the file stem, e.g. 'expert_refine_v1'")
    resource = importlib.resources.files(__package__).joinpath(f"{name}.yaml")
    if not resource.is_file():
        raise PromptError(f"no prompt named {name!r}; available: {available_prompts()}")
    return prompt_from_dict(name, yaml.safe_load(resource.read_text(encoding="utf-8")))


__all__ = ["REQUIRED_KEYS", "Prompt", "PromptError", "available_prompts", "load_prompt", "prompt_from_dict"]
